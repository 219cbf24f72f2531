"""
S1: parsing a folder of 200 flow specs into DAGs stays fast.

Measured: ``build_dags`` over 200 spec files (read, YAML, validation, one DAG with a sensor and a
flow task each). Baseline: the same 200 DAGs built by hand-written Python (the operators
constructed directly, no spec files). Target <= 2x, and far below Airflow's 30 s
``dagbag_import_timeout``.

S2: one file of each hostile kind (an alias bomb, a 50 MB file, non-UTF-8 bytes, a list, a scalar,
an empty file, a Python tag, duplicate keys) beside the 200 valid specs costs next to nothing
(issue 14). Measured: ``build_dags`` over that folder; baseline: over the valid specs alone. Each
side runs in a fresh process, so the second row compares whole-process peak RSS (imports included).

S3: what one generated DAG file per spec costs the dag-processor (issue 23: each spec's file exists
before it is needed, so a spec broken in git is reported within ``min_file_process_interval``).
Each file is parsed as ``airflow dag-processor`` parses a file: in a fresh process that has
imported what the manager has (``airflow.dag_processing.manager``, and the ``airflow.*`` modules the
file imports, pre-imported before the fork), forked per parse; timed in the child: the DagBag of
the file and the serialization of its DAGs. Rows: a valid, unchanged spec's file (a read and a
hash) against a one-task DAG file; the same file when the spec changed or is invalid (the full
check); and the whole folder's files per ``min_file_process_interval`` against the factory's own
DAG file parsed the same way.

S4: the memory of that parse against hand-written DAGs (issue 24). In a fresh process each:
``build_dags`` over 20 / 200 / 1,000 specs, and the same DAGs written by hand in Python
(:func:`hand_written_dags`, S1's baseline); the whole process's peak RSS (``VmHWM``, imports
included) and what the build added to the resident set the process had after ``import
airflow.sdk`` (the floor both sides share). Target: the specs' peak <= 1.2x the hand-written one.

Memory is read from ``/proc/self/status`` (``VmHWM``), never from ``getrusage``: Linux carries
``ru_maxrss`` over ``fork`` + ``exec``, so a child started from a large process reports that
process's peak. That is what S2's "1,056 MB" was: ``bench/run.py`` itself, grown by L1/L2.
"""

from __future__ import annotations

import json
import shutil
import statistics
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path
from typing import Any

from bench.timing import Row

_ROOT = Path(__file__).resolve().parent.parent  # the checkout: ``bench.*`` importable in a child

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


def spec_folder(workdir: Path, specs: int) -> Path:
    """A fresh folder of ``specs`` valid specs (:data:`SPEC`)."""
    folder = workdir / f"specs-{specs}"
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    for index in range(specs):
        (folder / f"flow_{index:03d}.yaml").write_text(SPEC.format(index=index))
    return folder


def hand_written_dags(count: int) -> dict[str, Any]:
    """The DAGs of ``count`` :data:`SPEC` specs, written by hand in Python: S1's and S4's baseline."""
    from airflow.sdk import DAG

    from airflow_byo.operators.byo_flow import ByoFlowOperator
    from airflow_byo.sensors.new_files import ByoNewFilesSensor

    dags = {}
    for index in range(count):
        with DAG(
            f"flow_{index:03d}", schedule="@hourly", start_date=datetime(2024, 1, 1), catchup=False
        ) as dag:
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
        dags[f"flow_{index:03d}"] = dag
    return dags


def run(workdir: Path, *, specs: int, repeat: int) -> list[Row]:
    from airflow_byo.specs.factory import build_dags

    folder = spec_folder(workdir, specs)

    def by_hand() -> None:
        hand_written_dags(specs)

    def factory() -> None:
        assert len(build_dags(folder)) == specs

    def timed(func: object) -> float:
        started = time.perf_counter()
        func()  # type: ignore[operator]
        return time.perf_counter() - started

    baseline = statistics.median(timed(by_hand) for _ in range(repeat))
    measured = statistics.median(timed(factory) for _ in range(repeat))
    rows: list[Row] = [(f"S1 parse {specs} flow specs into DAGs (s)", measured, baseline, "<= 2.0x")]
    rows += run_hostile(workdir, folder, specs=specs, repeat=repeat)
    return rows + run_generated(workdir, folder, specs=specs, repeat=repeat)


