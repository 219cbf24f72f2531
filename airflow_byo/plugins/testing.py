"""
The Test button: the path every test takes (:mod:`airflow_byo.sample_run`), run in the api-server
on the flow as its runs get it (:func:`flow_under_test`: its runtime, interpreter and package rules
from its serialized settings), in the same sandbox as flow runs, with what can be kept warm kept warm.

Warm means: the flow's virtualenv is built once per set of packages (in a background thread, so
a first Test reports progress instead of hanging: the browser polls until it is ready), and the
modules a test needs stay imported in the api-server. A warm Test then costs one child start in
the sandbox and the processor's own work, not an Airflow start-up.

A test may only read a file of the flow's own source that the flow takes
(:mod:`~airflow_byo.plugins.sample_files`). Tests wait their turn in the api-server's queue
(:mod:`~airflow_byo.plugins.trial_queue`: one running Test per user, a few at once) and can be
cancelled there.
"""

from __future__ import annotations

import re
import threading
import time
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from airflow_byo.exceptions import ByoConfigError, ByoError
from airflow_byo.plugins.sample_files import resolve_test_file, source_listing
from airflow_byo.plugins.trial_queue import QUEUE, TestJob

if TYPE_CHECKING:
    from airflow_byo.flow import ResolvedFlow
    from airflow_byo.plugins.flows import Flow
    from airflow_byo.sample_run import SampleRun

__all__ = [
    "TestRequest",
    "environment_state",
    "flow_under_test",
    "resolve_test_file",
    "run_test",
    "source_listing",
]

#: The Test button's own limits, over whatever the runtime config asks for.
MAX_TEST_SECONDS = 60.0
MAX_PREVIEW_LINES = 50
#: Log lines a Test keeps: the first ones and the last LOG_TAIL_LINES (where the error is).
MAX_LOG_LINES = 200
LOG_TAIL_LINES = 50
_LINE = re.compile(r"\bline (\d+)\b")
_USER_FRAME = re.compile(r'File "<byo-processor>", line (\d+)')
_TRACEBACK_HEAD = "Traceback from the processor:\n"


@dataclass
class TestRequest:
    __test__ = False  # not a pytest test class

    """What the test panel sends."""

    code: str
    function_name: str
    test_file: str
    packages: Any = None
    runtime_config: Any = None


class CaptureLog:
    """
    A TaskLog that keeps the lines a test logs (the processor's ``ctx.log`` included): the first
    ``MAX_LOG_LINES - LOG_TAIL_LINES`` and the last ``LOG_TAIL_LINES``, counting what it drops.
    """

    def __init__(self) -> None:
        self.head: list[dict[str, str]] = []
        self.tail: deque[dict[str, str]] = deque(maxlen=LOG_TAIL_LINES)
        self.dropped = 0
        self.notifications: list[dict[str, Any]] = []  # what ctx.notify() would have sent

    def log(self, level: int, msg: Any, /, *args: Any) -> None:
        import logging

        text = str(msg) % args if args else str(msg)
        line = {"level": logging.getLevelName(level).lower(), "message": text[:2000]}
        if len(self.head) < MAX_LOG_LINES - LOG_TAIL_LINES:
            self.head.append(line)
            return
        if len(self.tail) == LOG_TAIL_LINES:
            self.dropped += 1
        self.tail.append(line)

    @property
    def lines(self) -> list[dict[str, str]]:
        """The lines kept, with a line saying how many were dropped where they were."""
        gap = []
        if self.dropped:
            total = len(self.head) + self.dropped + len(self.tail)
            gap = [
                {
                    "level": "warning",
                    "message": f"[... {self.dropped} lines dropped: the Test keeps the first "
                    f"{len(self.head)} and the last {len(self.tail)} of {total} lines]",
                }
            ]
        return [*self.head, *gap, *self.tail]

    def debug(self, msg: Any, /, *args: Any) -> None:
        pass

    def info(self, msg: Any, /, *args: Any) -> None:
        self.log(20, msg, *args)

    def warning(self, msg: Any, /, *args: Any) -> None:
        self.log(30, msg, *args)

    def error(self, msg: Any, /, *args: Any) -> None:
        self.log(40, msg, *args)

    def exception(self, msg: Any, /, *args: Any) -> None:
        self.log(40, msg, *args)


# -- environments: built once per set of packages, in the background ------------------------------

_builder = ThreadPoolExecutor(max_workers=1, thread_name_prefix="byo-ui-env")
_builds: dict[tuple[str, ...], tuple[float, Future[str]]] = {}
_builds_lock = threading.Lock()


def _build(requirements: tuple[str, ...]) -> str:
    from airflow_byo.environment import ensure_environment

    return str(ensure_environment(list(requirements)))


