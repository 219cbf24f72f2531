"""
The sandbox as an attacker who reads our code meets it (issue 21): a hostile function per attack,
in a real ByoFlowOperator task run by a worker process (tests/runner/sandbox/run_operator.py), once
as root (as CI and many images run Airflow: the child then has a uid of its own) and once as a
throwaway ordinary user (a production worker). Every test checks the same outcome: the attempt
fails or is contained, no canary secret of the worker -- a connection password in its
environment, the Fernet key in its airflow.cfg, a key in its kernel keyring, a neighbour's file in
the landing folder -- appears in the XCom summary, the task log, the outputs, the notifications
or an S3 object; nothing the child made is published with special mode bits or outside the
destination; and the task's other files are processed.
"""

from __future__ import annotations

import json
import os
import pwd
import re
import shutil
import stat
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from airflow_byo.runner import sandbox_mode
from airflow_byo.runner.sandbox_identity import DEFAULT_UID_RANGE, parse_uid_range
from tests.conftest import remove_user, throwaway_user

pytestmark = pytest.mark.skipif(
    not sandbox_mode.bubblewrap_status()[0],
    reason=f"bubblewrap cannot work here: {sandbox_mode.bubblewrap_status()[1]}",
)

DRIVER = Path(__file__).parent / "sandbox" / "run_operator.py"
ROOT = Path(__file__).resolve().parents[2]
TOKEN = uuid.uuid4().hex[:10]
CONN_SECRET = f"CONN-canary-{TOKEN}"
FERNET = f"FERNET-canary-{TOKEN}"
KEYRING = f"KEYRING-canary-{TOKEN}"
NEIGHBOUR = f"NEIGHBOUR-canary-{TOKEN}"
CANARIES = (CONN_SECRET, FERNET, KEYRING, NEIGHBOUR)
HONEST = "honest output"

#: Helpers every hostile function below starts with (stdlib only, as in the flow's environment).
PRELUDE = """
import ctypes, errno, json, os, signal, struct, subprocess, sys, threading, time
LIBC = ctypes.CDLL(None, use_errno=True)

def attempt(action):
    try:
        return {"ok": True, "value": repr(action())[:300]}
    except BaseException as exc:
        return {"ok": False, "error": f"{type(exc).__name__}: {exc}"}

def syscall(number, *args):
    result = LIBC.syscall(number, *args)
    return result if result >= 0 else -ctypes.get_errno()

def read(path):
    with open(path, "rb") as handle:
        return handle.read(4096).decode("utf-8", "replace")

def write(path, text="1"):
    with open(path, "w") as handle:
        return handle.write(text)
"""


def hostile(body: str) -> str:
    return PRELUDE + textwrap.dedent(body)


@dataclass
class Run:
    """What a task produced, as anyone could see it."""

    result: dict[str, Any]
    log: list[str]
    error: str | None
    out: Path
    notifications: str
    rss_kb_before: int
    rss_kb_peak: int
    s3_objects: dict[str, bytes] = field(default_factory=dict)

    @property
    def text(self) -> str:
        return "\n".join(self.log)

    def file(self, name: str) -> dict[str, Any]:
        return next(f for f in self.result["files"] if f["url"].endswith("/" + name))

    def published(self) -> dict[str, str]:
        if not self.out.exists():
            return {}
        return {
            str(p.relative_to(self.out)): p.read_text(errors="replace")
            for p in self.out.rglob("*")
            if p.is_file()
        }

    def everything(self) -> str:
        objects = "".join(data.decode("utf-8", "replace") for data in self.s3_objects.values())
        return (
            json.dumps(self.result, default=str)
            + self.text
            + str(self.error)
            + self.notifications
            + objects
            + "".join(self.published().values())
        )

    def assert_no_secret(self) -> None:
        seen = self.everything()
        for canary in CANARIES:
            assert canary not in seen, f"{canary} leaked"
        for path in self.out.rglob("*") if self.out.exists() else []:
            info = path.lstat()
            assert not stat.S_ISLNK(info.st_mode), f"a symlink was published: {path}"
            if stat.S_ISREG(info.st_mode):
                assert stat.S_IMODE(info.st_mode) == 0o644, f"{path} published with mode {oct(info.st_mode)}"


