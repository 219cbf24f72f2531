"""
A run's metrics (airflow_byo.metrics) as a StatsD server receives them: directly from
``emit_metrics``, and from a real ``airflow dags test`` run (with the Asset event it attaches).
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from airflow_byo.metrics import emit_metrics
from tests.conftest import fresh_ledger_env
from tests.servers import free_port


@pytest.fixture
def statsd(monkeypatch: pytest.MonkeyPatch) -> Iterator[socket.socket]:
    """A UDP socket that Airflow's StatsD client (initialised as a task does it) sends to."""
    from airflow.observability.metrics import stats_utils
    from airflow.sdk._shared.observability.metrics import stats as stats_state
    from airflow.sdk.observability import stats

    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    sock.settimeout(2)
    for key, value in {
        "STATSD_ON": "True",
        "STATSD_HOST": "127.0.0.1",
        "STATSD_PORT": str(sock.getsockname()[1]),
        "STATSD_PREFIX": "airflow",
        "STATSD_INFLUXDB_ENABLED": "True",  # tags on the wire
    }.items():
        monkeypatch.setenv(f"AIRFLOW__METRICS__{key}", value)
    previous = stats_state._factory
    stats.initialize(factory=stats_utils.get_stats_factory(), export_legacy_names=False)
    yield sock
    stats.initialize(factory=previous or stats_state.NoStatsLogger, export_legacy_names=False)
    sock.close()


def received(sock: socket.socket) -> list[str]:
    lines: list[str] = []
    sock.settimeout(2)
    try:
        while True:
            lines.extend(line for line in sock.recv(65535).decode().splitlines() if ".byo." in line)
            sock.settimeout(0.3)  # the rest of one emit_metrics() arrives together
    except TimeoutError:
        return lines


def test_counters_and_timers_are_sent_tagged_with_the_flow(statsd: socket.socket) -> None:
    emit_metrics(
        {
            "files_processed": 3,
            "files_failed": 1,
            "files_quarantined": 2,
            "files_skipped": 0,
            "bytes_in": 100,
            "bytes_out": 0,
            "seconds_total": 1.5,
            "seconds_per_file_p50": 0.25,
        },
        "dag.flow",
    )
    assert sorted(received(statsd)) == sorted(
        [
            "airflow.byo.files.processed,flow=dag.flow:3|c",
            "airflow.byo.files.failed,flow=dag.flow:1|c",
            "airflow.byo.files.quarantined,flow=dag.flow:2|c",
            "airflow.byo.bytes.in,flow=dag.flow:100|c",
            "airflow.byo.errors,flow=dag.flow:3|c",  # failed + quarantined
            "airflow.byo.run.duration,flow=dag.flow:1500.000000|ms",
            "airflow.byo.file.duration.p50,flow=dag.flow:250.000000|ms",
        ]
    )


def test_an_empty_run_sends_only_its_duration(statsd: socket.socket) -> None:
    emit_metrics({"files_processed": 0, "seconds_total": 0.02, "seconds_per_file_p50": None}, "empty")
    assert received(statsd) == ["airflow.byo.run.duration,flow=empty:20.000000|ms"]


def test_metrics_and_asset_event_of_a_real_run(tmp_path: Path, airflow_home: Path, venv_cache: Path) -> None:
    """`airflow dags test` with StatsD pointed at a UDP socket here; then read the Asset event back."""
    received: list[str] = []
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    port = free_port()
    sock.bind(("127.0.0.1", port))
    sock.settimeout(0.2)
    stop = threading.Event()

    def listen() -> None:
        while not stop.is_set():
            try:
                received.extend(sock.recv(65535).decode().splitlines())
            except TimeoutError:
                continue

    listener = threading.Thread(target=listen, daemon=True)
    listener.start()
    env = (
        os.environ
        | fresh_ledger_env(tmp_path)
        | {
            "BYO_EXAMPLE_OUTPUT": str(tmp_path / "output"),
            "AIRFLOW__BYO__VENV_CACHE_PATH": str(venv_cache),
            "AIRFLOW__METRICS__STATSD_ON": "True",
            "AIRFLOW__METRICS__STATSD_HOST": "127.0.0.1",
            "AIRFLOW__METRICS__STATSD_PORT": str(port),
            "AIRFLOW__METRICS__STATSD_PREFIX": "airflow",
        }
    )
    result = subprocess.run(
        [str(Path(sys.executable).parent / "airflow"), "dags", "test", "byo_decorator_orders"],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    time.sleep(0.5)
    stop.set()
    listener.join()
    sock.close()
    assert result.returncode == 0, (result.stdout + result.stderr)[-3000:]
    names = {line.split(":")[0] for line in received}
    assert "airflow.byo.files.processed" in names, sorted(names)[:50]
    assert "airflow.byo.bytes.in" in names
    assert "airflow.byo.run.duration" in names

    # Other tests run the same example DAG into their own directories: pick this run's Asset.
    destination_pattern = f"%{tmp_path / 'output' / 'orders_by_sku'}"
    script = (
        "import json\n"
        "from airflow.models.asset import AssetEvent, AssetModel\n"
        "from airflow.utils.session import create_session\n"
        "with create_session() as session:\n"
        f"    asset = session.query(AssetModel).filter(AssetModel.uri.like({destination_pattern!r})).one()\n"
        "    event = session.query(AssetEvent).filter(AssetEvent.asset_id == asset.id)"
        ".order_by(AssetEvent.id.desc()).first()\n"
        "    print(json.dumps(event.extra))\n"
    )
    extra = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env)
    assert extra.returncode == 0, extra.stderr[-2000:]
    summary = json.loads(extra.stdout.strip().splitlines()[-1])
    assert summary["files_processed"] == 2
    assert summary["destination"] == str(tmp_path / "output" / "orders_by_sku")
    assert "files" not in summary  # compact: counts and insights, no per-file list