def environment_state(requirements: list[str], *, wait: float = 0.0) -> dict[str, Any]:
    """
    ``{"state": "ready", "python": ...}``, ``{"state": "building", "seconds": ...}`` or
    ``{"state": "failed", "error": ...}`` for the environment of ``requirements``; starts its build.
    """
    key = tuple(requirements)
    with _builds_lock:
        started, future = _builds.get(key, (0.0, None))
        if future is None or (
            future.done() and future.exception() is not None and time.time() - started > 30
        ):
            started, future = time.time(), _builder.submit(_build, key)
            _builds[key] = (started, future)
    try:
        python = future.result(timeout=wait) if wait else (future.result() if future.done() else None)
    except TimeoutError:
        python = None
    except ByoError as exc:
        return {"state": "failed", "error": str(exc), "packages": list(key)}
    except Exception as exc:  # noqa: BLE001 -- the installer's failure, shown on the page
        return {"state": "failed", "error": f"{type(exc).__name__}: {exc}", "packages": list(key)}
    if python is None:
        return {"state": "building", "seconds": round(time.time() - started, 1), "packages": list(key)}
    return {"state": "ready", "python": python, "packages": list(key)}


# -- the test itself -------------------------------------------------------------------------------


def _resolved(flow: Flow, request: TestRequest) -> ResolvedFlow:
    """The flow as its runs get it, with the form's code, packages and runtime config."""
    from airflow_byo.flow import ResolvedFlow

    settings = flow.settings
    return ResolvedFlow.resolve(
        request.code,
        function_name=request.function_name or "process",
        packages=request.packages,
        runtime=settings.get("runtime"),
        runtime_config=request.runtime_config,
        allow_direct_urls=bool(settings.get("allow_direct_urls")),
        python_interpreter=settings.get("python_interpreter"),
    )


def _capped(resolved: ResolvedFlow) -> ResolvedFlow:
    """``resolved`` under the Test button's limits (time, preview size, no retries)."""
    job = resolved.job
    return resolved.with_job(
        timeout_seconds=min(job.timeout_seconds, MAX_TEST_SECONDS),
        preview_lines=min(job.preview_lines, MAX_PREVIEW_LINES),
        retries=0,
    )


def flow_under_test(flow: Flow, request: TestRequest) -> ResolvedFlow:
    """
    The flow as its runs get it -- its runtime, interpreter and package rules, from its serialized
    settings -- with the form's code, packages and runtime config, under the Test button's limits
    (time, preview size, no retries).
    """
    return _capped(_resolved(flow, request))


def error_line(message: str | None) -> int | None:
    """The user's line an error names (``(line 3)``, ``line 3, in process``), if any."""
    if not message:
        return None
    found = _LINE.findall(message)
    return int(found[-1]) if found else None


@dataclass(frozen=True)
class _Prepared:
    """A Test ready to run: the capped flow, the file, the interpreter, the flow's own timeout."""

    resolved: ResolvedFlow
    path: str
    python: str
    timeout_seconds: float


def run_test(
    flow: Flow, request: TestRequest, *, user: str | None = None, wait: float | None = None
) -> dict[str, Any]:
    """
    Run ``request.code`` on one file of ``flow``'s source; write nothing. Returns the result for
    the page: ``ok``, previews, insights, counters, notifications, log, packages, timings; or
    ``state: building`` while the environment is built the first time.

    The Test waits its turn in the api-server's queue as ``user`` (one running Test per user).
    ``wait`` None waits until it is done; else after ``wait`` seconds the answer is where it is --
    ``state: queued`` with its ``position``, or ``state: running`` -- with the ``test_id`` to ask
    again (:data:`~airflow_byo.plugins.trial_queue.QUEUE`) or to cancel it.
    """
    started = time.monotonic()
    prepared = _prepare(flow, request, started)
    if isinstance(prepared, dict):
        return prepared
    job = TestJob(
        user or "", flow.dag_id, flow.task_id, work=lambda job: _execute(job, flow, prepared, started)
    )
    return QUEUE.answer(QUEUE.submit(job), wait)


def _prepare(flow: Flow, request: TestRequest, started: float) -> _Prepared | dict[str, Any]:
    """What the Test runs, or the answer at once: a refusal, or the environment still building."""
    try:
        resolved = _resolved(flow, request)
        capped = _capped(resolved)
        path = resolve_test_file(flow, request.test_file)
        refusal = _sandbox_refusal()
        python = capped.interpreter()
    except ByoError as exc:
        return _failure(exc, started)
    if refusal is not None:
        return _failure(refusal, started)
    if python is None:
        environment = environment_state(list(capped.requirements), wait=1.5)
        if environment["state"] == "failed":
            return {"ok": False, **environment, "log": [], "seconds": round(time.monotonic() - started, 3)}
        if environment["state"] != "ready":
            return {"ok": True, **environment}
        python = environment["python"]
    return _Prepared(capped, path, python, resolved.job.timeout_seconds)


