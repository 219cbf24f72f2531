"""
W1/W2: one run over 100,000 new small files costs per file what a run over 2,000 does, the task
process does not grow with the files, and the summary XCom stays the same size.

Each run is one ``ByoFlowOperator.execute`` with the ledger (a fresh SQLite ledger and
``flow_id``: every file is new) in a fresh ``python -m bench.files_scale`` process, over B1's CSV
files of ~4 KB with B1's function (CSV -> JSON Lines) and the default ``job_config`` (``workers:
auto``), ``python_interpreter=sys.executable``. W1: a local source and destination. W2: both on
S3 (a bucket of a moto S3 server this benchmark starts on 127.0.0.1, IAM off; the inputs
uploaded before timing, the outputs deleted after each run). Sizes 2,000 / 20,000 / 100,000.

Inside that process, after an untimed warm-up run over 10 files (imports, first-use caches): the
seconds of ``execute``; ``VmRSS`` just before it and ``VmHWM`` after it, from ``/proc/self/status``
(the growth is the difference: the listing, the ledger query, the run); the summary's JSON size.
Rows, against the 2,000-file run: seconds per file (<= 1.2x), the task process's memory growth
at 100,000 (<= 100 MB), the summary's size (bounded: the same). Sizes alternate; medians of
``repeat`` runs. The smoke run (10 and 50 files) runs both sizes of a place in one process, the
peak reset between them (``/proc/self/clear_refs``), to stay within seconds.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from bench.csv_files import TRANSFORM, csv_files
from bench.memory import status_kb
from bench.timing import Row

ROOT = Path(__file__).resolve().parent.parent
_MARK = "W-RUN "
_BUCKET = "bench-w-out"  # the outputs; each size's inputs have a bucket of their own (see _S3)
_S3_CONN, _LEDGER_CONN = "byo_bench_w_s3", "byo_bench_w_ledger"

__all__ = ["run"]


# -- one run, in a fresh process ---------------------------------------------------------------
def _execute(source: str, destination: str, files: int, conn_id: str | None) -> dict[str, Any]:
    from bench.operator_run import execute_flow

    return execute_flow(
        "W",
        files,
        source=source,
        destination=destination,
        source_conn_id=conn_id,
        destination_conn_id=conn_id,
        processor=TRANSFORM,
        ledger_conn_id=_LEDGER_CONN,
    )


def _main(plan_json: str) -> int:
    """
    The task process: a warm-up run, then each measured run of ``plan_json`` (one at full size,
    every size of a place in the smoke run); prints each run's figures as a JSON line.
    """
    import logging

    logging.basicConfig(level=logging.WARNING)
    plan = json.loads(plan_json)
    conn = plan["conn_id"] or None
    _execute(plan["warm_up"], f"{plan['destination']}-warm-up", 10, conn)
    for files in plan["sizes"]:
        _reset_peak()
        before = status_kb("self", "VmRSS")
        started = time.perf_counter()
        destination = f"{plan['destination']}-{files}"
        summary = _execute(plan["sources"][str(files)], destination, files, conn)
        seconds = time.perf_counter() - started
        figures = {"files": files, "seconds": seconds, "rss_before_kb": before}
        figures |= {"hwm_kb": status_kb("self", "VmHWM"), "xcom_bytes": len(json.dumps(summary))}
        print(_MARK + json.dumps(figures), flush=True)
    return 0


def _reset_peak() -> None:
    """``VmHWM`` back to the resident set now (Linux >= 4.0), so the next run's peak is its own."""
    with open("/proc/self/clear_refs", "w") as handle:
        handle.write("5")


