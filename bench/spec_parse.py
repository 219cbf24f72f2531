"""
S1: parsing a folder of 200 flow specs into DAGs stays fast.

Measured: ``build_dags`` over 200 spec files (read, YAML, validation, one DAG with a sensor and a
flow task each). Baseline: the same 200 DAGs built by hand-written Python (the operators
constructed directly, no spec files). Target <= 2x, and far below Airflow's 30 s
``dagbag_import_timeout``.
"""

from __future__ import annotations

import shutil
import statistics
import time
from datetime import datetime
from pathlib import Path

SPEC = """\
name: flow_{index:03d}
description: generated flow {index}
source: {{type: local, path: /data/in/{index}, include: ["*.csv"]}}
schedule: hourly
sensor: {{deferrable: true}}
processing:
  code: |
    def process(file, ctx):
        return file.open().read()
  packages: "unidecode==1.3.8"
  runtime_config: {{job_config: {{timeout_seconds: 60}}}}
destination: {{type: local, path: /data/out/{index}}}
"""


def run(workdir: Path, *, specs: int, repeat: int) -> list[tuple[str, float, float, str]]:
    from airflow.sdk import DAG

    from airflow_byo.operators.byo_flow import ByoFlowOperator
    from airflow_byo.sensors.new_files import ByoNewFilesSensor
    from airflow_byo.specs.factory import build_dags

    folder = workdir / f"specs-{specs}"
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    for index in range(specs):
        (folder / f"flow_{index:03d}.yaml").write_text(SPEC.format(index=index))

    def by_hand() -> None:
        for index in range(specs):
            with DAG(f"flow_{index:03d}", schedule="@hourly", start_date=datetime(2024, 1, 1), catchup=False):
                files = ByoNewFilesSensor(
                    task_id="wait_for_new_files",
                    source=f"/data/in/{index}",
                    include=["*.csv"],
                    flow_id=f"flow_{index:03d}.flow",
                    deferrable=True,
                ).output
                ByoFlowOperator(
                    task_id="flow",
                    source=f"/data/in/{index}",
                    include=["*.csv"],
                    destination=f"/data/out/{index}",
                    processor="def process(file, ctx):\n    return file.open().read()\n",
                    packages="unidecode==1.3.8",
                    runtime_config={"job_config": {"timeout_seconds": 60}},
                    flow_id=f"flow_{index:03d}.flow",
                    files=files,
                )

    def factory() -> None:
        assert len(build_dags(folder)) == specs

    def timed(func: object) -> float:
        started = time.perf_counter()
        func()  # type: ignore[operator]
        return time.perf_counter() - started

    baseline = statistics.median(timed(by_hand) for _ in range(repeat))
    measured = statistics.median(timed(factory) for _ in range(repeat))
    return [(f"S1 parse {specs} flow specs into DAGs (s)", measured, baseline, "<= 2.0x")]