def _execute(job: TestJob, flow: Flow, prepared: _Prepared, started: float) -> dict[str, Any]:
    """The Test, in its queue slot."""
    log = CaptureLog()
    if job.cancelled.is_set():
        return {"log": []}
    try:
        sample = _run(prepared.resolved, flow, prepared.path, prepared.python, log)
    except ByoError as exc:
        return _failure(exc, started, log)
    except Exception as exc:  # noqa: BLE001 -- e.g. a source server that does not answer: the page shows it
        return _failure(RuntimeError(f"{type(exc).__name__}: {exc}"), started, log)
    return _result(sample, log, started, prepared.timeout_seconds)


def timeout_message(flow_timeout: float) -> str:
    """Why a Test was stopped, and what helps: the Test button's cap, or the flow's own timeout."""
    if flow_timeout >= MAX_TEST_SECONDS:
        return (
            f"Timeout: the Test button stops a function after {MAX_TEST_SECONDS:g} s, its cap whatever "
            f"the runtime config says; flow runs use job_config.timeout_seconds={flow_timeout:g} s. "
            "Test on a smaller file, or make the function faster"
        )
    return (
        f"Timeout: processing took longer than job_config.timeout_seconds={flow_timeout:g} s and was "
        f"stopped; raise job_config.timeout_seconds (flow runs use it as set; the Test button stops at "
        f"{MAX_TEST_SECONDS:g} s whatever it says) or make the function faster"
    )


def _sandbox_refusal() -> ByoConfigError | None:
    """Why pasted code may not run on this api-server: no working sandbox (never a warning only)."""
    from airflow_byo.runner.sandbox_mode import sandbox_mode

    mode, why = sandbox_mode()
    if mode == "bubblewrap" or not why:
        return None
    return ByoConfigError(
        "the Test button runs pasted code only in the sandbox, and it cannot work on this "
        f"api-server: {why.removeprefix('the processor runs WITHOUT a sandbox: ')}"
    )


def _run(resolved: ResolvedFlow, flow: Flow, path: str, python: str, log: CaptureLog) -> SampleRun:
    """The test itself, on the path every test takes; notifications kept for the page."""
    from airflow_byo.flow import FlowEnvironment
    from airflow_byo.sample_run import run_sample

    notifications: list[dict[str, Any]] = []
    sample = run_sample(
        resolved,
        path,
        log=log,
        conn_id=flow.settings.get("source_conn_id"),
        environment=FlowEnvironment(python),
        on_notify=lambda url, event: notifications.append(
            {"level": event.get("level"), "message": event.get("message"), "fields": event.get("fields")}
        ),
        key="test_file",
    )
    log.notifications = notifications
    return sample


def _result(sample: SampleRun, log: CaptureLog, started: float, flow_timeout: float) -> dict[str, Any]:
    """What the page shows of a test: previews, insights, the error at the user's line, the log."""
    result = sample.as_dict()
    failure = sample.failure
    error = f"{failure.error_type}: {failure.error}" if failure else None
    if failure is not None and failure.error_type == "Timeout":
        error = timeout_message(flow_timeout)
    traceback = next(
        (
            line["message"].removeprefix(_TRACEBACK_HEAD)
            for line in log.lines
            if line["message"].startswith(_TRACEBACK_HEAD)
        ),
        None,
    )
    frames = _USER_FRAME.findall(traceback or "")
    return {
        "ok": failure is None,
        "state": "done",
        "file": result["source"],
        "previews": result["preview"],
        "insights": result.get("insights") or {},
        "counters": result.get("counters") or {},
        "notifications": log.notifications,
        "log": log.lines,
        "log_dropped": log.dropped,
        "packages": result["requirements"],
        "runtime": result["runtime"],
        "flow": result["flow"],
        "sandbox": result["sandbox"],
        "error": error,
        "error_line": int(frames[-1]) if frames else error_line(error),
        "traceback": traceback,
        "seconds": round(time.monotonic() - started, 3),
        "seconds_processing": result.get("seconds_total"),
    }


def _failure(exc: Exception, started: float, log: CaptureLog | None = None) -> dict[str, Any]:
    message = str(exc)
    return {
        "ok": False,
        "state": "done",
        "error": message,
        "error_line": error_line(message),
        "log": log.lines if log else [],
        "log_dropped": log.dropped if log else 0,
        "seconds": round(time.monotonic() - started, 3),
    }
