"""
The one Airflow deployment shared by every end-to-end test (``deployment`` fixture, session scope).

Starting it costs about a minute, so all tests that need a running Airflow use this fixture
instead of starting their own; each test uses its own DAG ids, flow ids and S3 prefixes, so they
stay independent on the shared deployment.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from tests.e2e.deployment import Deployment, ensure_services

_STARTED: list[Deployment] = []


@pytest.fixture(scope="session")
def deployment(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deployment]:
    """A running CeleryExecutor deployment (see :mod:`tests.e2e.deployment`), stopped at the end."""
    ensure_services()
    running = Deployment(tmp_path_factory.mktemp("deployment"))
    try:
        running.start()
        _STARTED.append(running)
        yield running
    finally:
        running.close()


def pytest_terminal_summary(terminalreporter: Any) -> None:
    for running in _STARTED:
        terminalreporter.write_line(
            f"e2e deployment: started in {running.seconds_to_start:.1f}s; logs in {running.logs}"
        )
