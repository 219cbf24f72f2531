"""
The long-lived child process: loads the processor once, then runs it on file after file.

The protocol (one JSON object per line, the messages typed in :mod:`.protocol`): an init
request, then file requests; this process answers each with zero or more notifications and
exactly one ``done`` or ``error``.

The user's own ``print()`` output and logging go to stderr, which the worker copies into the task
log, so they can never corrupt the protocol. Timeouts are enforced by the worker (it kills this
process); the memory cap is an ``RLIMIT_AS`` set here before the user's code is loaded.
Standard library only: this runs in the flow's virtualenv, which has no Airflow.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import threading
import time
import traceback
from typing import IO, TYPE_CHECKING, Any

from .contract import FORMAT_EXTENSIONS, Context, InputFile, OutputError
from .decode import decoded_previews
from .function_loader import ProcessorLoadError, load_processor
from .limits import limit_hint, set_child_limits, start_cpu_budget, stop_cpu_budget

if TYPE_CHECKING:
    from collections.abc import Callable

    from .contract import OutputSpec
    from .protocol import ChildMessage, Done, FileRequest, InitRequest, Notify

MAX_TRACEBACK_CHARS = 8000


class _Channel:
    """Write protocol messages to the worker; safe to call from the user's threads."""

    def __init__(self, stream: IO[str]) -> None:
        self._stream = stream
        self._lock = threading.Lock()

    def send(self, message: ChildMessage) -> None:
        line = json.dumps(message, default=str)
        with self._lock:
            self._stream.write(line + "\n")
            self._stream.flush()


def _default_output_name(template: str, input_file: InputFile, output_format: str) -> str:
    rel_dir = os.path.dirname(input_file.relative_path)
    return template.format(
        name=input_file.name,
        stem=input_file.stem,
        suffix=input_file.suffix,
        ext=FORMAT_EXTENSIONS.get(output_format, output_format),
        rel_dir=rel_dir or ".",
    )


def _write_result(result: Any, ctx: Context, input_file: InputFile) -> None:
    """Turn the function's return value into the file's default output."""
    if result is None:
        return
    job = ctx.job_config
    output_format = job.get("output_format", "jsonl")
    name = _default_output_name(job.get("output_name", "{stem}.{ext}"), input_file, output_format)
    if isinstance(result, (bytes, bytearray, memoryview)):
        ctx.write(name, bytes(result))
    elif isinstance(result, str):
        ctx.write(name, result)
    elif isinstance(result, dict) or hasattr(result, "__iter__"):
        ctx.write(name, result, output_format)
    else:
        raise OutputError(
            f"processor returned {type(result).__name__}; return bytes, str, a dict, an "
            "iterable of records, or None (after writing outputs with ctx.output())"
        )


def _format_traceback(exc: BaseException) -> str:
    # Drop this module's own frame so the traceback starts in the user's code.
    tb = exc.__traceback__
    if tb is not None and tb.tb_next is not None:
        tb = tb.tb_next
    text = "".join(traceback.format_exception(type(exc), exc, tb))
    if len(text) > MAX_TRACEBACK_CHARS:
        text = "...\n" + text[-MAX_TRACEBACK_CHARS:]
    return text


class _Runner:
    def __init__(self, init: InitRequest, channel: _Channel, log: logging.Logger) -> None:
        self.channel = channel
        self.log = log
        self.job_config: dict[str, Any] = init["job_config"]
        self.variables: dict[str, Any] = init["variables"]
        self.args: list[Any] = init["args"]
        self.kwargs: dict[str, Any] = init["kwargs"]
        self.preview_rows = int(init.get("preview_rows") or 0)
        self.func: Callable[..., Any] = load_processor(
            code=init["code"],
            function_name=init["function_name"],
            reference=init["reference"],
            args=self.args,
            kwargs=self.kwargs,
        )

    def run_file(self, msg: FileRequest) -> None:
        seq = msg["seq"]
        input_file = InputFile(
            path=msg["path"],
            url=msg["url"],
            name=msg["name"],
            relative_path=msg["relative_path"],
            size=msg["size"],
        )
        out_prefix = msg["out_prefix"]

        def emit(event: dict[str, Any]) -> None:
            notify: Notify = {**event, "seq": seq}  # type: ignore[typeddict-item]  # built by ctx.notify()
            self.channel.send(notify)

        ctx = Context(
            job_config=self.job_config,
            variables=self.variables,
            log=self.log,
            input_file=input_file,
            output_prefix=out_prefix,
            emit=emit,
        )
        started = time.perf_counter()
        start_cpu_budget(self.job_config.get("cpu_seconds"))
        try:
            try:
                result = self.func(input_file, ctx, *self.args, **self.kwargs)
                _write_result(result, ctx, input_file)
            finally:
                stop_cpu_budget()
            outputs: list[OutputSpec] = ctx._finish_outputs()
            previews = decoded_previews(outputs, self.preview_rows) if self.preview_rows else []
        except MemoryError as exc:
            del exc  # free what we can before reporting
            self._send_error(seq, "MemoryError", self._memory_message(), "", started)
            return
        except BaseException as exc:  # noqa: BLE001 - a user's SystemExit is a file error too
            message = str(exc) + limit_hint(exc, self.job_config)
            self._send_error(seq, type(exc).__name__, message, _format_traceback(exc), started)
            return
        done: Done = {
            "ev": "done",
            "seq": seq,
            "seconds": time.perf_counter() - started,
            "outputs": [spec.as_dict() for spec in outputs],  # in order: the n-th is at output_path(n)
            "insights": ctx.insights,
            "counters": ctx.counters,
            "previews": previews,
        }
        self.channel.send(done)

    def _memory_message(self) -> str:
        return (
            f"memory limit exceeded: the processor needed more than "
            f"job_config.max_memory_mb={self.job_config.get('max_memory_mb')} MB"
        )

    def _send_error(self, seq: int, kind: str, message: str, tb: str, started: float) -> None:
        self.channel.send(
            {
                "ev": "error",
                "seq": seq,
                "type": kind,
                "message": message,
                "traceback": tb,
                "seconds": time.perf_counter() - started,
            }
        )


def _die_with_parent() -> None:
    """On Linux, get SIGKILL when the worker dies: a killed task never leaves its child running."""
    if not sys.platform.startswith("linux"):
        return
    import contextlib
    import ctypes
    import signal

    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # 1 = PR_SET_PDEATHSIG


def main() -> int:
    _die_with_parent()
    # Keep the real stdout for the protocol; everything the user prints goes to stderr.
    protocol_out = os.fdopen(os.dup(1), "w", encoding="utf-8", buffering=1)
    os.dup2(2, 1)
    channel = _Channel(protocol_out)

    logging.basicConfig(stream=sys.stderr, level=logging.INFO, format="%(levelname)s %(message)s")
    log = logging.getLogger("byo.processor")

    init: InitRequest = json.loads(sys.stdin.readline())
    sys.path[:0] = init["sys_path"]
    set_child_limits(init["job_config"])
    try:
        runner = _Runner(init, channel, log)
    except ProcessorLoadError as exc:
        channel.send({"ev": "load_error", "message": exc.message, "hint": exc.hint, "lineno": exc.lineno})
        return 0
    channel.send({"ev": "ready", "python": sys.version.split()[0], "executable": sys.executable})

    for line in sys.stdin:
        msg = json.loads(line)
        if msg["op"] == "stop":
            break
        runner.run_file(msg)
    return 0


if __name__ == "__main__":
    sys.exit(main())