#: a valid spec but for a few hundred bytes of aliases that expand to 10^9 strings when followed
LAUGHS = "      a: &a [lol, lol, lol, lol, lol, lol, lol, lol, lol]\n" + "".join(
    f"      {name}: &{name} [{', '.join([f'*{prev}'] * 9)}]\n"
    for prev, name in zip("abcdefgh", "bcdefghi", strict=True)
)

#: build_dags over a folder in a fresh process: seconds and peak RSS (MB) as JSON
_MEASURE = """
import json, sys, time
from bench.memory import status_kb
from airflow_byo.specs.factory import build_dags
started = time.perf_counter()
dags = build_dags(sys.argv[1])
print(json.dumps({"seconds": time.perf_counter() - started, "dags": len(dags),
                  "peak_mb": status_kb("self", "VmHWM") / 1024}))
"""


def _hostile_files(folder: Path) -> None:
    valid = SPEC.format(index=999)
    bomb = valid.replace(
        "  runtime_config: {job_config: {timeout_seconds: 60}}\n",
        "  runtime_config:\n    job_config: {timeout_seconds: 60}\n    laughs:\n" + LAUGHS,
    )
    (folder / "zz_bomb.yaml").write_text(bomb.replace("flow_999", "bomb"))
    with open(folder / "zz_huge.yaml", "wb") as handle:
        handle.truncate(50 * 1024 * 1024)  # sparse: never read, refused from its size
    (folder / "zz_latin1.yaml").write_bytes(b"name: caf\xe9\n")
    (folder / "zz_list.yaml").write_text("- name: a\n- name: b\n")
    (folder / "zz_scalar.yaml").write_text("just a string\n")
    (folder / "zz_empty.yaml").write_text("")
    (folder / "zz_python_tag.yaml").write_text("name: !!python/object/apply:os.getpid []\n")
    (folder / "zz_duplicate.yaml").write_text(valid + "name: again\n")


def run_hostile(
    workdir: Path, valid_folder: Path, *, specs: int, repeat: int
) -> list[tuple[str, float, float, str]]:
    hostile = workdir / f"specs-{specs}-hostile"
    shutil.rmtree(hostile, ignore_errors=True)
    shutil.copytree(valid_folder, hostile)
    _hostile_files(hostile)

    def measure(folder: Path) -> dict[str, float]:
        result = subprocess.run(
            [sys.executable, "-c", _MEASURE, str(folder)],
            capture_output=True,
            text=True,
            check=True,
            cwd=_ROOT,
        )
        figures = json.loads(result.stdout.splitlines()[-1])
        assert figures["dags"] == specs, figures  # the hostile files took no valid flow down
        return figures

    valid_runs, hostile_runs = [], []
    for _ in range(repeat):  # alternate, so drift on a shared machine hits both alike
        valid_runs.append(measure(valid_folder))
        hostile_runs.append(measure(hostile))
    shutil.rmtree(hostile, ignore_errors=True)

    def median(runs: list[dict[str, float]], key: str) -> float:
        return statistics.median(run[key] for run in runs)

    return [
        (
            f"S2 parse {specs} flow specs + 8 hostile files (s)",
            median(hostile_runs, "seconds"),
            median(valid_runs, "seconds"),
            "<= 1.2x",
        ),
        (
            "S2 peak RSS of that parse, whole process (VmHWM, MB)",
            median(hostile_runs, "peak_mb"),
            median(valid_runs, "peak_mb"),
            "<= 1.1x",
        ),
    ]


