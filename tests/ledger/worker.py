"""
A flow run in its own process, for the concurrency and fault-injection tests:

    python -m tests.ledger.worker '<json: source, destination, conn ids, ledger_conn_id, ...>'

The processor upper-cases each input and leaves one marker file per execution in ``markers``,
so tests count executions per input directly. Inputs named ``raise-*`` raise, ``hang-*`` hang,
``hog-*`` exhaust memory, ``kill-*`` SIGKILL their child on first execution only.
"""

from __future__ import annotations

import json
import sys
from typing import Any

PROCESSOR = """
import os, signal, time, uuid

def process(file, ctx):
    markers = ctx.variables["markers"]
    name = file.name
    seen = [m for m in os.listdir(markers) if m.startswith(name + ".")]
    with open(os.path.join(markers, f"{name}.{uuid.uuid4().hex}"), "w") as handle:
        handle.write(str(os.getpid()))
    if ctx.variables.get("fixed"):
        return file.open().read().upper()
    if name.startswith("raise-"):
        raise ValueError("cannot parse " + name)
    if name.startswith("hang-"):
        time.sleep(3600)
    if name.startswith("hog-"):
        hoard = bytearray(2 * 1024 ** 3)
    if name.startswith("kill-") and not seen:
        os.kill(os.getpid(), signal.SIGKILL)
    time.sleep(ctx.variables.get("delay", 0))
    return file.open().read().upper()
"""


class _TaskInstance:
    def __init__(self) -> None:
        self.xcom: dict[str, Any] = {}

    def xcom_push(self, key: str, value: Any) -> None:
        self.xcom[key] = value


def main() -> int:
    args = json.loads(sys.argv[1])
    from airflow_byo.exceptions import ByoFilesFailedError
    from airflow_byo.operators.byo_flow import ByoFlowOperator

    job_config = {"output_format": "text", "lease_seconds": args.get("lease_seconds", 600)}
    job_config |= args.get("job_config", {})
    operator = ByoFlowOperator(
        task_id="worker",
        flow_id=args["flow_id"],
        source=args["source"],
        source_conn_id=args.get("source_conn_id"),
        destination=args["destination"],
        destination_conn_id=args.get("destination_conn_id"),
        ledger_conn_id=args["ledger_conn_id"],
        processor=PROCESSOR,
        python_interpreter=sys.executable,
        runtime_config={
            "job_config": job_config,
            "markers": args["markers"],
            "delay": args.get("delay", 0),
            "fixed": args.get("fixed", False),
        },
        quarantine=args.get("quarantine"),
        quarantine_conn_id=args.get("quarantine_conn_id"),
    )
    ti = _TaskInstance()
    try:
        summary = operator.execute({"params": {}, "ti": ti})  # type: ignore[arg-type]
    except ByoFilesFailedError:
        summary = ti.xcom["return_value"]
    print("SUMMARY " + json.dumps(summary), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
