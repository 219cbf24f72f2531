"""
B8 -- latency from a file's arrival in a flow's source to its output in the destination, on a
running Airflow, for the three ways a flow waits for files:

- **S3 events**: ``schedule=[new_files_asset(..., events={"sqs_queue": ...})]`` on an S3 source;
  the bucket's event notifications go to an SQS queue the watcher long-polls in the triggerer
  (bench/latency_events.py: moto's S3 sends them to moto's SQS; nothing is fed by hand);
- **polling watcher**: ``schedule=[new_files_asset(...)]`` on a local source, listed every 5 s
  (its default ``poll_interval``);
- **deferrable sensor**: ``ByoNewFilesSensor(deferrable=True, poke_interval=5)`` in front of the
  flow, in a ``@continuous`` DAG so a deferred sensor is always waiting.

The deployment is the end-to-end tests' (:class:`tests.e2e.deployment.Deployment`) with the
LocalExecutor and its moto server: PostgreSQL metadata DB and ledger, ``api-server``,
``scheduler`` (which runs the tasks), ``dag-processor`` and ``triggerer`` on a fresh
``AIRFLOW_HOME`` under ``workdir``; every process it starts is stopped at the end. All flows run
the same function in the same (cached) flow environment, warmed up by one file each first.

Round 1 keeps Airflow's settings at their defaults: files are dropped one at a time, cycling
through the three sides, each after a random pause of 0-5 s (so arrivals fall anywhere in a poll
cycle or loop) and once the previous run has finished (the sensor side: a sensor deferred again).
Then a burst: ``burst`` files put at once into the S3 source (time to the last output, each
processed once). Round 2 restarts the scheduler tuned for latency (:data:`TUNED`: an idle loop
every 0.1 s, tasks forked from a forkserver that preloaded their imports) and drops the same
number of files on the S3 events side alone.

Arrival: the file is renamed into a local source, or the S3 put is sent; output: its output
exists in the (local) destination, polled every 20 ms. The S3 events side is split into stages
by timestamps: the notification's ``SentTimestamp`` in an observer queue (arrival -> message),
the Asset event (message -> event: the long poll, the ledger check, the triggerer's loops), the
run's ``queued_at`` (the scheduler creates the run), the task's start (the scheduler queues it,
the executor starts it), the output (DAG file, flow environment, child, download, publish).
No time is asserted anywhere.

    .venv/bin/python bench/latency.py [--smoke] [--repeat N]    # prints bench/run.py's table
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import statistics
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.latency_events import EVENTS, EventsSide, Sample, timestamp, wait_for  # noqa: E402
from bench.timing import Row, table  # noqa: E402 -- after the checkout is importable
from tests.e2e.deployment import Deployment  # noqa: E402 -- after the checkout is importable

WATCHER, SENSOR = "bench_b8_watcher", "bench_b8_sensor"
POLL_INTERVAL = 5.0  # the watcher's default (airflow_byo.triggers.new_files.DEFAULT_POLL_INTERVAL)
#: Modules a task of these flows imports: the LocalExecutor's workers inherit them in round 2.
PRELOAD = (
    "airflow",
    "airflow.sdk.execution_time.task_runner",
    "airflow.dag_processing.dagbag",
    "airflow_byo.operators.byo_flow",
    "s3fs",
    "airflow.providers.amazon.aws.hooks.base_aws",
)
#: Round 2, the scheduler of a low-latency deployment (docs/event-driven.md, "Latency knobs"): an
#: idle loop every 0.1 s (default 1), and task processes forked from a forkserver that imported
#: Airflow, its plugins, the flow operator and s3fs once (default: fork of the scheduler, whose
#: tasks import s3fs and load the plugins each time, ~1.2 s).
TUNED = {
    "AIRFLOW__SCHEDULER__SCHEDULER_IDLE_SLEEP_TIME": "0.1",
    "AIRFLOW__SCHEDULER__MP_START_METHOD": "forkserver",
    "AIRFLOW__SCHEDULER__MP_FORKSERVER_PRELOAD": ",".join(PRELOAD),
    "AIRFLOW__CORE__LAZY_LOAD_PLUGINS": "False",
}

DAG_FILE = '''
"""B8: the same flow on S3 events, a polling watcher and a deferrable sensor (bench/latency.py)."""
from datetime import datetime

from airflow.sdk import DAG

from airflow_byo import new_files_asset
from airflow_byo.operators.byo_flow import ByoFlowOperator
from airflow_byo.sensors.new_files import ByoNewFilesSensor

PROCESS = "def process(file, ctx):\\n    return file.open().read().upper()\\n"
ROOT = {root!r}
S3 = {{"source": "s3://{bucket}/in", "source_conn_id": "{conn_id}"}}
EVENTS = {{"sqs_queue": "{queue}"}}


def flow(dag_id, source=None, **kwargs):
    return ByoFlowOperator(
        task_id="flow",
        flow_id=f"{{dag_id}}.flow",
        source=source or f"{{ROOT}}/{{dag_id}}/in",
        destination=f"{{ROOT}}/{{dag_id}}/out",
        include="*.txt",
        processor=PROCESS,
        runtime_config={{"job_config": {{"output_format": "text"}}}},
        **kwargs,
    )


with DAG(
    dag_id="{events}",
    schedule=[new_files_asset(flow_id="{events}.flow", include="*.txt", events=EVENTS, **S3)],
    start_date=datetime(2024, 1, 1),
    catchup=False,
):
    flow("{events}", **S3)

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

#: The S3 events side's stages, in order (their means add up to the mean latency).
STAGES = (
    "arrival -> message in SQS (S3 notification)",
    "message -> Asset event (long poll, ledger, triggerer)",
    "Asset event -> run created (scheduler)",
    "run created -> task started (scheduler, executor)",
    "task started -> output (task)",
)


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
        for dag_id in (WATCHER, SENSOR, EVENTS):
            for folder in ("in", "out", "staging"):
                (data / dag_id / folder).mkdir(parents=True, exist_ok=True)
        self.events = EventsSide(deployment, data / EVENTS / "out")

    def runs(self, dag_id: str, state: str | None = None) -> list[dict[str, Any]]:
        params: dict[str, Any] = {"limit": 100, "order_by": "-run_after"}
        if state:
            params["state"] = [state]
        return list(self.deployment.api.get(f"/api/v2/dags/{dag_id}/dagRuns", params=params)["dag_runs"])

    def idle(self, dag_id: str) -> bool:
        """The watchers' sides have no run in flight; the sensor side has a sensor deferred, waiting."""
        self.deployment._check_alive()
        active = self.runs(dag_id, "running") + self.runs(dag_id, "queued")
        if dag_id != SENSOR:
            return not active
        for run in active:
            for ti in self.deployment.task_instances(dag_id, run["dag_run_id"]):
                if ti["task_id"] == "wait_for_new_files" and ti["state"] == "deferred":
                    return True
        return False

    def drop(self, dag_id: str, name: str, *, timeout: float = 600) -> Sample:
        """Land ``name`` in the side's source once it is idle (atomically) and wait for its output."""
        self.deployment.wait_until(lambda: self.idle(dag_id), timeout=timeout, what=f"{dag_id} idle")
        if dag_id == EVENTS:
            return self.events.drop(name, timeout=timeout)
        staged = self.data / dag_id / "staging" / name
        staged.write_text(f"{name}\n")
        os.replace(staged, self.data / dag_id / "in" / name)
        arrived = time.time()
        output = wait_for(
            self.data / dag_id / "out" / name, timeout, lambda: self.deployment.diagnostics(dag_id)
        )
        return Sample(arrived, output)

    def stages(self, dag_id: str, sample: Sample) -> dict[str, float] | None:
        """Seconds of each stage of ``sample``'s trip, from Airflow's timestamps (and SQS's)."""
        after = [r for r in self.runs(dag_id) if (timestamp(r.get("queued_at")) or 0) >= sample.arrived]
        if not after:
            return None
        run = min(after, key=lambda r: timestamp(r["queued_at"]) or 0)
        events = self.deployment.api.get(
            "/api/v2/assets/events", params={"limit": 100, "order_by": "-timestamp"}
        )["asset_events"]
        fired = [
            t
            for e in events
            if e["uri"] == f"x-byo-new-files://{dag_id}.flow"
            and (t := timestamp(e["timestamp"])) is not None
            and t >= sample.arrived
        ]
        (ti,) = [
            t for t in self.deployment.task_instances(dag_id, run["dag_run_id"]) if t["task_id"] == "flow"
        ]
        times = [sample.arrived, sample.message, min(fired, default=None)]
        times += [timestamp(run["queued_at"]), timestamp(ti["start_date"]), sample.output]
        known = [t for t in times if t is not None]
        if len(known) < len(times):
            return None
        return {stage: end - start for stage, start, end in zip(STAGES, known[:-1], known[1:], strict=True)}


