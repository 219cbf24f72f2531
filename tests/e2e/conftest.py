"""
The one Airflow deployment shared by every end-to-end test (``deployment`` fixture).

Starting it costs about a minute, so every test that needs a running Airflow uses this fixture
instead of starting its own; each test uses its own DAG ids, flow ids and S3 buckets or prefixes,
so tests stay independent on the shared deployment.

It is stopped right after the last end-to-end test of the session, not at the session's end: its
six busy processes must not compete with the rest of the suite for the machine's cores. (A
package-scoped fixture would not do: under pytest-xdist a worker may run other tests between
two e2e modules, and the deployment would start twice.)
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import REPORT_LINES
from tests.e2e.deployment import Deployment
from tests.e2e.processes import ensure_services

_remaining = {"e2e tests": 0}  # still to run in this process
_stop: list[Callable[[], None]] = []  # stops the running deployment


def pytest_collection_finish(session: pytest.Session) -> None:
    # Under pytest-xdist every worker collects every test, and `--dist loadgroup` hands all e2e
    # tests to one of them: that one counts down to zero.
    _remaining["e2e tests"] = sum(1 for item in session.items if item.get_closest_marker("e2e"))


@pytest.hookimpl(trylast=True)
def pytest_runtest_teardown(item: pytest.Item, nextitem: Any) -> None:
    if item.get_closest_marker("e2e"):
        _remaining["e2e tests"] -= 1
        if _remaining["e2e tests"] == 0:
            _stop_deployment()


def _stop_deployment() -> None:
    while _stop:
        _stop.pop()()


@pytest.fixture(scope="session")
def deployment(request: pytest.FixtureRequest) -> Iterator[Deployment]:
    """A running CeleryExecutor deployment (see :mod:`tests.e2e.deployment`)."""
    ensure_services()
    # Not under pytest's basetemp: other pytest sessions on the machine rotate those away, and the
    # logs must survive a failure. Removed at the end when no test failed.
    root = Path(tempfile.mkdtemp(prefix="byo-e2e-"))
    running = Deployment(root)
    failures = request.session.testsfailed
    started = False

    def stop() -> None:
        running.close()
        if started and request.session.testsfailed == failures:
            shutil.rmtree(root, ignore_errors=True)
        REPORT_LINES.extend(_report(running))

    _stop.append(stop)
    try:
        running.start()
        started = True
        yield running
    finally:
        _stop_deployment()


def _report(running: Deployment) -> list[str]:
    """The deployment's timings for the end of the run's report (see tests.conftest.REPORT_LINES)."""
    lines = []
    if running.seconds_to_start is not None:
        timings = ", ".join(f"{name} {seconds:.0f}s" for name, seconds in running.timings.items())
        lines.append(
            f"e2e deployment: started in {running.seconds_to_start:.0f}s"
            + (f"; {timings}" if timings else "")
        )
    if running.cpu_seconds:
        cpu = ", ".join(f"{name} {seconds:.0f}" for name, seconds in running.cpu_seconds.items())
        lines.append(f"e2e deployment: CPU seconds by component: {cpu}")
    if running.root.exists():
        lines.append(f"e2e deployment: logs kept in {running.logs}")
    return lines
