"""
B3: one big file through a streaming function, through ``ByoFlowOperator.execute`` with the ledger.

The input is one JSON Lines file of 2 GiB (~1 KB records; generated once under the workdir,
kept between runs, never timed). The function reads it line by line and yields one record per
line (a field added), which the child streams to the output: neither side ever holds the file.
Local source and destination, ``python_interpreter=sys.executable`` (no environment build),
the ``[byo] sandbox`` of this machine, ``timeout_seconds``/``cpu_seconds`` raised to an hour (a
2 GiB file may take longer than the 300 s default on a slow machine).

* Throughput: the operator against the same function called in this process on the same file in
  a plain loop, its records written with the same writer (``write_records``) to a temporary name
  and ``os.replace``-d -- what the child does, minus the framework. Target >= 0.9x (MB/s).
* Memory, sampled from ``/proc`` (``VmHWM``, the peak resident set): each task runs once more in
  a fresh process (``python -m bench.streaming SOURCE DESTINATION``), on the big file and on a
  tiny one. The child (found among that process's descendants by its command line) must peak
  at <= 200 MB; the task process on the big file at most 50 MB above the same task on the tiny
  file. The tiny file's child is the baseline of the first.
"""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bench.memory import status_kb
from bench.timing import Row, medians

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator


ROOT = Path(__file__).resolve().parent.parent

STREAMING = """
import json

def process(file, ctx):
    with file.open() as handle:
        for line in handle:
            record = json.loads(line)
            record["amount_eur"] = round(record["amount"] * 0.92, 2)
            yield record
"""

#: A big file may take longer than the defaults (300 s, 600 CPU-s) on a slow machine.
JOB_CONFIG = {"timeout_seconds": 3600, "cpu_seconds": 3600}

_CHILD_MARK = "airflow_byo.runtime.child"  # in the child's command line (see child_process)
_PEAK_MARK = "B3-PEAK "  # the task process's report line, among whatever else it prints
_WORDS = ("alpha", "bravo", "charlie", "delta", "echo", "foxtrot", "golf", "hotel", "india", "juliet")


# -- inputs ------------------------------------------------------------------------------------
def _records(rng: random.Random) -> Iterator[str]:
    notes = [" ".join(rng.choice(_WORDS) for _ in range(150)) for _ in range(512)]
    index = 0
    while True:
        record = {
            "id": index,
            "customer": f"customer-{rng.randrange(10**6):06d}",
            "country": rng.choice(("NL", "DE", "FR", "US")),
            "amount": round(rng.random() * 1000, 2),
            "note": notes[index % len(notes)],
        }
        yield json.dumps(record) + "\n"
        index += 1


def _input(workdir: Path, size: int) -> Path:
    """A JSON Lines file of at least ``size`` bytes (~1 KB records), kept between runs."""
    path = workdir / f"b3-in-{size}" / "events.jsonl"
    if path.exists():
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(".events.jsonl.tmp")
    written = 0
    with open(temporary, "w", encoding="utf-8") as handle:
        lines: list[str] = []
        for line in _records(random.Random(3)):
            lines.append(line)
            written += len(line)
            if len(lines) == 4096 or written >= size:
                handle.write("".join(lines))
                lines.clear()
                if written >= size:
                    break
    os.replace(temporary, path)
    return path


# -- the two sides -----------------------------------------------------------------------------
def _loop(path: Path) -> Callable[[Path], None]:
    """The baseline: the same function in this process, its records written as the child does."""
    from airflow_byo.runtime.contract import InputFile, write_records

    namespace: dict[str, Any] = {}
    exec(STREAMING, namespace)  # the benchmark's own code: the function the flow runs
    process = namespace["process"]

    def run(out: Path) -> None:
        file = InputFile(path=str(path), url=str(path), name=path.name, relative_path=path.name, size=0)
        temporary = out / f".tmp-{path.stem}"
        with open(temporary, "w", encoding="utf-8", newline="") as handle:
            write_records(process(file, None), handle, "jsonl")
        os.replace(temporary, out / f"{path.stem}.jsonl")

    return run


def _operator(source: str, destination: str) -> dict[str, Any]:
    """One ``ByoFlowOperator`` run with the ledger (a fresh flow id: the file is new)."""
    from bench.operator_run import execute_flow

    config = {"job_config": JOB_CONFIG}
    return execute_flow(
        "B3", 1, source=source, destination=destination, processor=STREAMING, runtime_config=config
    )