def measure(bench: Bench, sides: tuple[str, ...], files: int, seed: int) -> dict[str, list[Sample]]:
    """``files`` samples per side, one file at a time, cycling through the sides."""
    samples: dict[str, list[Sample]] = {dag_id: [] for dag_id in sides}
    rng = random.Random(seed)
    for index in range(files):
        for dag_id in sides:
            time.sleep(rng.uniform(0, POLL_INTERVAL))
            samples[dag_id].append(bench.drop(dag_id, f"r{seed}-f{index:03d}.txt"))
    return samples


def run(workdir: Path, *, smoke: bool, repeat: int) -> list[Row]:
    """B8's rows; ``smoke``: 2 files per side and a burst of 20, else ``max(10, 4 * repeat)`` and 1,000."""
    files, burst = (2, 20) if smoke else (max(10, 4 * repeat), 1000)
    root = workdir / "b8-latency"
    shutil.rmtree(root, ignore_errors=True)
    root.mkdir(parents=True)
    from tests.e2e.processes import ensure_services

    ensure_services()
    deployment = Deployment(root / "deployment", executor="LocalExecutor", s3=True)
    started = time.monotonic()
    try:
        deployment.start()
        bench = Bench(deployment, root / "data")
        names = {"watcher": WATCHER, "sensor": SENSOR, "events": EVENTS, "poll": POLL_INTERVAL}
        text = DAG_FILE.format(root=str(bench.data), **names, **bench.events.dag_kwargs())
        deployment.write_dag_file("bench_b8.py", text)
        for dag_id in (EVENTS, WATCHER, SENSOR):
            deployment.wait_for_dag(dag_id, timeout=180)
            deployment.unpause(dag_id)
        # The watchers' triggers are created when the DAG file is parsed with the DAGs unpaused.
        deployment.reparse("bench_b8.py")
        for dag_id in (EVENTS, WATCHER, SENSOR):  # builds the flow environment; sensor and watchers start
            bench.drop(dag_id, "warm-up.txt")
        warm = time.monotonic() - started
        defaults = measure(bench, (EVENTS, WATCHER, SENSOR), files, seed=8)
        stages = [s for s in (bench.stages(EVENTS, sample) for sample in defaults[EVENTS]) if s]
        burst_seconds, burst_runs = bench.events.burst(burst)
        deployment.restart("scheduler", TUNED)
        bench.drop(EVENTS, "warm-up-tuned.txt")
        tuned = measure(bench, (EVENTS,), files, seed=9)
        tuned_stages = [s for s in (bench.stages(EVENTS, sample) for sample in tuned[EVENTS]) if s]
    finally:
        deployment.close()
    _report(defaults, tuned, stages, tuned_stages, files, time.monotonic() - started, warm, deployment)
    print(
        f"B8 burst: {burst} files, last output after {burst_seconds:.1f}s, {burst_runs} run(s)",
        file=sys.stderr,
    )
    shutil.rmtree(root, ignore_errors=True)
    return _rows(defaults, tuned, tuned_stages, burst, burst_seconds)