def _fresh_process(plan: dict[str, Any], ledger: Path) -> list[dict[str, Any]]:
    """Runs ``plan`` (see :func:`_main`) in a fresh process with a fresh SQLite ledger; each run's figures."""
    env = os.environ | {
        "PYTHONPATH": str(ROOT),
        f"AIRFLOW_CONN_{_LEDGER_CONN.upper()}": json.dumps({"conn_type": "sqlite", "host": str(ledger)}),
    }
    argv = [sys.executable, "-m", "bench.files_scale", json.dumps(plan)]
    done = subprocess.run(argv, cwd=ROOT, env=env, capture_output=True, text=True)
    lines = [line for line in done.stdout.splitlines() if line.startswith(_MARK)]
    if done.returncode != 0 or len(lines) != len(plan["sizes"]):
        raise RuntimeError(f"W: the task process failed ({done.returncode}):\n{done.stderr[-3000:]}")
    return [dict(json.loads(line.removeprefix(_MARK))) for line in lines]


# -- the two places ----------------------------------------------------------------------------
class _Local:
    name, figure = "local", "W1"

    def __init__(self, workdir: Path, sizes: tuple[int, ...]) -> None:
        self.workdir = workdir
        self.sources = {size: str(csv_files(workdir, size)) for size in (*sizes, 10)}

    def run(self, sizes: list[int]) -> list[dict[str, Any]]:
        scratch = Path(tempfile.mkdtemp(dir=self.workdir))
        try:
            plan = {
                "sizes": sizes,
                "sources": {str(size): self.sources[size] for size in sizes},
                "destination": str(scratch / "out"),
                "warm_up": self.sources[10],
                "conn_id": "",
            }
            return _fresh_process(plan, scratch / "ledger.db")
        finally:
            shutil.rmtree(scratch, ignore_errors=True)


class _S3:
    """A moto S3 server on 127.0.0.1 with the inputs of each size under ``in-<size>/``."""

    name, figure = "S3", "W2"

    def __init__(self, workdir: Path) -> None:
        from tests.servers import free_port, wait_for_port

        self.workdir = workdir
        port = free_port()
        self.endpoint = f"http://127.0.0.1:{port}"
        argv = [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)]
        self.log = open(workdir / "moto-w.log", "wb")  # noqa: SIM115 -- closed in close()
        self.process = subprocess.Popen(argv, stdout=self.log, stderr=subprocess.STDOUT)
        wait_for_port(port, self.process, "moto S3 server")
        extra = {"endpoint_url": self.endpoint, "region_name": "us-east-1"}
        connection = {"conn_type": "aws", "login": "bench", "password": "bench", "extra": extra}
        os.environ[f"AIRFLOW_CONN_{_S3_CONN.upper()}"] = json.dumps(connection)

    def upload(self, sizes: tuple[int, ...]) -> None:
        """
        The inputs of each size (and the warm-up's 10 files) into a bucket of their own (untimed):
        moto lists a page of keys by sorting the whole bucket, so a listing of n keys costs it
        O(n^2 / 1000) -- kept to the listed keys alone.
        """
        client = self.client()
        client.create_bucket(Bucket=_BUCKET)
        for size in (*sizes, 10):
            client.create_bucket(Bucket=f"bench-w-in-{size}")
            self._upload(csv_files(self.workdir, size), f"bench-w-in-{size}")

    def client(self) -> Any:
        import boto3

        return boto3.client(
            "s3",
            endpoint_url=self.endpoint,
            aws_access_key_id="bench",
            aws_secret_access_key="bench",
            region_name="us-east-1",
        )

    def _upload(self, folder: Path, bucket: str) -> None:
        client = self.client()

        def put(path: Path) -> None:
            client.put_object(Bucket=bucket, Key=f"in/{path.name}", Body=path.read_bytes())

        with ThreadPoolExecutor(4) as threads:
            list(threads.map(put, sorted(folder.iterdir())))

    def _delete(self, prefix: str) -> None:
        client = self.client()
        for page in client.get_paginator("list_objects_v2").paginate(Bucket=_BUCKET, Prefix=f"{prefix}/"):
            keys = [{"Key": item["Key"]} for item in page.get("Contents", [])]
            if keys:
                client.delete_objects(Bucket=_BUCKET, Delete={"Objects": keys, "Quiet": True})

    def run(self, sizes: list[int]) -> list[dict[str, Any]]:
        scratch = Path(tempfile.mkdtemp(dir=self.workdir))
        out = f"out-{scratch.name}"
        try:
            plan = {
                "sizes": sizes,
                "sources": {str(size): f"s3://bench-w-in-{size}/in" for size in sizes},
                "destination": f"s3://{_BUCKET}/{out}",
                "warm_up": "s3://bench-w-in-10/in",
                "conn_id": _S3_CONN,
            }
            return _fresh_process(plan, scratch / "ledger.db")
        finally:
            for size in sizes:
                self._delete(f"{out}-{size}")
            self._delete(f"{out}-warm-up")
            shutil.rmtree(scratch, ignore_errors=True)

    def close(self) -> None:
        from tests.servers import stop

        stop(self.process)
        self.log.close()
        os.environ.pop(f"AIRFLOW_CONN_{_S3_CONN.upper()}", None)