#: what the dag-processor does with one file, ``repeat`` times per file, alternating (JSON medians, ms)
_FORKED_PARSE = """
import json, os, statistics, sys, time
from pathlib import Path
import structlog
import airflow.dag_processing.manager  # what the manager process has imported before it forks
from airflow.dag_processing.dagbag import BundleDagBag
from airflow.dag_processing.processor import _pre_import_airflow_modules, _serialize_dags

bundle, repeat, files = Path(sys.argv[1]), int(sys.argv[2]), json.loads(sys.argv[3])
log = structlog.get_logger()

def parse(path):
    _pre_import_airflow_modules(path, log)
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:
        started = time.perf_counter()
        bag = BundleDagBag(dag_folder=path, bundle_path=bundle, bundle_name="bench", load_op_links=False)
        _serialize_dags(bag, log)
        os.write(write, json.dumps([time.perf_counter() - started, len(bag.import_errors)]).encode())
        os._exit(0)
    os.close(write)
    with os.fdopen(read) as handle:
        seconds, errors = json.loads(handle.read())
    os.waitpid(pid, 0)
    return seconds, errors

samples = {label: [] for label in files}
for _ in range(repeat):
    for label, path in files.items():
        samples[label].append(parse(path))
print(json.dumps({label: [statistics.median(s for s, _ in runs) * 1e3, max(e for _, e in runs)]
                  for label, runs in samples.items()}))
"""

ONE_TASK_DAG = """\
from datetime import datetime

from airflow.providers.standard.operators.empty import EmptyOperator
from airflow.sdk import DAG

with DAG("one_task", schedule=None, start_date=datetime(2024, 1, 1), catchup=False):
    EmptyOperator(task_id="only")
"""

FACTORY_DAG = """\
from pathlib import Path

from airflow_byo.specs.factory import build_dags

globals().update(build_dags(Path(__file__).parent / "flows"))
"""


def run_generated(workdir: Path, valid_folder: Path, *, specs: int, repeat: int) -> list[Row]:
    """S3's rows: see the module's docs. ``valid_folder``: S1's folder of ``specs`` valid specs."""
    from airflow_byo.specs.error_files import error_file_for

    bundle = workdir / f"s3-bundle-{specs}"
    shutil.rmtree(bundle, ignore_errors=True)
    shutil.copytree(valid_folder, bundle / "flows")
    (bundle / "byo_flows.py").write_text(FACTORY_DAG)
    (bundle / "one_task.py").write_text(ONE_TASK_DAG)
    (bundle / "flows" / "zz_invalid.yaml").write_text(SPEC.format(index=998).replace("hourly", "hourlly"))
    first = bundle / "flows" / "flow_000.yaml"
    files = {
        "factory": bundle / "byo_flows.py",
        "one_task": bundle / "one_task.py",
        "valid": error_file_for(bundle / "byo_flows.py", bundle / "flows", first),
        "invalid": error_file_for(
            bundle / "byo_flows.py", bundle / "flows", bundle / "flows" / "zz_invalid.yaml"
        ),
    }

    def forked(repetitions: int, chosen: dict[str, Path]) -> dict[str, list[float]]:
        argv = [sys.executable, "-c", _FORKED_PARSE, str(bundle), str(repetitions)]
        argv.append(json.dumps({label: str(path) for label, path in chosen.items()}))
        result = subprocess.run(argv, capture_output=True, text=True, check=True)
        return dict(json.loads(result.stdout.splitlines()[-1]))

    forked(1, {"factory": files["factory"]})  # the factory's first parse writes every spec's file
    figures = forked(max(repeat, 5), files)
    if (figures["valid"][1], figures["invalid"][1]) != (0, 1):  # an import error only when invalid
        raise RuntimeError(f"S3: unexpected import errors: {figures}")
    shutil.rmtree(bundle, ignore_errors=True)
    valid_ms, one_task_ms = figures["valid"][0], figures["one_task"][0]
    return [
        (
            "S3 one valid spec's generated DAG file, parsed as the dag-processor does (ms; baseline: a "
            "one-task DAG file)",
            valid_ms,
            one_task_ms,
            "<= 1.0x",
        ),
        (
            "S3 that file when its spec changed or is invalid: the full check (ms)",
            figures["invalid"][0],
            one_task_ms,
            "reported",
        ),
        (
            f"S3 {specs} specs' generated files per min_file_process_interval (s; baseline: the factory "
            "file's own parse)",
            specs * valid_ms / 1e3,
            figures["factory"][0] / 1e3,
            "reported",
        ),
    ]