def _latencies(samples: list[Sample]) -> list[float]:
    return [s.latency for s in samples]


def _report(
    defaults: dict[str, list[Sample]],
    tuned: dict[str, list[Sample]],
    stages: list[dict[str, float]],
    tuned_stages: list[dict[str, float]],
    files: int,
    total: float,
    warm: float,
    deployment: Deployment,
) -> None:
    """Every sample and stage on stderr (the table has the percentiles and means)."""
    lines = [
        f"B8: {files} files per side; deployment start {deployment.seconds_to_start or 0:.0f}s, "
        f"start + warm-up {warm:.0f}s, total {total:.0f}s"
    ]
    for title, samples in (*defaults.items(), (f"{EVENTS} tuned", tuned[EVENTS])):
        values = _latencies(samples)
        p50, p95, mean = percentile(values, 0.5), percentile(values, 0.95), statistics.fmean(values)
        every = ", ".join(f"{v:.2f}" for v in values)
        lines.append(f"B8 {title} latencies (s, p50 {p50:.2f}, p95 {p95:.2f}, mean {mean:.2f}): {every}")
    for title, rounds in (("defaults", stages), ("tuned", tuned_stages)):
        means = {stage: statistics.fmean(s[stage] for s in rounds) for stage in STAGES} if rounds else {}
        lines.append(
            f"B8 events stages, {title} (means, s): {'; '.join(f'{k}: {v:.2f}' for k, v in means.items())}"
        )
    print("\n".join(lines), file=sys.stderr)


def _rows(
    defaults: dict[str, list[Sample]],
    tuned: dict[str, list[Sample]],
    stages: list[dict[str, float]],
    burst: int,
    burst_seconds: float,
) -> list[Row]:
    """The table: p50/p95 of each side and round, the tuned round's stages (means), the burst."""
    events, watcher, sensor = (_latencies(defaults[side]) for side in (EVENTS, WATCHER, SENSOR))
    fast = _latencies(tuned[EVENTS])
    pairs = (
        ("S3 events, tuned scheduler", "defaults", fast, events, ("<= 2 s", "<= 4 s")),
        ("S3 events, defaults", "polling watcher", events, watcher, ("reported", "reported")),
        ("polling watcher", "deferrable sensor", watcher, sensor, ("<= 10 s", "reported")),
    )
    rows: list[Row] = []
    for side, base, measured, baseline, targets in pairs:
        for q, target in zip((0.5, 0.95), targets, strict=True):
            title = f"B8 {side}: arrival -> output p{round(q * 100)} (s; baseline: {base})"
            rows.append((title, percentile(measured, q), percentile(baseline, q), target))
    for stage in STAGES:
        mean = statistics.fmean(s[stage] for s in stages) if stages else float("nan")
        rows.append((f"B8 S3 events, tuned, stage mean: {stage} (s)", mean, None, "reported"))
    rows.append(
        (f"B8 S3 events: {burst:,} files at once -> last output (s)", burst_seconds, None, "reported")
    )
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--smoke", action="store_true", help="2 files per side, a burst of 20")
    parser.add_argument("--repeat", type=int, default=5, help="files per side: max(10, 4 x repeat)")
    options = parser.parse_args()
    work = ROOT / "bench" / ".work"
    work.mkdir(exist_ok=True)
    rows = run(work, smoke=options.smoke, repeat=options.repeat)
    print(table(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
