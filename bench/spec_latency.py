"""
E1/E2 -- how fast a saved flow spec is listed, and a broken one reported, on a running Airflow with
Airflow 3.3's default ``[dag_processor]`` settings (issue 23: seconds, not minutes).

The deployment is the end-to-end tests' (:class:`tests.e2e.deployment.Deployment`) with the
LocalExecutor, its fast test intervals set back to Airflow's defaults (``refresh_interval`` 300 s,
``min_file_process_interval`` 30 s, ``bundle_refresh_check_interval`` 5 s, 2 parsing processes);
``[byo] spec_folder`` is the folder of a one-line factory DAG file. Every process it starts is
stopped at the end.

- **E1, Save -> DAG listed**: a new valid spec saved the way the page's Save does -- ``POST
  /byo/api/specs`` with an admin JWT, which writes the spec and asks the dag-processor to parse the
  factory's DAG file (:func:`airflow_byo.dag_parsing.request_reparse`); where the api-server has no
  editor API, the spec file written and the request made from here -- then ``GET
  /api/v2/dags/<name>`` polled every 0.2 s until the DAG is listed (paused, not stale): p50/p95 over
  the samples. Baseline: specs written into the folder with no request (as ``git pull`` does), the
  default wait for the factory file's next regular parse, a few samples, each capped.
- **E2, a spec turned invalid in place** (no page, no request): seconds from the rewrite until its
  import error is listed in ``GET /api/v2/importErrors``; no new DAG file appears meanwhile (the
  spec's own generated file existed before). Before issue 23 that error came with the next bundle
  refresh, ``refresh_interval`` (300 s by default): not re-measured here (it needs the old code).

    .venv/bin/python bench/spec_latency.py [--smoke] [--repeat N]    # prints bench/run.py's table

No time is asserted anywhere.
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import sys
import time
import uuid
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.latency import percentile  # noqa: E402 -- after the checkout is importable
from bench.timing import Row, table  # noqa: E402
from tests.e2e.deployment import Deployment  # noqa: E402

MIN_FILE_PROCESS_INTERVAL = 30.0

#: Airflow 3.3's own defaults, over the e2e deployment's fast test intervals.
DEFAULT_DAG_PROCESSOR = {
    "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "300",
    "AIRFLOW__DAG_PROCESSOR__BUNDLE_REFRESH_CHECK_INTERVAL": "5",
    "AIRFLOW__DAG_PROCESSOR__MIN_FILE_PROCESS_INTERVAL": str(int(MIN_FILE_PROCESS_INTERVAL)),
    "AIRFLOW__DAG_PROCESSOR__PARSING_PROCESSES": "2",
    "AIRFLOW__DAG_PROCESSOR__STALE_DAG_THRESHOLD": "50",
}

FACTORY_FILE = '''\
"""The flows of flows/ (bench/spec_latency.py)."""
from pathlib import Path

from airflow_byo.specs.factory import build_dags

globals().update(build_dags(Path(__file__).parent / "flows"))
'''


def spec_of(name: str, data: Path) -> dict[str, Any]:
    """A small valid spec: local source and destination under ``data``."""
    return {
        "name": name,
        "description": "bench/spec_latency.py",
        "source": {"type": "local", "path": str(data / name / "in"), "include": ["*.txt"]},
        "schedule": "manual",
        "processing": {"code": "def process(file, ctx):\n    return file.open().read()\n"},
        "destination": {"type": "local", "path": str(data / name / "out")},
    }


def yaml_of(spec: dict[str, Any]) -> str:
    import yaml

    return yaml.safe_dump(spec, sort_keys=False)


class SpecBench:
    def __init__(self, deployment: Deployment, data: Path) -> None:
        self.deployment = deployment
        self.data = data
        self.flows = deployment.dags_folder / "flows"
        self.factory = deployment.dags_folder / "byo_flows.py"
        self.api_saves: bool | None = None  # unknown until the first save
        self._engine: Any = None

    def write(self, name: str, text: str) -> Path:
        """Write a spec file atomically, as ``git pull`` or an editor's save-and-rename does."""
        target = self.flows / f"{name}.yaml"
        staged = self.deployment.root / "staging" / f"{uuid.uuid4().hex}.yaml"
        staged.write_text(text)
        os.replace(staged, target)
        return target

    def save(self, name: str) -> None:
        """Save a new spec as the page does: through its API, or (no editor API) the same two steps."""
        spec = spec_of(name, self.data)
        for folder in ("in", "out"):
            (self.data / name / folder).mkdir(parents=True, exist_ok=True)
        if self.api_saves is not False:
            response = self.deployment.api.http.post("/byo/api/specs", json={"spec": spec})
            if response.status_code == 201:
                self.api_saves = True
                return
            if response.status_code != 404 or self.api_saves:
                raise RuntimeError(
                    f"POST /byo/api/specs answered {response.status_code}: {response.text[:2000]}"
                )
            self.api_saves = False
        self.write(name, yaml_of(spec))
        self.request_reparse()

    def request_reparse(self) -> None:
        import sqlalchemy
        from sqlalchemy.orm import Session

        from airflow_byo.dag_parsing import request_reparse

        if self._engine is None:
            url = f"postgresql+psycopg2://postgres@127.0.0.1:5432/{self.deployment.metadata_db}"
            self._engine = sqlalchemy.create_engine(url, poolclass=sqlalchemy.pool.NullPool)
        with Session(self._engine) as session:
            request_reparse(session, self.factory)
            session.commit()

    def listed(self, name: str) -> bool:
        dag = self.deployment.dag(name)
        return bool(dag and dag["is_paused"] and not dag["is_stale"])

    def reported(self, spec_file: Path) -> bool:
        return any(f"{spec_file}:" in e["stack_trace"] for e in self.deployment.import_errors())

    @staticmethod
    def seconds_until(done: Any, cap: float, since: float) -> float | None:
        """Seconds from ``since`` (monotonic) until ``done()``, polled every 0.2 s; None past ``cap``."""
        while not done():
            if time.monotonic() - since > cap:
                return None
            time.sleep(0.2)
        return time.monotonic() - since

    def generated_files(self) -> set[Path]:
        return set((self.deployment.dags_folder / "byo_spec_errors").glob("*.py"))

    def close(self) -> None:
        if self._engine is not None:
            self._engine.dispose()