class Worker:
    """Runs tasks as root or as an ordinary user, next to a fake AIRFLOW_HOME full of secrets."""

    def __init__(self, kind: str, base: Path, user: pwd.struct_passwd | None) -> None:
        self.kind, self.base, self.user = kind, base, user
        self.home = base / "airflow_home"
        (self.home / "dags").mkdir(parents=True)
        (self.home / "airflow.cfg").write_text(f"[core]\nfernet_key = {FERNET}\nload_examples = False\n")
        self.python = os.path.realpath(sys.executable) if kind == "root" else "/usr/bin/python3"
        site = next(p for p in sys.path if p.endswith("site-packages"))
        self.sys_path = [str(ROOT), site]
        if user is not None:
            for path in [base, *base.rglob("*")]:
                os.chown(path, user.pw_uid, user.pw_gid, follow_symlinks=False)
            (self.home / "airflow.cfg").chmod(0o600)

    @property
    def uid(self) -> int:
        return self.user.pw_uid if self.user else 0

    def dir(self, name: str) -> Path:
        path = Path(tempfile.mkdtemp(prefix=f"{name}-", dir=self.base))
        if self.user is not None:
            os.chown(path, self.user.pw_uid, self.user.pw_gid)
        return path

    def files(self, directory: Path, files: dict[str, str]) -> Path:
        for name, text in files.items():
            path = directory / name
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text)
        if self.user is not None:
            for path in [directory, *directory.rglob("*")]:
                os.chown(path, self.user.pw_uid, self.user.pw_gid)
        return directory

    def start(
        self, plan: dict[str, Any], env: dict[str, str] | None = None
    ) -> tuple[subprocess.Popen[str], Path]:
        work = self.dir("run")
        out = work / "result.json"
        plan = {"sys_path": self.sys_path, "out": str(out), **plan}
        (work / "plan.json").write_text(json.dumps(plan))
        if self.user is not None:
            os.chown(work / "plan.json", self.user.pw_uid, self.user.pw_gid)
        environment = {
            key: value for key, value in os.environ.items() if not key.startswith(("AIRFLOW", "PYTEST"))
        }
        environment |= {
            "AIRFLOW_HOME": str(self.home),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__BYO__SANDBOX": "required",
            "AIRFLOW_CONN_CANARY_DB": f"postgres://airflow:{CONN_SECRET}@db.internal/airflow",
            "HOME": str(self.base),
            **(env or {}),
        }
        prefix = []
        if self.user is not None:
            prefix = ["setpriv", f"--reuid={self.uid}", f"--regid={self.user.pw_gid}", "--clear-groups", "--"]
        process = subprocess.Popen(
            [*prefix, self.python, "-I", str(DRIVER), str(work / "plan.json")],
            env=environment,
            cwd=work,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        return process, out

    def run(
        self,
        code: str,
        files: dict[str, str],
        job: dict[str, Any] | None = None,
        variables: dict[str, Any] | None = None,
        *,
        include: list[str] | None = None,
        destination: str | None = None,
        destination_conn_id: str | None = None,
        params: dict[str, Any] | None = None,
        plant_key: str | None = None,
        env: dict[str, str] | None = None,
        timeout: float = 300,
    ) -> Run:
        source = self.files(self.dir("in"), files)
        out = Path(destination) if destination and "://" not in destination else self.dir("out") / "dest"
        notes = self.dir("notes") / "notifications.jsonl"
        operator = {
            "source": str(source),
            "destination": destination or str(out),
            "processor": code,
            "python_interpreter": self.python,
            "track_files": False,
            "runtime_config": {
                "job_config": {"output_format": "text", "timeout_seconds": 60, "workers": 1, **(job or {})},
                **(variables or {}),
            },
            "notifications": [{"type": "file", "path": str(notes)}],
        }
        if include is not None:
            operator["include"] = include
        if destination_conn_id is not None:
            operator["destination_conn_id"] = destination_conn_id
        plan = {"operator": operator, "params": params or {}, "plant_key": plant_key}
        process, result_file = self.start(plan, env)
        output, _ = process.communicate(timeout=timeout)
        assert process.returncode == 0, output
        data = json.loads(result_file.read_text())
        return Run(
            data["result"] or {},
            data["log"],
            data["error"],
            out,
            notes.read_text() if notes.exists() else "",
            data["rss_kb_before"],
            data["rss_kb_peak"],
        )


WORKERS = ["root", "user"] if os.geteuid() == 0 else ["user"]


@pytest.fixture(scope="module", params=WORKERS)
def worker(request: pytest.FixtureRequest) -> Any:
    if request.param == "user" and not os.path.exists("/usr/bin/python3"):
        pytest.skip("an ordinary user needs an interpreter it can reach: /usr/bin/python3 is missing")
    base = Path(tempfile.mkdtemp(prefix="byo-attacks-"))
    base.chmod(0o755)
    user = throwaway_user("byoatk", base) if request.param == "user" and os.geteuid() == 0 else None
    yield Worker(request.param, base, user)
    shutil.rmtree(base, ignore_errors=True)
    if user is not None:
        remove_user(user)


def _host_processes_with(marker: str) -> dict[int, int]:
    """pid -> real uid of every host process whose command line holds ``marker``."""
    found = {}
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            if marker.encode() in Path(f"/proc/{pid}/cmdline").read_bytes():
                status = Path(f"/proc/{pid}/status").read_text()
                found[int(pid)] = int(re.search(r"^Uid:\s+(\d+)", status, re.M)[1])  # type: ignore[index]
        except (OSError, TypeError):
            continue
    return found


# -- 1. host root ---------------------------------------------------------------------------------

HOST_ROOT = hostile("""
    def process(file, ctx):
        marker = ctx.variables["marker"]
        helper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(20)", marker])
        got = {
            "core_pattern": attempt(lambda: write("/proc/sys/kernel/core_pattern", "|/tmp/pwn")),
            "core_uses_pid": attempt(lambda: write("/proc/sys/kernel/core_uses_pid", "1")),
            "sysrq": attempt(lambda: write("/proc/sysrq-trigger", "h")),
            "drop_caches": attempt(lambda: write("/proc/sys/vm/drop_caches", "3")),
            "kcore": attempt(lambda: read("/proc/kcore")),
            "proc_keys": attempt(lambda: read("/proc/keys")),
            "timer_list": attempt(lambda: read("/proc/timer_list")),
            "setuid0": attempt(lambda: os.setuid(0)),
        }
        time.sleep(3)  # the test looks at the helper's host uid meanwhile
        helper.kill()
        return json.dumps(got)
""")


def test_the_child_is_never_host_root(worker: Worker) -> None:
    marker = f"byo-host-root-{uuid.uuid4().hex}"
    before = Path("/proc/sys/kernel/core_pattern").read_text()
    seen: dict[int, int] = {}
    run_holder: dict[str, Run] = {}

    def observe() -> None:
        deadline = time.monotonic() + 120
        while not seen and time.monotonic() < deadline and "run" not in run_holder:
            seen.update(_host_processes_with(marker))
            time.sleep(0.05)

    watcher = threading.Thread(target=observe)
    watcher.start()
    try:
        run_holder["run"] = worker.run(HOST_ROOT, {"a.txt": "x"}, variables={"marker": marker})
    finally:
        watcher.join()
    run = run_holder["run"]
    run.assert_no_secret()
    assert seen, "the function's helper process was never seen on the host"
    assert 0 not in seen.values(), f"the child ran as host uid 0: {seen}"
    if worker.kind == "root":
        low, high = parse_uid_range(DEFAULT_UID_RANGE)
        assert all(low <= uid <= high for uid in seen.values()), seen  # a sandbox uid of its own
    else:
        assert set(seen.values()) == {worker.uid}  # an ordinary worker's children are itself
    got = json.loads(run.published()["a.txt"])
    for attack, outcome in got.items():
        assert outcome["ok"] is False or attack in ("proc_keys", "timer_list", "kcore"), (attack, outcome)
    for masked in ("proc_keys", "timer_list", "kcore"):  # absent, or an empty file
        assert got[masked]["ok"] is False or got[masked]["value"] == "''", (masked, got[masked])
    assert Path("/proc/sys/kernel/core_pattern").read_text() == before


# -- 2. secrets through a race (TOCTOU) -----------------------------------------------------------

#: A racer thread in the child: it watches the folder its outputs are staged in and, whenever the
#: worker touches a staged file after the function returned, swaps paths for symlinks to the
#: worker's secrets, many times. What it saw goes to stderr (the task log) and to insights.
RACER = hostile("""
    import select

    # IN_MODIFY, IN_CLOSE_WRITE, IN_CLOSE_NOWRITE, IN_OPEN, IN_MOVED_FROM, IN_CREATE, IN_DELETE(_SELF)
    WATCH = 0x2 | 0x8 | 0x10 | 0x20 | 0x40 | 0x100 | 0x200 | 0x400
    STATE = {"events": 0, "swaps": 0, "returned": False, "thread": None, "names": set()}

    def swap(directory, targets):
        names = set(STATE["names"])
        try:
            names |= set(os.listdir(directory))
        except OSError:
            pass
        for name in names:
            path = os.path.join(directory, name)
            try:
                os.unlink(path)
            except OSError:
                pass
            try:
                os.symlink(targets[STATE["swaps"] % len(targets)], path)
                STATE["swaps"] += 1
            except OSError:
                pass

    def racer(directory, targets):
        fd = LIBC.inotify_init1(os.O_NONBLOCK)
        LIBC.inotify_add_watch(fd, directory.encode(), WATCH)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            ready, _, _ = select.select([fd], [], [], 0.05)
            if not ready:
                continue
            try:
                data = os.read(fd, 65536)
            except BlockingIOError:
                continue
            offset, hit = 0, False
            while offset < len(data):
                _wd, mask, _cookie, size = struct.unpack_from("iIII", data, offset)
                name = data[offset + 16 : offset + 16 + size].rstrip(b"\\0").decode()
                offset += 16 + size
                # After the function returned, or the worker moving an output out (IN_MOVED_FROM:
                # the child never renames): with a file queued ahead, the next file's call may
                # already have reset "returned" when a busy machine runs this thread late.
                if (STATE["returned"] or mask & 0x40) and not name.endswith(".swap"):
                    STATE["events"] += 1
                    hit = True
                    os.write(2, f"RACE-EVENT {mask:#x} {name}\\n".encode())
                if name and mask & 0x100:
                    STATE["names"].add(name)
            if hit:
                end = time.monotonic() + 0.2
                while time.monotonic() < end:
                    swap(directory, targets)
                os.write(2, f"RACE-SWAPS {STATE['swaps']}\\n".encode())

    def process(file, ctx):
        STATE["returned"] = False
        ctx.insight("race_events_" + file.name, STATE["events"])
        ctx.insight("race_swaps_" + file.name, STATE["swaps"])
        directory = os.path.dirname(ctx._output_prefix)
        if STATE["thread"] is None:
            targets = [ctx.variables["cfg"], "/proc/self/environ"]
            STATE["thread"] = threading.Thread(target=racer, args=(directory, targets), daemon=True)
            STATE["thread"].start()
            time.sleep(0.1)
        ctx.write(file.stem + ".txt", "honest output " + file.name)
        ctx.write(file.stem + ".second.txt", "honest output too")
        time.sleep(0.1)  # the racer reads (and ignores) the events of the function's own writes
        STATE["returned"] = True
        return None
""")

RACE_FILES = {f"f{i:02d}.csv": f"a,b\\n{i},{i}\\n" for i in range(10)}


def test_a_racing_child_cannot_swap_its_outputs_for_secrets(worker: Worker) -> None:
    run = worker.run(RACER, RACE_FILES, variables={"cfg": str(worker.home / "airflow.cfg")})
    run.assert_no_secret()
    events = sum(v for k, v in run.result["insights"].items() if k.startswith("race_events_"))
    assert events or "RACE-EVENT" in run.text, "the racer never saw the worker touch its outputs"
    for name, text in run.published().items():
        assert text.startswith("honest output"), (name, text[:200])


def test_a_racing_child_cannot_swap_its_outputs_in_test_mode(worker: Worker) -> None:
    source = worker.dir("sample")
    worker.files(source, {"f00.csv": "a,b\\n1,2\\n"})
    run = worker.run(
        RACER,
        {"other.csv": "x"},
        variables={"cfg": str(worker.home / "airflow.cfg")},
        params={"test_file": str(source / "f00.csv")},
    )
    run.assert_no_secret()  # the previews and the test-run summary are in the task log
    # Refused or passed, never leaked: the racer unlinks an output before putting its symlink
    # there, so the worker may find the name a symlink, not a regular file, or not there at all.
    refusals = ("symlink", "not a regular file", "was reported but not written")
    assert run.error is None or any(refusal in run.error for refusal in refusals), run.error
    assert FERNET not in run.text
    assert CONN_SECRET not in run.text
    if run.result:
        assert FERNET not in json.dumps(run.result.get("preview")), run.result.get("preview")
    assert "RACE-EVENT" in run.text, "the racer never saw the worker touch its outputs"


# -- 4. mode bits -------------------------------------------------------------------------------------

MODE_BITS = hostile("""
    def process(file, ctx):
        with ctx.output("suid.bin", "wb") as handle:
            handle.write(b"#!/bin/sh\\nid\\n")
        spec = ctx._outputs["suid.bin"]
        os.chmod(spec.local_path, 0o6777)
        ctx.write("sticky.txt", "honest output")
        os.chmod(ctx._outputs["sticky.txt"].local_path, 0o1777)
        return None
""")


def test_published_files_never_keep_the_childs_mode_bits(worker: Worker) -> None:
    run = worker.run(MODE_BITS, {"a.txt": "x"})
    run.assert_no_secret()  # every published regular file is 0644
    assert run.file("a.txt")["status"] == "processed", run.file("a.txt")
    for name in ("suid.bin", "sticky.txt"):
        mode = (run.out / name).lstat().st_mode
        assert stat.S_IMODE(mode) == 0o644, (name, oct(mode))
        assert not mode & (stat.S_ISUID | stat.S_ISGID), (name, oct(mode))


# -- 5. kernel keyring ------------------------------------------------------------------------------

KEYRING_READ = hostile("""
    def keyctl_read(key):
        buffer = ctypes.create_string_buffer(4096)
        size = syscall(250, 11, ctypes.c_long(key), buffer, 4096)  # KEYCTL_READ
        return buffer.raw[: max(size, 0)].decode("utf-8", "replace") if size >= 0 else size

    def process(file, ctx):
        key = int(ctx.variables["key_id"])
        got = {
            "read_key": keyctl_read(key),
            "read_session": keyctl_read(-3),  # KEY_SPEC_SESSION_KEYRING: its key ids
            "read_user_session": keyctl_read(-5),
            "read_user": keyctl_read(-4),
            "search": syscall(250, 10, ctypes.c_long(-3), b"user", b"byo-canary", 0),  # KEYCTL_SEARCH
            "proc_keys": attempt(lambda: read("/proc/keys")),
        }
        return json.dumps(got)
""")


def test_the_workers_keyring_is_out_of_reach(worker: Worker) -> None:
    run = worker.run(KEYRING_READ, {"a.txt": "x"}, plant_key=KEYRING)
    run.assert_no_secret()
    got = json.loads(run.published()["a.txt"])
    assert isinstance(got["read_key"], int), got
    assert got["read_key"] < 0, got
    assert not isinstance(got["search"], int) or got["search"] < 0, got


# -- 6. ptrace, then a crash ------------------------------------------------------------------------

PTRACE = hostile("""
    def process(file, ctx):
        got = {}
        for pid in (1, os.getppid()):
            got[f"attach_{pid}"] = syscall(101, 16, pid, 0, 0)  # PTRACE_ATTACH
            got[f"seize_{pid}"] = syscall(101, 0x4206, pid, 0, 0)  # PTRACE_SEIZE
        got["traceme"] = syscall(101, 0, 0, 0, 0)  # PTRACE_TRACEME
        if file.name.startswith("a"):
            os.kill(os.getpid(), signal.SIGSEGV)
            time.sleep(5)
        return json.dumps(got)
""")


def test_ptrace_is_refused_and_a_crash_is_reported_as_one(worker: Worker) -> None:
    run = worker.run(PTRACE, {"a_crash.txt": "x", "b_ok.txt": "y"})
    run.assert_no_secret()
    crashed = run.file("a_crash.txt")
    assert crashed["status"] != "processed", crashed
    assert "timeout" not in crashed["error"].lower(), crashed
    assert "died" in crashed["error"], crashed
    assert "SIGSEGV" in crashed["error"], crashed
    assert run.file("b_ok.txt")["status"] == "processed", run.result["files"]
    got = json.loads(run.published()["b_ok.txt"])
    assert all(value < 0 for value in got.values()), got


# -- 7. limits that hold ------------------------------------------------------------------------------

CPU_HOG = hostile("""
    import resource

    def spin():
        for sig in (signal.SIGPROF, signal.SIGXCPU, signal.SIGVTALRM):
            signal.signal(sig, signal.SIG_IGN)
        for timer in (signal.ITIMER_PROF, signal.ITIMER_VIRTUAL, signal.ITIMER_REAL):
            signal.setitimer(timer, 0)
        soft, hard = resource.getrlimit(resource.RLIMIT_CPU)
        try:
            resource.setrlimit(resource.RLIMIT_CPU, (hard, hard))
        except (ValueError, OSError):
            pass
        while True:
            try:
                while True:
                    pass
            except BaseException:
                continue

    def process(file, ctx):
        if not file.name.startswith("a"):
            return "honest output"
        if ctx.variables.get("fork"):
            if os.fork() == 0:
                spin()
        spin()
""")


@pytest.mark.parametrize("fork", [False, True], ids=["self", "forked"])
def test_cpu_seconds_holds_against_a_function_that_fights_it(worker: Worker, fork: bool) -> None:
    run = worker.run(
        CPU_HOG,
        {"a_hog.txt": "x", "b_ok.txt": "y"},
        job={"cpu_seconds": 1, "timeout_seconds": 30},
        variables={"fork": fork},
    )
    run.assert_no_secret()
    hog = run.file("a_hog.txt")
    # Stopped by its CPU budget, not by timeout_seconds (the whole run's wall time is no measure
    # of that: on a loaded machine the operator's start-up alone took 30 s once)
    assert "CpuTimeExceeded" in hog["error"], hog
    assert "cpu_seconds" in hog["error"], hog
    assert hog["seconds"] < 10, hog
    assert run.file("b_ok.txt")["status"] == "processed", run.result["files"]


FORK_BOMB = hostile("""
    def process(file, ctx):
        children, errors = [], set()
        for _ in range(150):
            try:
                pid = os.fork()
            except OSError as exc:
                errors.add(exc.strerror)
                continue
            if pid == 0:
                time.sleep(30)
                os._exit(0)
            children.append(pid)
        for pid in children:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
        return json.dumps({"started": len(children), "errors": sorted(errors)})
""")


def test_max_processes_holds_for_every_worker(worker: Worker) -> None:
    run = worker.run(FORK_BOMB, {"a.txt": "x"}, job={"max_processes": 32})
    run.assert_no_secret()
    got = json.loads(run.published()["a.txt"])
    assert got["started"] < 40, got


# -- 8. one file fails alone, and the worker stays small ----------------------------------------

ONE_FILE = hostile("""
    import gc

    def process(file, ctx):
        if not file.name.startswith("a"):
            return "honest output"
        attack = ctx.variables["attack"]
        if attack == "nesting":
            channel = next(o for o in gc.get_objects() if type(o).__name__ == "_Channel")
            with channel._lock:
                channel._stream.write("[" * 100_000 + "\\n")
                channel._stream.flush()
            time.sleep(1)
            return "after the nesting"
        if attack == "directory":
            drop = os.path.dirname(ctx._output_prefix)
            os.makedirs(os.path.join(drop, "a-directory", "inside"))
            write(os.path.join(drop, "a-directory", "inside", "f"), "x")
            os.mkfifo(os.path.join(drop, "a-fifo"))
            os.symlink("/etc/passwd", os.path.join(drop, "a-link"))
            os.mkdir(ctx._output_prefix + "-99999")
            return "with a directory"
        if attack == "stderr":
            chunk = b"E" * (1 << 20)
            for _ in range(256):
                os.write(2, chunk)
            os.write(2, b"\\n")
            return "after the long line"
        if attack == "notify":
            blob = "N" * (5 << 20)
            for i in range(30):
                ctx.notify(f"big {i}", blob=blob)
            return "after the notifications"
""")


@pytest.mark.parametrize("attack", ["nesting", "directory", "stderr", "notify"])
def test_one_hostile_file_fails_alone_and_the_worker_stays_small(worker: Worker, attack: str) -> None:
    run = worker.run(ONE_FILE, {"a_hostile.txt": "x", "b_ok.txt": "y"}, variables={"attack": attack})
    run.assert_no_secret()
    assert run.file("b_ok.txt")["status"] == "processed", run.result.get("files") or run.error
    assert run.published().get("b_ok.txt") == HONEST
    grown_mb = (run.rss_kb_peak - run.rss_kb_before) / 1024
    assert grown_mb < 100, f"the worker grew by {grown_mb:.0f} MB"
    if attack == "nesting":
        assert run.file("a_hostile.txt")["status"] != "processed", run.file("a_hostile.txt")
    if attack == "directory":
        assert not any("a-directory" in name or "fifo" in name for name in run.published())
        assert all(not p.is_dir() or p == run.out for p in run.out.rglob("*")), list(run.out.rglob("*"))
    if attack == "notify":
        assert len(run.notifications) < 4 << 20, len(run.notifications)
    assert len(run.text) < 8 << 20, len(run.text)


# -- 9. neighbours' files ---------------------------------------------------------------------------

NEIGHBOURS = hostile("""
    import glob

    def slurp(path):
        try:
            return read(path)
        except OSError as exc:
            return f"{type(exc).__name__}"

    def process(file, ctx):
        here = os.path.dirname(file.path)
        seen = {}
        for directory in (here, os.path.dirname(here), os.path.dirname(file.url), "/tmp", os.getcwd()):
            seen["ls " + directory] = attempt(lambda: os.listdir(directory))
        for pattern in (here + "/**", os.path.dirname(file.url) + "/**", "/tmp/**"):
            for path in glob.glob(pattern, recursive=True)[:200]:
                if os.path.isfile(path) and os.path.realpath(path) != os.path.realpath(file.path):
                    seen[path] = slurp(path)
        for name in ("secret.txt", "sub/x.txt"):
            for base in (here, os.path.dirname(file.url)):
                seen[base + "/" + name] = slurp(os.path.join(base, name))
        return json.dumps(seen)
""")


def test_the_child_sees_only_its_own_files(worker: Worker) -> None:
    # ``*.csv`` also matches ``sub/y.csv`` (globs match the relative path and the bare name), so
    # that file is the task's own; the neighbours are the files the filter leaves out.
    files = {
        "a.csv": "a,b\\n1,2\\n",
        "secret.txt": NEIGHBOUR,
        "sub/x.txt": NEIGHBOUR,
        "sub/y.csv": "c,d\\n3,4\\n",
    }
    run = worker.run(NEIGHBOURS, files, include=["*.csv"])
    processed = sorted(f["url"].rsplit("/", 1)[1] for f in run.result["files"])
    assert processed == ["a.csv", "y.csv"], processed
    run.assert_no_secret()
    for text in run.published().values():
        seen = json.loads(text)
        listings = json.dumps({key: value for key, value in seen.items() if key.startswith("ls ")})
        assert "secret.txt" not in listings, listings
        assert "x.txt" not in listings, listings
        assert all("FileNotFoundError" in value for key, value in seen.items() if "x.txt" in key), seen


# -- 10. network on, but not the host ---------------------------------------------------------------

NETWORK = hostile("""
    import socket

    def tcp(port):
        with socket.create_connection(("127.0.0.1", port), timeout=3) as conn:
            return conn.recv(64).decode()

    def abstract(name):
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as conn:
            conn.settimeout(3)
            conn.connect("\\0" + name)
            return conn.recv(64).decode()

    def process(file, ctx):
        return json.dumps({
            "tcp": attempt(lambda: tcp(ctx.variables["port"])),
            "abstract": attempt(lambda: abstract(ctx.variables["abstract"])),
        })
""")


@pytest.fixture
def host_services() -> Any:
    import socket

    greeting = f"hello-{uuid.uuid4().hex[:8]}"
    tcp = socket.socket()
    tcp.bind(("127.0.0.1", 0))
    tcp.listen(8)
    name = f"byo-test-{uuid.uuid4().hex}"
    unix = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    unix.bind("\0" + name)
    unix.listen(8)
    stop = threading.Event()

    def serve(server: socket.socket) -> None:
        server.settimeout(0.2)
        while not stop.is_set():
            try:
                conn, _ = server.accept()
            except OSError:
                continue
            with conn:
                conn.sendall(greeting.encode())

    threads = [threading.Thread(target=serve, args=(s,), daemon=True) for s in (tcp, unix)]
    for thread in threads:
        thread.start()
    yield {"port": tcp.getsockname()[1], "abstract": name, "greeting": greeting}
    stop.set()
    for thread in threads:
        thread.join()
    tcp.close()
    unix.close()


def test_network_on_does_not_reach_the_hosts_loopback(worker: Worker, host_services: dict[str, Any]) -> None:
    variables = {"port": host_services["port"], "abstract": host_services["abstract"]}
    run = worker.run(NETWORK, {"a.txt": "x"}, job={"network": True}, variables=variables)
    run.assert_no_secret()
    got = json.loads(run.published()["a.txt"])
    assert got["tcp"]["ok"] is False, got
    assert got["abstract"]["ok"] is False, got

    shared = worker.run(
        NETWORK, {"a.txt": "x"}, job={"network": True, "host_loopback": True}, variables=variables
    )
    got = json.loads(shared.published()["a.txt"])
    assert got["tcp"]["ok"] is True, got
    assert host_services["greeting"] in got["tcp"]["value"], got


# -- 3. planted code through configuration (a representative) -------------------------------------


def test_a_destination_in_the_dags_folder_is_refused(worker: Worker) -> None:
    destination = worker.home / "dags" / "planted"
    run = worker.run(
        "def process(file, ctx):\n    return 'x'\n", {"a.txt": "x"}, destination=str(destination)
    )
    assert run.error is not None, run.result
    assert "destination" in run.error, run.error
    assert "DAGs folder" in run.error, run.error
    assert not destination.exists() or not any(destination.rglob("*"))
    run.assert_no_secret()
