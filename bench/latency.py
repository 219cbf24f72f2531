"""
B8 -- latency from a file's arrival in a flow's source to its output in the destination, on a
running Airflow: the event-driven flow (``schedule=[new_files_asset(...)]``, an AssetWatcher in
the triggerer, no sensor) against the deferrable sensor (``ByoNewFilesSensor(deferrable=True)``
in front of the flow, in a ``@continuous`` DAG so a deferred sensor is always waiting).

The deployment is the end-to-end tests' (:class:`tests.e2e.deployment.Deployment`) with the
LocalExecutor: PostgreSQL metadata DB and ledger, ``api-server``, ``scheduler`` (which runs the
tasks), ``dag-processor`` and ``triggerer`` on a fresh ``AIRFLOW_HOME`` under ``workdir``; every
process it starts is stopped at the end. Airflow's latency settings are left at their defaults;
both sides check the source every 5 s (the watcher's default ``poll_interval``, given to the
sensor as ``poke_interval``; the sensor's own default is 60 s). Both flows run the same function
in the same (cached) flow environment, warmed up by one file each before timing.

Files are dropped one at a time, alternating between the two sources, each after a random pause
(so arrivals fall anywhere in the poll cycle) and only once the previous run has finished and the
sensor side has a deferred sensor again. Arrival is the moment the file is renamed into the
source; output is the moment its output exists in the destination (outputs are published
atomically), polled every 20 ms.

    .venv/bin/python bench/latency.py [--smoke] [--repeat N]    # prints bench/run.py's table

Rows: p50 and p95 for each side (the watcher's against the sensor's), and the watcher's latency
split into stages by the run's own timestamps, as means (which add up to the mean latency):
arrival -> Asset event (the poll, the triggerer's loop), event -> run started (the scheduler),
run started -> task started (the executor), task started -> output (the task: DAG file, flow
environment, child, publish). No time is asserted anywhere.
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import statistics
import sys
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.timing import Row, table  # noqa: E402 -- after the checkout is importable
from tests.e2e.deployment import Deployment  # noqa: E402 -- after the checkout is importable

WATCHER, SENSOR = "bench_b8_watcher", "bench_b8_sensor"
POLL_INTERVAL = 5.0  # the watcher's default (airflow_byo.triggers.new_files.DEFAULT_POLL_INTERVAL)

DAG_FILE = '''
"""B8: the same flow, event-driven and behind a deferrable sensor (bench/latency.py)."""
from datetime import datetime

from airflow.sdk import DAG

from airflow_byo import new_files_asset
from airflow_byo.operators.byo_flow import ByoFlowOperator
from airflow_byo.sensors.new_files import ByoNewFilesSensor

PROCESS = "def process(file, ctx):\\n    return file.open().read().upper()\\n"
ROOT = {root!r}


def flow(dag_id, **kwargs):
    return ByoFlowOperator(
        task_id="flow",
        flow_id=f"{{dag_id}}.flow",
        source=f"{{ROOT}}/{{dag_id}}/in",
        destination=f"{{ROOT}}/{{dag_id}}/out",
        include="*.txt",
        processor=PROCESS,
        runtime_config={{"job_config": {{"output_format": "text"}}}},
        **kwargs,
    )


with DAG(
    dag_id="{watcher}",
    schedule=[new_files_asset(f"{{ROOT}}/{watcher}/in", flow_id="{watcher}.flow", include="*.txt")],
    start_date=datetime(2024, 1, 1),
    catchup=False,
):
    flow("{watcher}")

with DAG(
    dag_id="{sensor}",
    schedule="@continuous",
    max_active_runs=1,
    start_date=datetime(2024, 1, 1),
    catchup=False,
):
    wait = ByoNewFilesSensor(
        task_id="wait_for_new_files",
        flow_id="{sensor}.flow",
        source=f"{{ROOT}}/{sensor}/in",
        include="*.txt",
        deferrable=True,
        poke_interval={poll},
    )
    flow("{sensor}", files=wait.output)
'''


@dataclass
class Sample:
    """One file's trip: wall-clock seconds (time.time()), and the run that took it."""

    arrived: float
    output: float
    run_id: str | None = None

    @property
    def latency(self) -> float:
        return self.output - self.arrived