def _phase(rng: random.Random, index: int, count: int) -> float:
    """A pause that puts sample ``index`` of ``count`` in its own slice of the parse cycle (stratified)."""
    return (index + rng.random()) / count * MIN_FILE_PROCESS_INTERVAL


def measure(
    bench: SpecBench, *, saves: int, plain: int, broken: int, caps: tuple[float, float]
) -> dict[str, list[float | None]]:
    """E1 with and without the parse request (alternating), then E2; seconds, None past the cap."""
    import yaml

    samples: dict[str, list[float | None]] = {"saved": [], "plain": [], "broken": []}
    rng = random.Random(23)
    for index in range(max(saves, plain)):
        if index < saves:
            name = f"bench_e1_saved_{index:03d}"
            started = time.monotonic()
            bench.save(name)
            samples["saved"].append(bench.seconds_until(lambda n=name: bench.listed(n), caps[0], started))
        if index < plain:  # a spec from git lands anywhere in the factory file's parse cycle
            time.sleep(_phase(rng, index, plain))
            name = f"bench_e1_plain_{index:03d}"
            started = time.monotonic()
            bench.write(name, yaml_of(spec_of(name, bench.data)))
            samples["plain"].append(bench.seconds_until(lambda n=name: bench.listed(n), caps[0], started))
    # One more save: its request refreshes the bundle, so every spec's generated file is known.
    bench.save("bench_e1_last")
    bench.deployment.wait_for_dag("bench_e1_last", timeout=caps[0])
    for index in range(broken):
        time.sleep(_phase(rng, index, broken))  # anywhere in the parse cycles, as an edit in git
        spec_file = bench.flows / f"bench_e1_saved_{index:03d}.yaml"
        before = bench.generated_files()
        broken_spec = yaml.safe_load(spec_file.read_text()) | {"schedule": "hourlly"}
        started = time.monotonic()
        bench.write(spec_file.stem, yaml_of(broken_spec))
        samples["broken"].append(bench.seconds_until(lambda f=spec_file: bench.reported(f), caps[1], started))
        if bench.generated_files() - before:
            raise RuntimeError(f"E2: a new DAG file appeared: {sorted(bench.generated_files() - before)}")
    return samples


