"""
B7 -- scale-out across Celery workers: the same CPU-bound batched flow on one
``airflow celery worker --concurrency 1`` and then on two, in one real deployment on this machine
(the end-to-end tests' :class:`tests.e2e.deployment.Deployment`: PostgreSQL metadata DB and
ledger, Redis broker, S3 in and out through moto, scheduler, dag-processor, api-server,
triggerer). Each task runs one child (``workers: 1``), so any speed-up comes from the second
Celery worker alone. A warm-up run first gives both workers their flow environment. Target:
two workers >= 1.6x faster than one.

Not part of ``bench/run.py`` or CI (the deployment costs a minute to start):

    .venv/bin/python bench/celery_scale.py [--files-per-batch 4] [--batches 4] [--cpu 3]

It prints one row in bench/run.py's table format; no time is asserted anywhere.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.e2e.deployment import Deployment  # noqa: E402 -- after the checkout is importable

BUCKET = "byo-bench-b7"
DAGS = ("bench_b7_warm", "bench_b7_one", "bench_b7_two")

DAG_FILE = '''
"""B7: one batched CPU-bound BYO flow per measurement (bench/celery_scale.py)."""
from datetime import datetime

from airflow.sdk import DAG

from airflow_byo.operators.byo_flow import ByoFlowOperator
from airflow_byo.operators.plan_batches import ByoBatchPlanOperator

# Pure-Python work for dag_run.conf "cpu" CPU-seconds per file.
PROCESS = """
import time

def process(file, ctx, *, cpu="0"):
    end, spins = time.process_time() + float(cpu), 0
    while time.process_time() < end:
        spins += 1
    return {{"file": file.name, "spins": spins}}
"""

for dag_id in {dags!r}:
    with DAG(dag_id=dag_id, schedule=None, start_date=datetime(2024, 1, 1), catchup=False):
        source = f"s3://{bucket}/{{dag_id}}/in"
        plan = ByoBatchPlanOperator(
            task_id="plan",
            source=source,
            source_conn_id="{conn_id}",
            flow_id=f"{{dag_id}}.process",
            files_per_batch={files_per_batch},
        )
        ByoFlowOperator.partial(
            task_id="process",
            flow_id=f"{{dag_id}}.process",
            source=source,
            source_conn_id="{conn_id}",
            destination=f"s3://{bucket}/{{dag_id}}/out",
            destination_conn_id="{conn_id}",
            processor=PROCESS,
            runtime_config={{
                "custom_code": {{"kwargs": {{"cpu": "{{{{ dag_run.conf.get('cpu', 0) }}}}"}}}},
                "job_config": {{"workers": 1, "timeout_seconds": 600}},
            }},
        ).expand(files=plan.output)
'''


def _timed_run(deployment: Deployment, dag_id: str, cpu: float) -> float:
    began = time.monotonic()
    run_id = deployment.trigger(dag_id, {"cpu": cpu})
    deployment.wait_for_run(dag_id, run_id, timeout=1800)
    return time.monotonic() - began


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--batches", type=int, default=4, help="mapped tasks per run")
    parser.add_argument("--files-per-batch", type=int, default=4)
    parser.add_argument("--cpu", type=float, default=3.0, help="CPU-seconds of work per file")
    options = parser.parse_args()

    root = Path(tempfile.mkdtemp(prefix="byo-bench-b7-"))
    deployment = Deployment(root)
    try:
        deployment.start()
        assert deployment.s3 is not None
        s3 = deployment.s3.client()
        s3.create_bucket(Bucket=BUCKET)
        files = options.batches * options.files_per_batch
        for dag_id in DAGS:
            for index in range(files if dag_id != "bench_b7_warm" else 2 * options.files_per_batch):
                s3.put_object(Bucket=BUCKET, Key=f"{dag_id}/in/f{index:03d}.csv", Body=b"id\n1\n")
        text = DAG_FILE.format(
            dags=DAGS, bucket=BUCKET, conn_id=deployment.s3_conn_id, files_per_batch=options.files_per_batch
        )
        deployment.write_dag_file("bench_b7.py", text)
        for dag_id in DAGS:
            deployment.wait_for_dag(dag_id, timeout=180)
            deployment.unpause(dag_id)

        _timed_run(deployment, "bench_b7_warm", 2.0)  # both workers busy: both environments built
        deployment.kill_worker("worker-b")
        one = _timed_run(deployment, "bench_b7_one", options.cpu)
        deployment.start_worker("worker-b")
        two = _timed_run(deployment, "bench_b7_two", options.cpu)
    finally:
        deployment.close()
        shutil.rmtree(root, ignore_errors=True)

    label = (
        f"B7 {files} files x {options.cpu:g} CPU-s, {options.batches} batches: "
        "2 Celery workers vs 1 (s, run wall time)"
    )
    print("| figure | measured | same-run baseline | ratio | target |")
    print("|---|---:|---:|---:|---|")
    ratio = f"{two / one:.2f}x ({one / two:.2f}x faster)"
    print(f"| {label} | {two:.1f} | {one:.1f} | {ratio} | >= 1.6x faster |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