def _timestamp(value: str | None) -> float | None:
    return datetime.fromisoformat(value).timestamp() if value else None


def percentile(values: list[float], q: float) -> float:
    """The ``q``-quantile (0..1) by linear interpolation between the closest ranks."""
    ordered = sorted(values)
    if len(ordered) == 1:
        return ordered[0]
    position = q * (len(ordered) - 1)
    low = int(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


class Bench:
    def __init__(self, deployment: Deployment, data: Path) -> None:
        self.deployment = deployment
        self.data = data
        for dag_id in (WATCHER, SENSOR):
            for folder in ("in", "out", "staging"):
                (data / dag_id / folder).mkdir(parents=True, exist_ok=True)

    def runs(self, dag_id: str, state: str | None = None) -> list[dict[str, Any]]:
        params: dict[str, Any] = {"limit": 100, "order_by": "-run_after"}
        if state:
            params["state"] = [state]
        return list(self.deployment.api.get(f"/api/v2/dags/{dag_id}/dagRuns", params=params)["dag_runs"])

    def idle(self, dag_id: str) -> bool:
        """The watcher side has no run in flight; the sensor side has a sensor deferred, waiting."""
        self.deployment._check_alive()
        active = self.runs(dag_id, "running") + self.runs(dag_id, "queued")
        if dag_id == WATCHER:
            return not active
        for run in active:
            for ti in self.deployment.task_instances(dag_id, run["dag_run_id"]):
                if ti["task_id"] == "wait_for_new_files" and ti["state"] == "deferred":
                    return True
        return False

    def drop(self, dag_id: str, name: str, *, timeout: float = 600) -> Sample:
        """Write ``name`` into the source (atomically) and wait for its output."""
        self.deployment.wait_until(lambda: self.idle(dag_id), timeout=timeout, what=f"{dag_id} idle")
        staged = self.data / dag_id / "staging" / name
        staged.write_text(f"{name}\n")
        output = self.data / dag_id / "out" / name
        os.replace(staged, self.data / dag_id / "in" / name)
        arrived = time.time()
        deadline = time.monotonic() + timeout
        while not output.exists():
            if time.monotonic() > deadline:
                raise RuntimeError(
                    f"B8: no output for {dag_id}/{name} after {timeout:.0f}s\n"
                    + self.deployment.diagnostics(dag_id)
                )
            time.sleep(0.02)
        return Sample(arrived, time.time())

    def stages(self, sample: Sample) -> dict[str, float] | None:
        """The watcher's run for ``sample``: seconds of each stage, from Airflow's timestamps."""
        after = [r for r in self.runs(WATCHER) if (_timestamp(r.get("queued_at")) or 0) >= sample.arrived]
        if not after:
            return None
        run = min(after, key=lambda r: _timestamp(r["queued_at"]) or 0)
        events = self.deployment.api.get(
            "/api/v2/assets/events", params={"limit": 100, "order_by": "-timestamp"}
        )["asset_events"]
        fired = [
            t
            for e in events
            if e["uri"] == f"x-byo-new-files://{WATCHER}.flow"
            and (t := _timestamp(e["timestamp"])) is not None
            and t >= sample.arrived
        ]
        (ti,) = [
            t for t in self.deployment.task_instances(WATCHER, run["dag_run_id"]) if t["task_id"] == "flow"
        ]
        event, started, task = (
            min(fired) if fired else None,
            _timestamp(run["start_date"]),
            _timestamp(ti["start_date"]),
        )
        if event is None or started is None or task is None:
            return None
        return {
            "arrival -> Asset event (poll, triggerer)": event - sample.arrived,
            "Asset event -> run started (scheduler)": started - event,
            "run started -> task started (executor)": task - started,
            "task started -> output (task)": sample.output - task,
        }


def run(workdir: Path, *, smoke: bool, repeat: int) -> list[Row]:
    """B8's rows; ``smoke``: 2 files per side, else ``max(10, 4 * repeat)``."""
    files = 2 if smoke else max(10, 4 * repeat)
    root = workdir / "b8-latency"
    shutil.rmtree(root, ignore_errors=True)
    root.mkdir(parents=True)
    from tests.e2e.processes import ensure_services

    ensure_services()
    deployment = Deployment(root / "deployment", executor="LocalExecutor", s3=False)
    bench = Bench(deployment, root / "data")
    started = time.monotonic()
    try:
        deployment.start()
        text = DAG_FILE.format(root=str(bench.data), watcher=WATCHER, sensor=SENSOR, poll=POLL_INTERVAL)
        deployment.write_dag_file("bench_b8.py", text)
        for dag_id in (WATCHER, SENSOR):
            deployment.wait_for_dag(dag_id, timeout=180)
            deployment.unpause(dag_id)
        # The watcher's trigger is created when the DAG file is parsed with the DAG unpaused.
        deployment.reparse("bench_b8.py")
        for dag_id in (WATCHER, SENSOR):  # builds the flow environment; sensor and watcher start
            bench.drop(dag_id, "warm-up.txt")
        warm = time.monotonic() - started
        samples: dict[str, list[Sample]] = {WATCHER: [], SENSOR: []}
        rng = random.Random(8)
        for index in range(files):
            for dag_id in (WATCHER, SENSOR):
                time.sleep(rng.uniform(0, POLL_INTERVAL))
                samples[dag_id].append(bench.drop(dag_id, f"f{index:03d}.txt"))
        stages = [s for s in (bench.stages(sample) for sample in samples[WATCHER]) if s]
    finally:
        deployment.close()
    total = time.monotonic() - started
    watcher = [s.latency for s in samples[WATCHER]]
    sensor = [s.latency for s in samples[SENSOR]]
    print(
        f"B8: {files} files per side; deployment start {deployment.seconds_to_start or 0:.0f}s, "
        f"start + warm-up {warm:.0f}s, total {total:.0f}s\n"
        f"B8 watcher latencies (s, mean {statistics.fmean(watcher):.2f}): "
        f"{', '.join(f'{v:.1f}' for v in watcher)}\n"
        f"B8 sensor latencies (s): {', '.join(f'{v:.1f}' for v in sensor)}\n"
        f"B8 watcher stages (s): {'; '.join(', '.join(f'{v:.2f}' for v in s.values()) for s in stages)}",
        file=sys.stderr,
    )
    rows: list[Row] = [
        (
            "B8 watcher: arrival -> output p50 (s; baseline: deferrable sensor)",
            percentile(watcher, 0.5),
            percentile(sensor, 0.5),
            "<= 10 s",
        ),
        (
            "B8 watcher: arrival -> output p95 (s; baseline: deferrable sensor)",
            percentile(watcher, 0.95),
            percentile(sensor, 0.95),
            "reported",
        ),
        ("B8 deferrable sensor: arrival -> output p50 (s)", percentile(sensor, 0.5), None, "reported"),
        ("B8 deferrable sensor: arrival -> output p95 (s)", percentile(sensor, 0.95), None, "reported"),
    ]
    for stage in stages[0] if stages else {}:
        rows.append(
            (
                f"B8 watcher stage, mean: {stage} (s)",
                statistics.fmean(s[stage] for s in stages),
                None,
                "reported",
            )
        )
    shutil.rmtree(root, ignore_errors=True)
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--smoke", action="store_true", help="2 files per side")
    parser.add_argument("--repeat", type=int, default=5, help="files per side: max(10, 4 x repeat)")
    options = parser.parse_args()
    work = ROOT / "bench" / ".work"
    work.mkdir(exist_ok=True)
    rows = run(work, smoke=options.smoke, repeat=options.repeat)
    print(table(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
