"""
The Test button: the path every test takes (:mod:`airflow_byo.sample_run`), run in the api-server
on the flow as its runs get it (:func:`flow_under_test`: its runtime, interpreter and package rules
from its serialized settings), in the same sandbox as flow runs, with what can be kept warm kept warm.

Warm means: the flow's virtualenv is built once per set of packages (in a background thread, so
a first Test reports progress instead of hanging: the browser polls until it is ready), and the
modules a test needs stay imported in the api-server. A warm Test then costs one child start in
the sandbox and the processor's own work, not an Airflow start-up.

A test may only read a file of the flow's own source (a local path under it, or a URL under it
read with the flow's source connection): the api-server's own files are not test input.
"""

from __future__ import annotations

import os
import re
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from airflow_byo.exceptions import ByoConfigError, ByoError

if TYPE_CHECKING:
    from airflow_byo.flow import ResolvedFlow
    from airflow_byo.plugins.flows import Flow
    from airflow_byo.sample_run import SampleRun

__all__ = ["TestRequest", "environment_state", "flow_under_test", "run_test", "source_listing"]

#: The Test button's own limits, over whatever the runtime config asks for.
MAX_TEST_SECONDS = 60.0
MAX_PREVIEW_LINES = 50
MAX_LOG_LINES = 200
#: Tests running at once in one api-server (each is a sandboxed child process).
_CONCURRENT_TESTS = threading.BoundedSemaphore(2)
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
    """A TaskLog that keeps the lines a test logs (the processor's ``ctx.log`` included)."""

    def __init__(self) -> None:
        self.lines: list[dict[str, str]] = []
        self.notifications: list[dict[str, Any]] = []  # what ctx.notify() would have sent

    def log(self, level: int, msg: Any, /, *args: Any) -> None:
        import logging

        if len(self.lines) < MAX_LOG_LINES:
            text = str(msg) % args if args else str(msg)
            self.lines.append({"level": logging.getLevelName(level).lower(), "message": text[:2000]})

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


# -- what a test may read --------------------------------------------------------------------------


def _is_url(value: str) -> bool:
    return "://" in value and not value.startswith("file://")


def resolve_test_file(flow: Flow, test_file: str) -> str:
    """``test_file`` (a name in the source, or a path/URL under it) as a path or URL, checked."""
    source = str(flow.settings.get("source") or "")
    test_file = test_file.strip()
    if not test_file:
        raise ByoConfigError("test_file: give the path of one file of the flow's source, or pick one")
    if not source or "{{" in source:
        raise ByoConfigError(
            "this flow's source is templated; the page can only test files of a fixed source"
        )
    if _is_url(source):
        wanted = test_file if _is_url(test_file) else f"{source.rstrip('/')}/{test_file.lstrip('/')}"
        if not wanted.startswith(source.rstrip("/") + "/") or "/../" in wanted:
            raise ByoConfigError(f"test_file: {test_file!r} is not a file of the flow's source {source}")
        return wanted
    root = os.path.realpath(source.removeprefix("file://"))
    path = test_file.removeprefix("file://")
    path = os.path.realpath(path if os.path.isabs(path) else os.path.join(root, path))
    if os.path.commonpath([root, path]) != root or path == root:
        raise ByoConfigError(
            f"test_file: {test_file!r} is not a file of the flow's source {source}; "
            "the page tests files of the flow's own source only"
        )
    if not os.path.isfile(path):
        raise ByoConfigError(
            f"test_file: {path} does not exist (or is not a file) in the flow's source {source}"
        )
    return path


def source_listing(flow: Flow, limit: int = 200) -> list[dict[str, Any]]:
    """The newest files of the flow's source (name, size, modified), read with its connection."""
    from airflow_byo.storage.location import Location
    from airflow_byo.storage.selection import FileFilter

    source = str(flow.settings.get("source") or "")
    if not source or "{{" in source:
        return []
    location = Location(source, flow.settings.get("source_conn_id"), role="source")
    file_filter = FileFilter(
        include=tuple(flow.settings.get("include") or ("*",)),
        exclude=tuple(flow.settings.get("exclude") or ()),
    )
    files = sorted(location.list_files(file_filter), key=lambda f: -(f.mtime or 0))[:limit]
    return [{"name": f.relative_path, "size": f.size, "modified": f.mtime} for f in files]


# -- the test itself -------------------------------------------------------------------------------


def flow_under_test(flow: Flow, request: TestRequest) -> ResolvedFlow:
    """
    The flow as its runs get it -- its runtime, interpreter and package rules, from its serialized
    settings -- with the form's code, packages and runtime config, under the Test button's limits
    (time, preview size, no retries).
    """
    from airflow_byo.flow import ResolvedFlow

    settings = flow.settings
    resolved = ResolvedFlow.resolve(
        request.code,
        function_name=request.function_name or "process",
        packages=request.packages,
        runtime=settings.get("runtime"),
        runtime_config=request.runtime_config,
        allow_direct_urls=bool(settings.get("allow_direct_urls")),
        python_interpreter=settings.get("python_interpreter"),
    )
    job = resolved.job
    return resolved.with_job(
        timeout_seconds=min(job.timeout_seconds, MAX_TEST_SECONDS),
        preview_lines=min(job.preview_lines, MAX_PREVIEW_LINES),
        retries=0,
    )


def error_line(message: str | None) -> int | None:
    """The user's line an error names (``(line 3)``, ``line 3, in process``), if any."""
    if not message:
        return None
    found = _LINE.findall(message)
    return int(found[-1]) if found else None


def run_test(flow: Flow, request: TestRequest) -> dict[str, Any]:
    """
    Run ``request.code`` on one file of ``flow``'s source; write nothing. Returns the result for
    the page: ``ok``, previews, insights, counters, notifications, log, packages, timings; or
    ``state: building`` while the environment is built the first time.
    """
    started = time.monotonic()
    try:
        resolved = flow_under_test(flow, request)
        path = resolve_test_file(flow, request.test_file)
        refusal = _sandbox_refusal()
        python = resolved.interpreter()
    except ByoError as exc:
        return _failure(exc, started)
    if refusal is not None:
        return _failure(refusal, started)
    if python is None:
        environment = environment_state(list(resolved.requirements), wait=1.5)
        if environment["state"] != "ready":
            return {"ok": environment["state"] != "failed", **environment} | (
                {"error": environment["error"]} if environment["state"] == "failed" else {}
            )
        python = environment["python"]
    if not _CONCURRENT_TESTS.acquire(timeout=30):
        return {
            "ok": False,
            "state": "busy",
            "error": "other tests are running on this api-server; try again",
        }
    log = CaptureLog()
    try:
        sample = _run(resolved, flow, path, python, log)
    except ByoError as exc:
        return _failure(exc, started, log)
    except Exception as exc:  # noqa: BLE001 -- e.g. a source server that does not answer: the page shows it
        return _failure(RuntimeError(f"{type(exc).__name__}: {exc}"), started, log)
    finally:
        _CONCURRENT_TESTS.release()
    return _result(sample, log, started)


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


def _result(sample: SampleRun, log: CaptureLog, started: float) -> dict[str, Any]:
    """What the page shows of a test: previews, insights, the error at the user's line, the log."""
    result = sample.as_dict()
    failure = sample.failure
    error = f"{failure.error_type}: {failure.error}" if failure else None
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
        "seconds": round(time.monotonic() - started, 3),
    }
