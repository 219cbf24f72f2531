"""`airflow byo ledger ...` run as real subprocesses, as users run them."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from airflow_byo.ledger.state import Ledger
from airflow_byo.storage import SourceFile

FLOW = "my_dag.clean"


@pytest.fixture
def ledger(tmp_path: Path, connections: Any) -> Ledger:
    path = tmp_path / "ledger.db"
    connections("byo_ledger", {"conn_type": "sqlite", "host": str(path)})
    ledger = Ledger(FLOW, f"sqlite:///{path}")
    listing = [
        SourceFile(f"/in/{n}", n, 1, 1.0) for n in ("2024/a.csv", "2024/b.csv", "2025/c.csv", "bad.csv")
    ]
    won = ledger.claim(listing, "run-1", 60)
    for file in won[:3]:
        ledger.done(file, "run-1", [file.relative_path + ".jsonl"])
    ledger.failed(won[3], "run-1", "ValueError: no header", quarantined=True)
    return ledger


def byo(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(Path(sys.executable).parent / "airflow"), "byo", "ledger", *args],
        capture_output=True,
        text=True,
        env=os.environ.copy(),
        timeout=120,
    )


def test_status_history_and_quarantined(ledger: Ledger) -> None:
    result = byo("status", FLOW, "--ledger-conn-id", "byo_ledger", "-o", "json")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == {"done": 3, "quarantined": 1}

    result = byo("history", FLOW, "2024/a.csv", "--ledger-conn-id", "byo_ledger", "-o", "json")
    assert [e["event"] for e in json.loads(result.stdout)] == ["claimed", "done"]

    result = byo("quarantined", FLOW, "--ledger-conn-id", "byo_ledger")
    assert result.returncode == 0
    assert "path=bad.csv" in result.stdout
    assert "error=ValueError: no header" in result.stdout


def test_reprocess_rewind_replay_reset(ledger: Ledger) -> None:
    result = byo("reprocess", FLOW, "2024/*", "--ledger-conn-id", "byo_ledger")
    assert result.returncode == 0
    assert result.stdout.strip() == "2 file(s) matching '2024/*' will be processed again by the next run"
    assert ledger.counts() == {"done": 1, "quarantined": 1}

    result = byo("replay", FLOW, "--ledger-conn-id", "byo_ledger")
    assert result.stdout.strip() == "1 quarantined file(s) will be processed again by the next run"
    assert ledger.counts() == {"done": 1}

    since = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(time.time() - 3600))
    result = byo("rewind", FLOW, since, "--ledger-conn-id", "byo_ledger")
    assert result.stdout.strip() == f"1 file(s) settled since {since} will be processed again by the next run"
    assert ledger.counts() == {}

    assert byo("reset", FLOW, "--ledger-conn-id", "byo_ledger").stdout.startswith("forgot 0 file(s)")


def test_replay_pattern_stays_a_glob(ledger: Ledger) -> None:
    # The page's Replay names files literally (Ledger.forget(paths=...)); the command's --pattern
    # is the documented glob: b?.csv is b1.csv and b2.csv, and bad.csv stays quarantined.
    listing = [SourceFile(f"/in/{n}", n, 1, 1.0) for n in ("b1.csv", "b2.csv")]
    for file in ledger.claim(listing, "run-2", 60):
        ledger.failed(file, "run-2", "KeyError: id", quarantined=True)
    result = byo("replay", FLOW, "--pattern", "b?.csv", "--ledger-conn-id", "byo_ledger")
    assert result.stdout.strip() == "2 quarantined file(s) will be processed again by the next run"
    assert ledger.counts() == {"done": 3, "quarantined": 1}


def test_errors_are_one_line_with_a_hint(ledger: Ledger) -> None:
    result = byo("status", FLOW, "--ledger-conn-id", "no_such_ledger")
    assert result.returncode == 1
    assert result.stderr.strip().splitlines()[-1] == (
        "error: connection 'no_such_ledger' for the ledger is not defined: create it in Admin -> "
        "Connections or set the environment variable AIRFLOW_CONN_NO_SUCH_LEDGER"
    )
    assert "Traceback" not in result.stderr

    result = byo("rewind", FLOW, "yesterday", "--ledger-conn-id", "byo_ledger")
    assert result.returncode == 1
    assert (
        "error: since 'yesterday' is not an ISO date/time such as '2024-05-01T00:00:00+00:00'"
        in result.stderr
    )


def test_status_shows_held_files_and_their_holders(ledger: Ledger) -> None:
    import psutil
    from sqlalchemy import insert

    from airflow_byo.ledger.runs import RunIdentity
    from airflow_byo.ledger.schema import runs

    alive = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    try:
        holders = {}
        for token, process in (("a" * 32, alive), ("d" * 32, gone)):
            run = replace(RunIdentity.current(FLOW), token=token, pid=process.pid, started=1.7e9)
            if process is alive:
                run = replace(run, process_started=psutil.Process(alive.pid).create_time())
            with ledger.engine.begin() as connection:
                connection.execute(insert(runs).values(**run.__dict__))
            names = ["new/x.csv", "new/y.csv"] if process is alive else ["new/z.csv"]
            ledger.claim([SourceFile(f"/in/{n}", n, 1, 1.0) for n in names], token, 600)
            holders[token] = run

        result = byo("status", FLOW, "--ledger-conn-id", "byo_ledger", "-o", "json")
        assert result.returncode == 0, result.stderr
        status = json.loads(result.stdout)
        until = status["held"][0]["until"]
        assert status == {
            "done": 3,
            "quarantined": 1,
            "claimed": 3,
            "held": [
                {
                    "run": "a" * 32,
                    "holder": holders["a" * 32].describe(),
                    "files": 2,
                    "until": until,
                    "paths": ["new/x.csv", "new/y.csv"],
                },
                {
                    "run": "d" * 32,
                    "holder": holders["d" * 32].describe(),
                    "files": 1,
                    "until": status["held"][1]["until"],
                    "dead": f"process {gone.pid} on {holders['d' * 32].host} is gone",
                    "paths": ["new/z.csv"],
                },
            ],
        }

        table = byo("status", FLOW, "--ledger-conn-id", "byo_ledger").stdout.splitlines()
        assert table[3:] == [
            f"held by {holders['a' * 32].describe()}: 2 file(s) until {until}",
            "  new/x.csv",
            "  new/y.csv",
            f"held by {holders['d' * 32].describe()}: 1 file(s) until {status['held'][1]['until']}",
            f"  provably dead (process {gone.pid} on {holders['d' * 32].host} is gone): the next run of the "
            "flow takes them over",
            "  new/z.csv",
        ]
        assert ledger.counts()["claimed"] == 3  # status only looks
    finally:
        alive.kill()
        alive.wait()
