"""
The one Airflow deployment shared by every end-to-end test (``deployment`` fixture, package scope).

Starting it costs about a minute, so every test that needs a running Airflow uses this fixture
instead of starting its own; each test uses its own DAG ids, flow ids and S3 buckets or prefixes,
so tests stay independent on the shared deployment.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import REPORT_LINES
from tests.e2e.deployment import Deployment
from tests.e2e.processes import ensure_services


@pytest.fixture(scope="package")
def deployment(request: pytest.FixtureRequest) -> Iterator[Deployment]:
    """
    A running CeleryExecutor deployment (see :mod:`tests.e2e.deployment`), stopped after the last
    end-to-end test: package scope, so its six busy processes don't compete with the rest of the
    suite for the machine's cores.
    """
    ensure_services()
    # Not under pytest's basetemp: other pytest sessions on the machine rotate those away, and the
    # logs must survive a failure. Removed at the end when no test failed.
    root = Path(tempfile.mkdtemp(prefix="byo-e2e-"))
    running = Deployment(root)
    failures = request.session.testsfailed
    started = False
    try:
        running.start()
        started = True
        yield running
    finally:
        running.close()
        if started and request.session.testsfailed == failures:
            shutil.rmtree(root, ignore_errors=True)
        REPORT_LINES.extend(_report(running))


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