def _capped(values: list[float | None], cap: float) -> tuple[list[float], str]:
    """The values with those past the cap counted as the cap, and a note saying how many."""
    over = sum(1 for v in values if v is None)
    note = f"; {over} of {len(values)} past the {cap:.0f} s cap, counted as {cap:.0f} s" if over else ""
    return [cap if v is None else v for v in values], note


def rows_of(samples: dict[str, list[float | None]], caps: tuple[float, float], api: bool) -> list[Row]:
    saved, saved_note = _capped(samples["saved"], caps[0])
    plain, plain_note = _capped(samples["plain"], caps[0])
    broken, broken_note = _capped(samples["broken"], caps[1])
    how = "POST /byo/api/specs" if api else "spec file + request_reparse"
    baseline = f"baseline: no parse request, {len(plain)} samples{plain_note}"
    return [
        (
            f"E1 Save ({how}) -> DAG listed paused, p50 over {len(saved)}{saved_note} (s; {baseline})",
            percentile(saved, 0.5),
            percentile(plain, 0.5),
            "<= 10 s",
        ),
        (
            f"E1 Save -> DAG listed paused, p95 (s; {baseline})",
            percentile(saved, 0.95),
            percentile(plain, 0.95),
            "reported",
        ),
        (
            f"E2 spec turned invalid in place -> import error listed, p50 of {len(broken)}{broken_note} (s)",
            percentile(broken, 0.5),
            None,
            "<= 60 s (before: refresh_interval, 300 s default)",
        ),
        ("E2 spec turned invalid in place -> import error listed, max (s)", max(broken), None, "reported"),
    ]


def run(workdir: Path, *, smoke: bool, repeat: int) -> list[Row]:
    """E1/E2's rows; ``smoke``: 2 saves, 1 plain and 1 broken sample, small caps."""
    saves, plain, broken = (2, 1, 1) if smoke else (max(10, 2 * repeat), 3, 3)
    caps = (45.0, 75.0) if smoke else (120.0, 120.0)
    root = workdir / "e-spec-latency"
    shutil.rmtree(root, ignore_errors=True)
    root.mkdir(parents=True)
    from tests.e2e.processes import ensure_services

    ensure_services()
    data = root / "data"
    flows = root / "deployment" / "dags" / "flows"
    env = DEFAULT_DAG_PROCESSOR | {
        "AIRFLOW__BYO__SPEC_FOLDER": str(flows),
        "AIRFLOW__BYO__EDITOR_LOCAL_ROOTS": str(data),
    }
    deployment = Deployment(root / "deployment", executor="LocalExecutor", s3=False, extra_env=env)
    bench = SpecBench(deployment, data)
    flows.mkdir(parents=True)
    bench.write("bench_e_warm_up", yaml_of(spec_of("bench_e_warm_up", data)))
    deployment.write_dag_file("byo_flows.py", FACTORY_FILE)  # found by the first bundle scan at start
    started = time.monotonic()
    try:
        deployment.start()
        deployment.wait_for_dag("bench_e_warm_up", timeout=300)  # the factory parsed: its marker is there
        samples = measure(bench, saves=saves, plain=plain, broken=broken, caps=caps)
    finally:
        bench.close()
        deployment.close()
    print(
        f"E: deployment start {deployment.seconds_to_start or 0:.0f}s, "
        f"total {time.monotonic() - started:.0f}s; "
        f"saved via {'the editor API' if bench.api_saves else 'spec file + request_reparse'}\n"
        + "\n".join(
            f"E {kind} (s): {', '.join('-' if v is None else f'{v:.1f}' for v in values)}"
            for kind, values in samples.items()
        ),
        file=sys.stderr,
    )
    shutil.rmtree(root, ignore_errors=True)
    return rows_of(samples, caps, bool(bench.api_saves))


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--smoke", action="store_true", help="2 saves, 1 sample of each baseline, small caps")
    parser.add_argument("--repeat", type=int, default=5, help="saves: max(10, 2 x repeat)")
    options = parser.parse_args()
    work = ROOT / "bench" / ".work"
    work.mkdir(exist_ok=True)
    print(table(run(work, smoke=options.smoke, repeat=options.repeat)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
