"""
Exactly once, proven the hard way: concurrent runs, SIGKILLs at every named crash point (and at
random moments), and bad files, each followed by a check that every input has exactly one
complete output, that nothing partial is visible, and that the ledger matches the destination.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from airflow_byo.ledger.state import Ledger
from airflow_byo.storage import TEMP_MARKER
from tests.backends import Backend, LocalBackend, S3Backend, SftpBackend
from tests.conftest import FAULT_POINTS_COVERED, ROOT

INPUTS = 12


@dataclass
class Scenario:
    source: Backend
    destination: Backend
    ledger: dict[str, Any]
    markers: Path
    flow_id: str
    names: list[str] = field(default_factory=list)

    def args(self, **extra: Any) -> dict[str, Any]:
        return {
            "flow_id": self.flow_id,
            "source": self.source.url("in"),
            "source_conn_id": self.source.conn_id,
            "destination": self.destination.url("out"),
            "destination_conn_id": self.destination.conn_id,
            "ledger_conn_id": "byo_ledger",
            "markers": str(self.markers),
            "lease_seconds": 1,
            **extra,
        }

    def start(self, crash_at: str | None = None, **extra: Any) -> subprocess.Popen[str]:
        env = os.environ.copy()
        env.pop("BYO_CRASH_AT", None)
        # The processor counts its executions in marker files outside its outputs, which the
        # sandbox rightly forbids; exactly-once does not depend on it (its tests: tests/runner/).
        env["AIRFLOW__BYO__SANDBOX"] = "off"
        if crash_at:
            env["BYO_CRASH_AT"] = crash_at
        return subprocess.Popen(
            [sys.executable, "-m", "tests.ledger.worker", json.dumps(self.args(**extra))],
            cwd=ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )

    def run(self, crash_at: str | None = None, **extra: Any) -> tuple[int, dict[str, Any] | None, str]:
        process = self.start(crash_at, **extra)
        out, err = process.communicate(timeout=300)
        summary = next(
            (json.loads(line[8:]) for line in out.splitlines() if line.startswith("SUMMARY ")), None
        )
        return process.returncode, summary, out + err

    def executions(self, name: str) -> int:
        return len([m for m in os.listdir(self.markers) if m.startswith(name + ".")])

    def ledger_view(self) -> Ledger:
        return Ledger(self.flow_id, self.ledger["url"])

    def assert_exactly_once(self, names: list[str] | None = None) -> None:
        names = names or self.names
        outputs = self.destination.names("out")
        assert [n for n in outputs if TEMP_MARKER in n] == [], "a temporary (partial) file is visible"
        # One output per input, counted directly: a duplicate would show up as an extra name.
        assert sorted(outputs) == sorted(names)
        for name in names:
            assert self.destination.get(f"out/{name}") == self.source.get(f"in/{name}").upper()  # type: ignore[union-attr]
            assert self.executions(name) >= 1
        records = self.ledger_view().records()
        assert sorted(r["path"] for r in records if r["state"] == "done") == sorted(names)
        assert all(json.loads(r["outputs"]) == [r["path"]] for r in records if r["state"] == "done")


@pytest.fixture
def make_scenario(request: pytest.FixtureRequest, tmp_path: Path, connections: Any) -> Any:
    def make(kind: str, ledger: dict[str, Any], inputs: int = INPUTS) -> Scenario:
        if kind == "local":
            source: Backend = LocalBackend(tmp_path / "src")
            destination: Backend = LocalBackend(tmp_path / "dst")
        else:  # SFTP in, S3 out: both remote legs at once
            sftp, s3 = request.getfixturevalue("sftp_server"), request.getfixturevalue("s3_server")
            source = SftpBackend(sftp, connections("byo_src", sftp.connection(auth="key")))
            destination = S3Backend(s3, connections("byo_dst", s3.connection()))
        connections("byo_ledger", ledger["connection"])
        markers = tmp_path / "markers"
        markers.mkdir()
        scenario = Scenario(source, destination, ledger, markers, flow_id=f"faults.{tmp_path.name}")
        for index in range(inputs):
            name = f"f{index:02d}.txt"
            source.put(f"in/{name}", f"row {index} of {name}\n".encode())
            scenario.names.append(name)
        return scenario

    return make


@pytest.fixture
def sqlite_ledger(tmp_path: Path) -> dict[str, Any]:
    path = tmp_path / "ledger.db"
    return {"url": f"sqlite:///{path}", "connection": {"conn_type": "sqlite", "host": str(path)}}


# -- concurrency ----------------------------------------------------------------------------------


def test_concurrent_runs_process_every_file_exactly_once(
    make_scenario: Any, ledger_db: dict[str, Any]
) -> None:
    scenario = make_scenario("local", ledger_db, inputs=40)
    # One child per run: with two, the first run to start does all 40 files before the others
    # are up (runs of two children side by side, and their crashes, are the tests below). A run
    # claims about a second of work at a time, more and ahead while files go quickly: files of
    # 0.1 s are claimed 16 at a time, so four runs share 40 of them.
    workers = [scenario.start(delay=0.1, job_config={"workers": 1}) for _ in range(4)]
    results = [worker.communicate(timeout=300) for worker in workers]
    assert all(worker.returncode == 0 for worker in workers), [err[-2000:] for _, err in results]
    scenario.assert_exactly_once()
    for name in scenario.names:
        assert scenario.executions(name) == 1, f"{name} was executed {scenario.executions(name)} times"
    summaries = [json.loads(out.split("SUMMARY ", 1)[1]) for out, _ in results]
    assert sum(s["files_processed"] for s in summaries) == 40
    assert sum(s["files_processed"] > 0 for s in summaries) >= 2, "the work should be shared"


# -- named crash points ---------------------------------------------------------------------------

CRASHES = [
    ("local", "listed:1"),
    ("local", "claimed:1"),
    ("local", "processed:3"),
    ("local", "uploading:3"),
    ("local", "published:3"),
    ("local", "committed:3"),
    ("remote", "listed:1"),
    ("remote", "claimed:1"),
    ("remote", "downloaded:3"),
    ("remote", "processed:3"),
    ("remote", "uploading:3"),
    ("remote", "published:3"),
    ("remote", "committed:3"),
]


@pytest.mark.parametrize(("kind", "crash_at"), CRASHES, ids=[f"{k}-{c}" for k, c in CRASHES])
def test_worker_killed_at_a_crash_point_then_rerun(
    make_scenario: Any, sqlite_ledger: dict[str, Any], kind: str, crash_at: str
) -> None:
    scenario = make_scenario(kind, sqlite_ledger)
    code, _, log = scenario.run(crash_at)
    assert code == -signal.SIGKILL, f"the crash point {crash_at} was never reached:\n{log[-2000:]}"
    time.sleep(1.2)  # let the dead worker's leases expire
    code, summary, log = scenario.run()
    assert code == 0, log[-3000:]
    assert summary is not None
    assert summary["files_failed"] == 0
    scenario.assert_exactly_once()
    FAULT_POINTS_COVERED.append(f"{kind}:{crash_at}")


@pytest.mark.parametrize("kind", ["local", "remote"])
def test_child_killed_then_rerun(make_scenario: Any, sqlite_ledger: dict[str, Any], kind: str) -> None:
    scenario = make_scenario(kind, sqlite_ledger)
    scenario.source.put("in/kill-me.txt", b"the child dies on the first try\n")
    code, summary, log = scenario.run()
    assert code == 0, log[-3000:]
    assert summary is not None
    assert summary["files_failed"] == 1
    assert scenario.ledger_view().counts() == {"done": INPUTS, "failed": 1}
    code, summary, log = scenario.run()
    assert summary is not None
    assert summary["files_processed"] == 1  # only the file whose child died
    scenario.assert_exactly_once([*scenario.names, "kill-me.txt"])
    assert scenario.executions("kill-me.txt") == 2
    FAULT_POINTS_COVERED.append(f"{kind}:child")


def test_kills_at_random_moments(make_scenario: Any, sqlite_ledger: dict[str, Any]) -> None:
    scenario = make_scenario("local", sqlite_ledger, inputs=30)
    rng = random.Random(2026)
    for _ in range(4):
        worker = scenario.start(delay=0.05)
        time.sleep(rng.uniform(4.0, 6.5))  # start-up takes ~4 s; then ~20 files per second
        worker.send_signal(signal.SIGKILL)
        worker.wait()
        FAULT_POINTS_COVERED.append("local:random")
        time.sleep(1.2)
    code, _, log = scenario.run()
    assert code == 0, log[-3000:]
    scenario.assert_exactly_once()


# -- bad files: quarantine and replay -------------------------------------------------------------


@pytest.mark.parametrize("kind", ["local", "remote"])
def test_bad_files_are_quarantined_and_replayed(
    make_scenario: Any, sqlite_ledger: dict[str, Any], kind: str
) -> None:
    scenario = make_scenario(kind, sqlite_ledger, inputs=4)
    bad = ["hang-1.txt", "hog-1.txt", "raise-1.txt"]
    for name in bad:
        scenario.source.put(f"in/{name}", f"bad {name}\n".encode())
    job = {"error_policy": "quarantine", "timeout_seconds": 3, "max_memory_mb": 512, "retries": 1}
    code, summary, log = scenario.run(job_config=job)
    assert code == 0, log[-3000:]
    assert summary is not None
    assert (summary["files_processed"], summary["files_quarantined"], summary["files_failed"]) == (4, 3, 0)
    assert scenario.destination.names("out") == [
        "_quarantine/hang-1.txt",
        "_quarantine/hang-1.txt.error.json",
        "_quarantine/hog-1.txt",
        "_quarantine/hog-1.txt.error.json",
        "_quarantine/raise-1.txt",
        "_quarantine/raise-1.txt.error.json",
        *scenario.names,
    ]
    record = json.loads(scenario.destination.get("out/_quarantine/raise-1.txt.error.json") or b"{}")
    assert record["attempts"] == 2  # retries: 1
    assert record["error"] == "cannot parse raise-1.txt"
    assert "ValueError" in record["traceback"]
    assert (
        json.loads(scenario.destination.get("out/_quarantine/hang-1.txt.error.json") or b"{}")["status"]
        == "timeout"
    )
    assert (
        "memory limit exceeded"
        in json.loads(scenario.destination.get("out/_quarantine/hog-1.txt.error.json") or b"{}")["error"]
    )
    assert scenario.destination.get("out/_quarantine/raise-1.txt") == b"bad raise-1.txt\n"
    assert scenario.ledger_view().counts() == {"done": 4, "quarantined": 3}

    # Nothing new: the quarantined files stay put until replayed.
    _, summary, _ = scenario.run(job_config=job)
    assert summary is not None
    assert summary["files_seen"] == 0

    # After the fix, a replay processes exactly the quarantined files.
    replayed = scenario.ledger_view().forget(states=["quarantined"], reason="replay")
    assert replayed == 3
    before = {name: scenario.executions(name) for name in scenario.names}
    code, summary, log = scenario.run(job_config=job, fixed=True)
    assert code == 0, log[-3000:]
    assert summary is not None
    assert summary["files_processed"] == 3
    assert {name: scenario.executions(name) for name in scenario.names} == before
    for name in bad:
        assert scenario.destination.get(f"out/{name}") == f"BAD {name.upper()}\n".encode()
    assert scenario.ledger_view().counts() == {"done": 7}