def _flow(path: Path) -> Callable[[Path], None]:
    def run(out: Path) -> None:
        _operator(str(path.parent), str(out))

    return run


# -- memory, from /proc ------------------------------------------------------------------------
def _descendants(root: int) -> list[int]:
    parents: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", encoding="ascii", errors="replace") as handle:
                fields = handle.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        parents.setdefault(int(fields[1]), []).append(int(entry))
    found, todo = [], [root]
    while todo:
        for child in parents.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def _is_child(pid: int) -> bool:
    """The child's interpreter (not the bubblewrap processes around it, whose arguments hold its own)."""
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as handle:
            argv = handle.read().split(b"\0")
    except OSError:
        return False
    return not argv[0].endswith(b"bwrap") and any(_CHILD_MARK.encode() in arg for arg in argv)


def _task_in_fresh_process(source: Path, destination: Path) -> tuple[float, float]:
    """
    Run the task in a fresh ``python -m bench.streaming``; return (task, child) peak RSS in MB.
    The task process reports its own ``VmHWM`` as it ends; the child's is sampled from here.
    """
    process = subprocess.Popen(
        [sys.executable, "-m", "bench.streaming", str(source), str(destination)],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        env=os.environ | {"PYTHONPATH": str(ROOT)},
    )
    child_peak = 0
    done = threading.Event()

    def sample() -> None:
        nonlocal child_peak
        while not done.wait(0.05):
            for pid in _descendants(process.pid):
                if _is_child(pid):
                    child_peak = max(child_peak, status_kb(pid))

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    output, _ = process.communicate()
    done.set()
    sampler.join()
    if process.returncode != 0:
        raise RuntimeError(f"B3: the task process failed with exit code {process.returncode}")
    lines = [line for line in output.decode().splitlines() if line.startswith(_PEAK_MARK)]
    report = json.loads(lines[-1].removeprefix(_PEAK_MARK))
    if not child_peak:
        raise RuntimeError("B3: the child was never seen among the task process's descendants")
    return report["vmhwm_kb"] / 1024, child_peak / 1024


def _memory(workdir: Path, big: Path, tiny: Path) -> tuple[tuple[float, float], tuple[float, float]]:
    import shutil
    import tempfile

    peaks = []
    for path in (tiny, big):
        out = Path(tempfile.mkdtemp(dir=workdir))
        try:
            peaks.append(_task_in_fresh_process(path.parent, out))
        finally:
            shutil.rmtree(out, ignore_errors=True)
    return peaks[0], peaks[1]


# -- the figures -------------------------------------------------------------------------------
def run(workdir: Path, *, smoke: bool, repeat: int) -> list[Row]:
    size = 20 * 1024 * 1024 if smoke else 2 * 1024**3
    big = _input(workdir, size)
    tiny = _input(workdir, 4 * 1024)
    label = f"{size // 1024**3} GiB" if size >= 1024**3 else f"{size // 1024**2} MiB"
    # Untimed: the first run of a process pays imports and Airflow's set-up, which no repetition should.
    medians(1, workdir, flow=_flow(tiny))
    times = medians(repeat, workdir, loop=_loop(big), flow=_flow(big))
    megabytes = big.stat().st_size / 1e6
    (tiny_task, tiny_child), (big_task, big_child) = _memory(workdir, big, tiny)
    return [
        (
            f"B3 one {label} JSON Lines file, streaming function: operator + ledger vs the function "
            "in a plain loop (MB/s)",
            megabytes / times["flow"],
            megabytes / times["loop"],
            ">= 0.9x",
        ),
        (
            f"B3 child peak RSS (VmHWM) on the {label} file vs a 4 KiB file (MB)",
            big_child,
            tiny_child,
            "<= 200 MB",
        ),
        (
            f"B3 task process peak RSS (VmHWM) on the {label} file vs a 4 KiB file (MB)",
            big_task,
            tiny_task,
            "<= 4 KiB file + 50 MB",
        ),
    ]


def _main(source: str, destination: str) -> int:
    """One task in this fresh process (for its ``VmHWM``); prints its peak as a JSON line."""
    import logging

    logging.basicConfig(level=logging.WARNING)
    _operator(source, destination)
    print(_PEAK_MARK + json.dumps({"vmhwm_kb": status_kb("self")}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(_main(*sys.argv[1:3]))
