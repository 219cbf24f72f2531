"""
Issue 13 through real flow runs in their own processes (tests/ledger/worker.py), killed with
SIGKILL: a local destination shows only complete final files right after every kill, and a run
started inside a killed run's live lease takes the dead run's claims over.
"""

from __future__ import annotations

import os
import random
import signal
import socket
import time
from pathlib import Path
from typing import Any

import pytest

from airflow_byo.storage import TEMP_MARKER
from tests.ledger.test_exactly_once import Scenario, make_scenario, sqlite_ledger

__all__ = ["make_scenario", "sqlite_ledger"]  # fixtures, used by name


@pytest.fixture(autouse=True)
def _no_sandbox(monkeypatch: pytest.MonkeyPatch) -> None:
    # The worker's processor counts its executions in a markers folder outside its outputs.
    monkeypatch.setenv("AIRFLOW__BYO__SANDBOX", "off")


def assert_only_complete_outputs(scenario: Scenario) -> int:
    """Everything visible in the destination is a final, complete output; returns how many."""
    out = Path(scenario.destination.url("out"))
    seen = 0
    for directory, dirs, files in os.walk(out):
        for name in dirs + files:
            assert TEMP_MARKER not in name, f"a temporary is visible in the destination: {directory}/{name}"
        for name in files:
            relative = os.path.relpath(os.path.join(directory, name), out)
            expected = scenario.source.get(f"in/{relative}")
            assert expected is not None, f"{relative} is no output of any input"
            assert Path(directory, name).read_bytes() == expected.upper(), f"{relative} is partial"
            seen += 1
    return seen


def _count(out: Path) -> int:
    return sum(len(files) for _, _, files in os.walk(out))


def test_sigkill_at_random_instants_never_shows_a_partial_output(
    make_scenario: Any, sqlite_ledger: dict[str, Any]
) -> None:
    # Enough inputs that five kills at most 0.4 s into publishing never reach the end, even
    # with several children per run.
    inputs = 200
    scenario = make_scenario("local", sqlite_ledger, inputs=inputs)
    out = Path(scenario.destination.url("out"))
    rng = random.Random(13)
    published = [0]
    for _ in range(5):
        worker = scenario.start(delay=0.03)
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline and worker.poll() is None and _count(out) <= published[-1]:
            time.sleep(0.02)  # until this run publishes: start-up takes seconds on a busy machine
        time.sleep(rng.uniform(0.0, 0.4))  # then at a random instant of its publishing
        worker.send_signal(signal.SIGKILL)
        worker.wait()
        published.append(assert_only_complete_outputs(scenario))  # right after the kill
        time.sleep(1.2)  # lease_seconds=1: the killed run's claims lapse
    assert 0 < published[-1] < inputs, published  # killed mid-way, not before or after
    code, summary, log = scenario.run()
    assert code == 0, log[-3000:]
    scenario.assert_exactly_once()
    assert summary is not None
    print("outputs visible after each kill:", published)


def test_a_run_inside_a_killed_runs_live_lease_takes_its_claims_over(
    make_scenario: Any, sqlite_ledger: dict[str, Any]
) -> None:
    # The killed worker ran on this machine and its process is gone: provably dead, so its
    # claims are taken over at once instead of waiting out the lease (issue 13 point 4). A
    # holder that may be alive is reported instead: tests/ledger/test_holders.py.
    scenario = make_scenario("local", sqlite_ledger, inputs=6)
    worker = scenario.start(delay=30, lease_seconds=120)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and not scenario.ledger_view().records(["claimed"]):
        assert worker.poll() is None, worker.communicate()[1][-2000:]
        time.sleep(0.2)
    worker.send_signal(signal.SIGKILL)
    worker.wait()
    [claim] = {r["claimed_by"] for r in scenario.ledger_view().records(["claimed"])}
    held = len(scenario.ledger_view().records(["claimed"]))
    code, summary, log = scenario.run(lease_seconds=120, delay=0)
    assert code == 0, log[-3000:]
    assert summary is not None
    assert summary["files_claimed_elsewhere"] == 0
    assert summary["files_taken_over"] == held
    [taken] = summary["claims_taken_over"]
    assert taken["run"] == claim
    assert taken["reason"] == f"process {worker.pid} on {socket.gethostname()} is gone"
    assert summary["files_processed"] == 6, (summary, log[-4000:])
    assert f"Took over the claims of 1 dead run(s) of flow {scenario.flow_id!r}" in log
    scenario.assert_exactly_once()
