"""
The Test button: the engine of ``airflow byo test`` (:mod:`airflow_byo.runner.preview`), run in
the api-server, in the same sandbox as flow runs, with what can be kept warm kept warm.

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
    from airflow_byo.plugins.flows import Flow

__all__ = ["TestRequest", "environment_state", "run_test", "source_listing"]

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


def _limited(runtime_config: Any) -> Any:
    """The runtime config with the Test button's limits applied (time and preview size)."""
    from airflow_byo.flow_config import parse_runtime_config

    config = parse_runtime_config(runtime_config)
    job = config.job_config
    update = {
        "timeout_seconds": min(job.timeout_seconds or MAX_TEST_SECONDS, MAX_TEST_SECONDS),
        "preview_lines": min(job.preview_lines, MAX_PREVIEW_LINES),
        "retries": 0,
    }
    update = {k: v for k, v in update.items() if k in type(job).model_fields}
    return config.model_copy(update={"job_config": job.model_copy(update=update)})


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
    from airflow_byo.packages import parse_packages
    from airflow_byo.processor import resolve_processor
    from airflow_byo.runner.flow_runner import FlowRunner
    from airflow_byo.runner.preview import locate_test_file, preview_file

    started = time.monotonic()
    try:
        requirements = parse_packages(request.packages)
        processor = resolve_processor(request.code, request.function_name or "process")
        config = _limited(request.runtime_config)
        processor.check(list(config.custom_code.args), dict(config.custom_code.kwargs))
        path = resolve_test_file(flow, request.test_file)
    except ByoError as exc:
        return _failure(exc, started)
    from airflow_byo.runner.sandbox import sandbox_mode

    mode, why = sandbox_mode()
    if mode != "bubblewrap" and why:  # [byo] sandbox = auto without bubblewrap: refuse, don't warn
        return _failure(
            ByoConfigError(
                "the Test button runs pasted code only in the sandbox, and it cannot work on this "
                f"api-server: {why.removeprefix('the processor runs WITHOUT a sandbox: ')}"
            ),
            started,
        )
    environment = environment_state(requirements, wait=1.5)
    if environment["state"] != "ready":
        return {"ok": environment["state"] != "failed", **environment} | (
            {"error": environment["error"]} if environment["state"] == "failed" else {}
        )
    log = CaptureLog()
    notifications: list[dict[str, Any]] = []
    if not _CONCURRENT_TESTS.acquire(timeout=30):
        return {
            "ok": False,
            "state": "busy",
            "error": "other tests are running on this api-server; try again",
        }
    try:
        location, file = locate_test_file(path, flow.settings.get("source_conn_id"))
        runner = FlowRunner(
            processor=processor,
            config=config,
            python=environment["python"],
            log=log,
            on_notify=lambda url, event: notifications.append(
                {"level": event.get("level"), "message": event.get("message"), "fields": event.get("fields")}
            ),
        )
        summary, previews = preview_file(runner, location, file)
    except ByoError as exc:
        return _failure(exc, started, log)
    except Exception as exc:  # noqa: BLE001 -- e.g. a source server that does not answer: the page shows it
        return _failure(RuntimeError(f"{type(exc).__name__}: {exc}"), started, log)
    finally:
        _CONCURRENT_TESTS.release()
    result = summary.as_dict()
    failure = summary.failed[0] if summary.failed else None
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
        "file": file.url,
        "previews": [p.as_dict() for p in previews],
        "insights": result.get("insights") or {},
        "counters": result.get("counters") or {},
        "notifications": notifications,
        "log": log.lines,
        "packages": requirements,
        "sandbox": summary.sandbox,
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