#: S4's child: one side built in a fresh process; its peak RSS and the RSS after ``import airflow.sdk``
_MEMORY = """
import json, sys, time
from bench.memory import status_kb
import airflow.sdk
floor = status_kb("self", "VmRSS")
side, arg = sys.argv[1], sys.argv[2]
started = time.perf_counter()
if side == "specs":
    from airflow_byo.specs.factory import build_dags
    dags = build_dags(arg)
else:
    from bench.spec_parse import hand_written_dags
    dags = hand_written_dags(int(arg))
print(json.dumps({"seconds": time.perf_counter() - started, "dags": len(dags),
                  "peak_mb": status_kb("self", "VmHWM") / 1024, "floor_mb": floor / 1024}))
"""


def _memory_of(side: str, arg: str, expected: int) -> dict[str, float]:
    done = subprocess.run(
        [sys.executable, "-c", _MEMORY, side, arg], capture_output=True, text=True, cwd=_ROOT, check=False
    )
    if done.returncode != 0:
        raise RuntimeError(f"S4: the {side} side failed:\n{done.stderr[-3000:]}")
    figures: dict[str, float] = json.loads(done.stdout.splitlines()[-1])
    if figures["dags"] != expected:
        raise RuntimeError(f"S4: {figures['dags']} DAGs from the {side} side, expected {expected}")
    return figures


def run_memory(workdir: Path, *, smoke: bool, repeat: int) -> tuple[list[Row], dict[str, Any]]:
    """S4's rows (see the module's docs), and both sides' memory at every size (for the plot)."""
    sizes = (20,) if smoke else (20, 200, 1000)
    folders = {size: spec_folder(workdir, size) for size in sizes}
    runs: dict[str, dict[int, list[dict[str, float]]]] = {"specs": {}, "hand": {}}
    for _ in range(repeat):  # alternating: drift on a shared machine hits both alike
        for size in sizes:
            runs["specs"].setdefault(size, []).append(_memory_of("specs", str(folders[size]), size))
            runs["hand"].setdefault(size, []).append(_memory_of("hand", str(size), size))
    for folder in folders.values():
        shutil.rmtree(folder, ignore_errors=True)

    def median(side: str, size: int, figure: str) -> float:
        if figure == "added_mb":
            return statistics.median(r["peak_mb"] - r["floor_mb"] for r in runs[side][size])
        return statistics.median(r[figure] for r in runs[side][size])

    figures = ("peak_mb", "added_mb", "floor_mb", "seconds")
    points: dict[str, Any] = {"sizes": sizes}
    points |= {side: {size: {f: median(side, size, f) for f in figures} for size in sizes} for side in runs}
    size = 200 if 200 in sizes else max(sizes)
    specs, hand = points["specs"][size], points["hand"][size]
    rows: list[Row] = [
        (
            f"S4 {size} flow specs -> DAGs vs {size} hand-written DAGs: peak RSS, whole process (VmHWM, MB)",
            specs["peak_mb"],
            hand["peak_mb"],
            "<= 1.2x",
        ),
        (
            f"S4 the same, what the build added over `import airflow.sdk` ({hand['floor_mb']:.0f} MB) (MB)",
            specs["added_mb"],
            hand["added_mb"],
            "reported",
        ),
    ]
    return rows, points