# -- the figures -------------------------------------------------------------------------------
def _measure(place: Any, sizes: tuple[int, ...], repeat: int, *, smoke: bool) -> dict[int, dict[str, float]]:
    """
    Per size, medians over ``repeat`` runs (sizes alternating): ms per file, growth MB, XCom bytes.
    Each run in a fresh process; the smoke run's sizes share one (seconds, not minutes).
    """
    runs: dict[int, list[dict[str, Any]]] = {size: [] for size in sizes}
    for _ in range(repeat):
        for together in [list(sizes)] if smoke else [[size] for size in sizes]:
            for figures in place.run(together):
                runs[figures["files"]].append(figures)
                print(f"  {place.figure} {place.name}: {json.dumps(figures)}", file=sys.stderr, flush=True)

    def figures(size: int) -> dict[str, float]:
        return {
            "ms_per_file": statistics.median(r["seconds"] / size * 1e3 for r in runs[size]),
            "growth_mb": statistics.median((r["hwm_kb"] - r["rss_before_kb"]) / 1024 for r in runs[size]),
            "xcom_bytes": statistics.median(r["xcom_bytes"] for r in runs[size]),
        }

    return {size: figures(size) for size in sizes}


def _rows(figure: str, name: str, got: dict[int, dict[str, float]]) -> list[Row]:
    small, big = min(got), max(got)
    label = f"{figure} {big:,} small CSV files, {name}, operator + ledger"
    return [
        (
            f"{label}: time per file vs the {small:,}-file run (ms)",
            got[big]["ms_per_file"],
            got[small]["ms_per_file"],
            "<= 1.2x",
        ),
        (
            f"{label}: task process memory growth vs the {small:,}-file run (MB)",
            got[big]["growth_mb"],
            got[small]["growth_mb"],
            "<= 100 MB",
        ),
        (
            f"{label}: summary XCom size vs the {small:,}-file run (bytes)",
            got[big]["xcom_bytes"],
            got[small]["xcom_bytes"],
            "bounded (~1.0x)",
        ),
    ]


def run(workdir: Path, *, place: str, smoke: bool, repeat: int) -> tuple[list[Row], dict[str, Any]]:
    """
    The rows of W1 (``place="local"``) or W2 (``"S3"``), and the figures at every size (for the
    plot): ``{"sizes": [...], "<place>": {size: {"ms_per_file", "growth_mb", "xcom_bytes"}}}``.
    """
    sizes = (10, 50) if smoke else (2_000, 20_000, 100_000)
    figures: dict[str, Any] = {"sizes": sizes}
    if place == "local":
        local = _Local(workdir, sizes)
        figures[place] = _measure(local, sizes, repeat, smoke=smoke)
        return _rows(local.figure, local.name, figures[place]), figures
    with contextlib.closing(_S3(workdir)) as s3:
        s3.upload(sizes)
        figures[place] = _measure(s3, sizes, repeat, smoke=smoke)
    return _rows(s3.figure, s3.name, figures[place]), figures


if __name__ == "__main__":
    sys.exit(_main(sys.argv[1]))
