"""
Run one ByoFlowOperator task as this process's user, the way a worker runs it, and write what
anybody could ever see of it -- the XCom summary, the task log, the exception -- to a JSON file.

``python run_operator.py PLAN.json``; PLAN: ``{"sys_path": [...], "operator": {kwargs},
"params": {...}, "out": path, "plant_key": str | null}``. ``plant_key`` puts a key with that
payload into this process's session keyring first (the worker's keyring) and passes its id to
the function as the runtime variable ``key_id``.
"""

from __future__ import annotations

import ctypes
import json
import logging
import sys
from typing import Any


class _Log(logging.Logger):
    def __init__(self) -> None:
        super().__init__("hostile", logging.DEBUG)
        self.lines: list[str] = []
        handler = logging.Handler()
        handler.emit = lambda record: self.lines.append(record.getMessage())  # type: ignore[method-assign]
        self.addHandler(handler)


class _TaskInstance:
    def __init__(self) -> None:
        self.xcom: dict[str, Any] = {}

    def xcom_push(self, key: str, value: Any) -> None:
        self.xcom[key] = value


def _plant_key(payload: str) -> int:
    """add_key("user", ..., KEY_SPEC_SESSION_KEYRING); checked readable by this process."""
    libc = ctypes.CDLL(None, use_errno=True)
    data = payload.encode()
    key = libc.syscall(248, b"user", b"byo-canary", data, len(data), -3)  # x86_64 add_key
    if key < 0:
        raise OSError(ctypes.get_errno(), "add_key failed")
    buffer = ctypes.create_string_buffer(256)
    size = libc.syscall(250, 11, key, buffer, 256)  # KEYCTL_READ: the worker itself can read it
    assert buffer.raw[:size] == data, "the planted key is not readable by the worker"
    return int(key)


def main() -> None:
    with open(sys.argv[1]) as handle:
        plan = json.load(handle)
    sys.path[:0] = plan["sys_path"]
    from airflow_byo.operators.byo_flow import ByoFlowOperator

    kwargs = plan["operator"]
    if plan.get("plant_key"):
        kwargs["runtime_config"]["key_id"] = _plant_key(plan["plant_key"])
    log = _Log()
    ti = _TaskInstance()
    rss_before = _peak_kb()
    error = None
    result = None
    try:
        task = ByoFlowOperator(task_id="hostile", **kwargs)
    except Exception as exc:  # noqa: BLE001 - a refused configuration is a result here
        task = None
        error = f"{type(exc).__name__}: {exc}"
    if task is not None:
        task._cached_logger = log  # the task log, as Airflow would show it
        try:
            result = task.execute({"params": plan.get("params", {}), "ti": ti})
        except Exception as exc:  # noqa: BLE001 - a failed task is a result here
            result = ti.xcom.get("return_value")
            error = f"{type(exc).__name__}: {exc}"
    peak = _peak_kb()
    with open(plan["out"], "w") as handle:
        out = {"result": result, "xcom": ti.xcom, "log": log.lines, "error": error}
        json.dump(out | {"rss_kb_before": rss_before, "rss_kb_peak": peak}, handle, default=str)


def _peak_kb() -> int:
    """
    This process's peak resident set (``VmHWM``), in KiB. Not ``getrusage``'s ``ru_maxrss``: that
    one starts from the peak of the process that forked this one (a big pytest worker), so growth
    measured with it could read as none.
    """
    with open("/proc/self/status", encoding="ascii") as handle:
        return next(int(line.split()[1]) for line in handle if line.startswith("VmHWM:"))


if __name__ == "__main__":
    main()
