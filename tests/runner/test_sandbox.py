"""
The bubblewrap sandbox, tried as a hostile processor would: real bwrap, real child processes.

Every escape runs twice: with the worker as root (as CI runs: the child then gets a uid of its
own) and as a throwaway ordinary user (``setpriv`` drops to it just before the launcher, which is
then unprivileged and relies on user namespaces, like a production worker running as ``airflow``).
"""

from __future__ import annotations

import json
import marshal
import os
import shutil
import signal
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pytest

from airflow_byo.exceptions import ByoConfigError
from airflow_byo.runner import sandbox, sandbox_command, sandbox_dns, sandbox_mode
from airflow_byo.runner.sandbox import SandboxSpec, prepare_sandbox, worker_identity
from airflow_byo.runner.sandbox_network import pasta_status
from tests.conftest import remove_user, throwaway_user

HOSTILE = Path(__file__).parent / "sandbox" / "hostile.py"
CANARY = "postgres://u:s3cr3t@h/db"
FERNET = "fernet-canary-0123456789abcdef"
CHILD_ENV = {"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8"}

pytestmark = pytest.mark.skipif(
    not sandbox_mode.bubblewrap_status()[0],
    reason=f"bubblewrap cannot work here: {sandbox_mode.bubblewrap_status()[1]}",
)


@dataclass
class Worker:
    """Who runs bwrap, with what interpreter, next to which fake worker files."""

    kind: str
    uid: int
    gid: int
    prefix: list[str]  # prepended to the sandbox command: drops to the user for "user"
    python: str  # the flow's venv interpreter (inside the fake AIRFLOW_HOME)
    airflow_home: Path
    home: Path
    dags: Path
    base: Path
    launcher_python: str | None = None  # an interpreter the worker's user can run

    def dir(self, name: str) -> Path:
        """A fresh directory owned by the worker (a writable one is handed to the child's uid)."""
        path = Path(tempfile.mkdtemp(prefix=f"{name}-", dir=self.base))
        os.chown(path, self.uid, self.gid)
        return path

    def launch(self, argv: list[str], spec: SandboxSpec) -> Any:
        """The prepared start and the child's host uid (a root worker leases one per start)."""
        identity = worker_identity() if self.kind == "root" else None
        launch = prepare_sandbox(argv, spec, identity=identity, launcher_python=self.launcher_python)
        self.child_uid = identity.uid if identity else self.uid
        self._identities.append(identity)
        return launch

    def spec(self, **overrides: object) -> SandboxSpec:
        values: dict[str, object] = {
            "interpreter": self.python,
            "read_only": (str(HOSTILE.parent), str(self.dags / "flow_lib")),
            "env": CHILD_ENV,
        }
        return SandboxSpec(**(values | overrides))  # type: ignore[arg-type]

    def start(self, attack: str, arg: dict, spec: SandboxSpec) -> subprocess.Popen[str]:
        argv = [self.python, "-I", str(HOSTILE), attack, json.dumps(arg)]
        # env is inherited on purpose (canary included): the sandbox must not depend on the caller
        # filtering it.
        launch = self.launch(argv, spec)
        self._launches.append(launch)  # closed by release(): the launcher still needs its folder
        return launch.start(
            prefix=self.prefix,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,
        )

    def release(self) -> None:
        for launch in self._launches:
            launch.close()
        for identity in self._identities:
            if identity is not None:
                identity.release()
        self._launches.clear()
        self._identities.clear()

    def __post_init__(self) -> None:
        self._identities: list[Any] = []
        self._launches: list[Any] = []
        self.child_uid = self.uid

    def run(self, attack: str, arg: dict, spec: SandboxSpec | None = None, timeout: float = 60) -> dict:
        process = self.start(attack, arg, spec or self.spec())
        out, err = process.communicate(timeout=timeout)
        self.release()
        assert CANARY not in out + err
        assert FERNET not in out + err
        assert process.returncode == 0, err
        return json.loads(out.strip().splitlines()[-1])


def _make_venv(base_python: str, airflow_home: Path) -> str:
    """A venv in the fake AIRFLOW_HOME's cache, as the provider builds them, with one module."""
    venv = airflow_home / "byo" / "venvs" / "venv-sandboxtest"
    subprocess.run([base_python, "-m", "venv", "--without-pip", str(venv)], check=True)
    site = next(venv.glob("lib/python3*/site-packages"))
    (site / "byo_venv_probe.py").write_text("VALUE = 'from the venv'\n")
    return str(venv / "bin" / "python")


def _fake_worker_files(base: Path) -> tuple[Path, Path, Path]:
    airflow_home = base / "airflow_home"
    airflow_home.mkdir()
    (airflow_home / "airflow.cfg").write_text(f"[core]\nfernet_key = {FERNET}\n")
    with sqlite3.connect(airflow_home / "airflow.db") as db:
        db.execute("create table connection (uri text)")
        db.execute("insert into connection values (?)", (CANARY,))
    home = base / "home"
    home.mkdir()
    (home / ".netrc").write_text(f"machine h login u password {CANARY}\n")
    dags = base / "dags"
    (dags / "flow_lib").mkdir(parents=True)
    (dags / "flow_lib" / "byo_dags_helper.py").write_text("VALUE = 'from the DAGs folder'\n")
    (dags / "other_flow.py").write_text(f"PASSWORD = {CANARY!r}\n")
    return airflow_home, home, dags


WORKERS = ["root", "user"] if os.geteuid() == 0 else ["user"]


@pytest.fixture(scope="module", params=WORKERS)
def worker(request: pytest.FixtureRequest) -> object:
    # Not pytest's tmp_path: /tmp/pytest-of-root is 0700, and the user must reach its own files.
    base = Path(tempfile.mkdtemp(prefix="byo-sandbox-test-"))
    base.chmod(0o755)
    airflow_home, home, dags = _fake_worker_files(base)
    user = None
    if request.param == "root":
        # The project's own base interpreter (pyenv under /root): the prefix must be bound, not /root.
        python = _make_venv(os.path.realpath(sys.executable), airflow_home)
        uid, gid, prefix = 0, 0, []
    elif os.geteuid() == 0:
        system_python = shutil.which("python3.11", path="/usr/bin") or shutil.which(
            "python3", path="/usr/bin"
        )
        if system_python is None:
            pytest.skip("an ordinary user needs an interpreter it can reach: /usr/bin/python3 is missing")
        python = _make_venv(system_python, airflow_home)
        user = throwaway_user("byosbx", home)
        uid, gid = user.pw_uid, user.pw_gid
        prefix = ["setpriv", f"--reuid={uid}", f"--regid={gid}", "--clear-groups", "--"]
        launcher = system_python
        for item in [base, *base.rglob("*")]:
            os.chown(item, uid, gid, follow_symlinks=False)
        (home / ".netrc").chmod(0o600)
        (airflow_home / "airflow.cfg").chmod(0o600)
    else:  # the suite itself runs as an ordinary user
        python = _make_venv(os.path.realpath(sys.executable), airflow_home)
        uid, gid, prefix = os.getuid(), os.getgid(), []
    worker = Worker(request.param, uid, gid, prefix, python, airflow_home, home, dags, base)
    if request.param == "user" and os.geteuid() == 0:
        worker.launcher_python = launcher
    yield worker
    worker.release()
    shutil.rmtree(base, ignore_errors=True)
    if user is not None:
        remove_user(user)


@pytest.fixture(autouse=True)
def canary_in_worker_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """A connection password in the worker's environment, as Airflow puts it there."""
    monkeypatch.setenv("AIRFLOW_CONN_CANARY", CANARY)


def _host_pids_with(token: str) -> list[int]:
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            if token.encode() in Path(f"/proc/{pid}/cmdline").read_bytes():
                found.append(int(pid))
        except OSError:
            continue
    return found


def _wait_gone(token: str, seconds: float = 5) -> list[int]:
    deadline = time.monotonic() + seconds
    while (left := _host_pids_with(token)) and time.monotonic() < deadline:
        time.sleep(0.05)
    return left


# --- what the child can do ----------------------------------------------------------------------


def test_interpreter_venv_and_dags_module_work(worker: Worker) -> None:
    cwd = worker.dir("cwd")
    got = worker.run(
        "probe", {"sys_path": str(worker.dags / "flow_lib")}, worker.spec(writable=(str(cwd),), cwd=str(cwd))
    )
    assert (got["uid"], got["gid"]) == (sandbox_command.SANDBOX_UID, sandbox_command.SANDBOX_UID)
    assert got["hostname"] == "byo-sandbox"
    assert got["prefix"] == str(Path(worker.python).parent.parent)  # the venv, not the base
    assert (got["venv_module"], got["dags_module"]) == ("from the venv", "from the DAGs folder")
    assert got["cwd"] == str(cwd)
    assert got["env"] == CHILD_ENV | {"HOME": "/tmp", "TMPDIR": "/tmp", "PWD": str(cwd)}
    assert got["pids"] == [1, 2]  # bwrap's init and the child: no other process is visible


def test_control_the_same_attacks_succeed_without_the_sandbox(worker: Worker) -> None:
    """The hostile script does find the secrets when run plainly: the tests below can fail."""

    def plain(attack: str, arg: dict) -> str:
        argv = [*worker.prefix, worker.python, "-I", str(HOSTILE), attack, json.dumps(arg)]
        return subprocess.run(argv, capture_output=True, text=True, check=True).stdout

    assert CANARY in plain("secrets", {"worker_pid": os.getpid()})
    assert FERNET in plain("read", {"paths": [str(worker.airflow_home / "airflow.cfg")]})
    assert CANARY in plain("read", {"paths": [str(worker.dags / "other_flow.py")]})


# --- what it must not see -----------------------------------------------------------------------


def test_worker_environment_is_not_readable(worker: Worker) -> None:
    got = worker.run("secrets", {"worker_pid": os.getpid()})  # run() asserts the canary is absent
    assert got[f"/proc/{os.getpid()}/environ"]["ok"] is False
    assert got["/proc/1/environ"] == {"ok": True, "value": ""}  # bwrap itself starts with no env
    assert not any(key.startswith("AIRFLOW") for key in got["self"])


def test_worker_files_are_not_visible(worker: Worker) -> None:
    host_tmp = Path(tempfile.mkdtemp(prefix="byo-host-tmp-"))
    paths = {
        "airflow.cfg": worker.airflow_home / "airflow.cfg",
        "metadata DB": worker.airflow_home / "airflow.db",
        "other DAG": worker.dags / "other_flow.py",
        "home": worker.home / ".netrc",
        "shadow": Path("/etc/shadow"),
        "run": Path("/run"),
        "home dirs": Path("/home"),
        "host /tmp": host_tmp,
        "ssh config": Path("/etc/ssh"),
    }
    try:
        got = worker.run("read", {"paths": [str(p) for p in paths.values()]})
    finally:
        host_tmp.rmdir()
    for name, path in paths.items():
        assert got[str(path)]["ok"] is False, f"{name} is visible: {got[str(path)]}"
        assert "FileNotFoundError" in got[str(path)]["error"], name  # absent, not just forbidden
    venvs = worker.airflow_home / "byo" / "venvs"
    root = worker.run("read", {"paths": ["/root", "/etc", str(worker.airflow_home), str(venvs)]})
    # AIRFLOW_HOME is only the empty path down to the flow's own venv, which bwrap had to create.
    assert root[str(worker.airflow_home)]["value"] == ["byo"]
    assert root[str(venvs)]["value"] == ["venv-sandboxtest"]
    # Only the interpreter's own prefix under /root (pyenv) exists; no dotfiles, no keys.
    assert set(root["/root"].get("value", [])) <= {".pyenv"}
    assert set(root["/etc"]["value"]) <= {"ld.so.cache", "localtime", "passwd", "group", "alternatives"}


def test_network_is_off_unless_the_host_network_is_shared(worker: Worker) -> None:
    server = socket.create_server(("127.0.0.1", 0))
    port = server.getsockname()[1]

    def serve() -> None:
        while True:
            try:
                connection, _ = server.accept()
            except OSError:
                return
            with connection:
                connection.sendall(b"hello from the worker's network")

    threading.Thread(target=serve, daemon=True).start()
    try:
        off = worker.run("connect", {"port": port})
        on = worker.run("connect", {"port": port}, worker.spec(network="host"))
    finally:
        server.close()
    assert off["ok"] is False
    assert "ConnectionRefusedError" in off["error"]
    assert on == {"ok": True, "value": "hello from the worker's network"}


@pytest.mark.skipif(not pasta_status()[0], reason="pasta (Debian passt) cannot work here")
def test_a_user_network_gets_the_forwarded_resolver_when_the_hosts_is_on_loopback(
    worker: Worker, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The host's resolver on 127.0.0.53 (systemd-resolved) is unreachable from the sandbox's own
    loopback: its /etc/resolv.conf names the address pasta forwards instead."""
    forwarded = "nameserver 169.254.1.53\nsearch example.internal\n"
    monkeypatch.setattr(sandbox_dns, "sandbox_resolv_conf", lambda: forwarded)
    got = worker.run("read", {"paths": ["/etc/resolv.conf"]}, worker.spec(network="user"))
    assert got["/etc/resolv.conf"] == {"ok": True, "value": forwarded}


# --- everything dies with the child ------------------------------------------------------------


def test_a_setsid_daemon_dies_with_the_child(worker: Worker) -> None:
    token = f"byo-daemon-{uuid.uuid4().hex}"
    process = worker.start("daemon", {"token": token}, worker.spec())
    assert process.stdout is not None
    assert process.stdin is not None
    assert json.loads(process.stdout.readline()) == {"ready": True}
    assert _host_pids_with(token), "the daemon should run while the child does (else this proves nothing)"
    process.stdin.write("exit\n")
    process.stdin.flush()
    process.communicate(timeout=30)
    assert process.returncode == 0
    assert _wait_gone(token) == [], "the daemon outlived the child"


def test_killing_the_sandbox_kills_the_daemon_too(worker: Worker) -> None:
    """What ChildProcess.kill does on a timeout: SIGKILL to the process group of the outer bwrap."""
    token = f"byo-daemon-{uuid.uuid4().hex}"
    process = worker.start("daemon", {"token": token}, worker.spec())
    assert process.stdout is not None
    assert json.loads(process.stdout.readline()) == {"ready": True}
    assert _host_pids_with(token)
    os.killpg(process.pid, signal.SIGKILL)
    process.communicate(timeout=30)
    assert _wait_gone(token) == []


def test_fork_then_exit_closes_the_pipe_promptly(worker: Worker) -> None:
    process = worker.start("fork_exit", {}, worker.spec())
    started = time.monotonic()
    out, _ = process.communicate(timeout=60)  # would hang for 600 s if the grandchild kept stdout
    elapsed = time.monotonic() - started
    assert json.loads(out) == {"forked": True}
    assert process.returncode == 3  # the child's own exit code, as a crash
    assert elapsed < 5, f"EOF took {elapsed:.1f}s"


# --- files ----------------------------------------------------------------------------------------


def test_only_the_writable_directory_and_private_tmp_take_writes(worker: Worker) -> None:
    staging, destination = worker.dir("staging"), worker.dir("destination")
    read_only = worker.dir("inputs")
    marker = f"byo-private-{uuid.uuid4().hex}"
    targets = {
        "staging": staging / "out-00001",
        "tmp": Path("/tmp") / marker,
        "read-only input dir": read_only / "x",
        "venv": Path(worker.python).parent / "x",
        "DAGs module folder": worker.dags / "flow_lib" / "x",
        "root": Path("/x"),
        "etc": Path("/etc/x"),
        "usr": Path("/usr/x"),
        "dev": Path("/dev/x"),
        "destination (not bound)": destination / "x",
    }
    spec = worker.spec(writable=(str(staging),), read_only=(*worker.spec().read_only, str(read_only)))
    got = worker.run("write", {"paths": [str(p) for p in targets.values()]}, spec)
    assert got[str(targets["staging"])]["ok"]
    assert got[str(targets["tmp"])]["ok"]
    for name in list(targets)[2:]:
        assert got[str(targets[name])]["ok"] is False, f"{name} took a write"
    assert not (Path("/tmp") / marker).exists()  # the sandbox's /tmp is its own
    out = targets["staging"]
    # The child's own uid wrote it: a root worker's child never is uid 0.
    assert out.stat().st_uid == worker.child_uid
    assert worker.child_uid != 0
    move = f"import os; os.replace({str(out)!r}, {str(destination / 'out.txt')!r})"
    subprocess.run(
        [*worker.prefix, sys.executable if not worker.prefix else "/usr/bin/python3", "-c", move], check=True
    )
    assert (destination / "out.txt").read_text() == "x" * 10


# --- limits --------------------------------------------------------------------------------------


def test_process_limit(worker: Worker) -> None:
    """Held for a root worker too: its child has a uid of its own, and RLIMIT_NPROC counts that uid."""
    spec = worker.spec(max_processes=8)
    got = worker.run("forks", {"cap": 50}, spec)
    assert got["error_type"] == "BlockingIOError"  # the child runtime names the key (test_limits.py)
    assert got["started"] < 8


def test_file_size_limit(worker: Worker) -> None:
    staging = worker.dir("staging")
    spec = worker.spec(writable=(str(staging),), max_file_bytes=1000)
    got = worker.run("write", {"paths": [str(staging / "big")], "size": 5000}, spec)
    error = got[str(staging / "big")]["error"]
    assert "File too large" in error  # EFBIG: the child runtime names the key (test_limits.py)


# --- the module itself ---------------------------------------------------------------------------


def test_the_module_works_for_an_ordinary_user_without_airflow(worker: Worker) -> None:
    """The worker side as the user: import (stdlib only), status probe, interpreter probe, run."""
    if worker.kind != "user":
        pytest.skip("the root worker is the test process itself")
    code = (
        "import sys; sys.path.insert(0, sys.argv[1]); sys.path.append(sys.argv[3])\n"
        "from airflow_byo.runner import sandbox as s, sandbox_mode as mode, sandbox_network\n"
        "assert not [m for m in sys.modules if m.startswith('airflow.')], 'Airflow imported'\n"
        "assert mode.bubblewrap_status()[0], mode.bubblewrap_status()\n"
        "assert s.worker_identity() is None  # an ordinary user's children run as itself\n"
        "spec = s.SandboxSpec(interpreter=sys.argv[2])\n"
        "argv = [sys.argv[2], '-c', 'import os; print(os.getuid())']\n"
        "r = s.prepare_sandbox(argv, spec).run(timeout=60)\n"
        "print(r.stdout.strip(), r.stderr)"
    )
    root = str(Path(sandbox.__file__).parents[2])
    # pyseccomp (pure Python) from the project's environment, as the user's own worker would have it
    site = next(p for p in sys.path if p.endswith("site-packages"))
    result = subprocess.run(
        [*worker.prefix, "/usr/bin/python3", "-I", "-c", code, root, worker.python, site],
        capture_output=True,
        text=True,
        check=True,
    )
    assert result.stdout.strip() == str(sandbox_command.SANDBOX_UID)


def _plan(argv: list[str], spec: SandboxSpec, identity: Any = None) -> dict[str, Any]:
    with prepare_sandbox(argv, spec, identity=identity) as launch:
        assert launch.command[1:4] == [
            "-I",
            "-S",
            str(Path(sandbox.__file__).with_name("sandbox_launcher.py")),
        ]
        return dict(marshal.loads(bytes.fromhex(launch.command[4])))


def test_command_shape(tmp_path: Path) -> None:
    (tmp_path / "srv" / "in").mkdir(parents=True)
    outer, inner = str(tmp_path / "srv"), str(tmp_path / "srv" / "in")
    spec = SandboxSpec(interpreter=sys.executable, read_only=(inner,), writable=(outer,), env={"A": "1"})
    plan = _plan([sys.executable, "-c", "pass"], spec)
    argv = plan["exec"]
    assert argv[0].endswith("/bwrap")
    assert plan["uid"] is None  # no identity: the launcher runs as this process's own user
    assert "--seccomp" in argv
    assert "--unshare-net" in argv
    assert "/etc/resolv.conf" not in argv
    # The writable parent is bound first, then the read-only folder inside it on top, by descriptor.
    assert argv.index(outer) < argv.index(inner)
    assert argv[argv.index(outer) - 2] == "--bind-fd"
    assert argv[argv.index(inner) - 2] == "--ro-bind-fd"
    assert argv[argv.index("A") - 1 : argv.index("A") + 2] == ["--setenv", "A", "1"]
    for masked in ("/proc/sys", "/proc/kcore", "/proc/keys", "/proc/timer_list"):
        if os.path.exists(masked):
            assert masked in argv, masked
    host = _plan([sys.executable], replace(spec, network="host"))["exec"]
    assert "--unshare-net" not in host
    assert "/etc/resolv.conf" in host
    with pytest.raises(ValueError, match="both read-only and writable"):
        prepare_sandbox([sys.executable], replace(spec, read_only=(outer,)))


@pytest.mark.skipif(os.geteuid() != 0, reason="a root worker's plan")
def test_a_root_workers_child_gets_a_uid_of_its_own_and_views_of_its_folders(tmp_path: Path) -> None:
    (tmp_path / "out").mkdir()
    spec = SandboxSpec(interpreter=sys.executable, writable=(str(tmp_path / "out"),))
    first, second = worker_identity(), worker_identity()
    assert first is not None
    assert second is not None
    try:
        assert first.uid != second.uid  # two children at once never share a uid
        assert first.uid >= 1000
        plan = _plan([sys.executable], spec, first)
        assert (plan["uid"], plan["gid"]) == (first.uid, first.gid)
        assert (tmp_path / "out").stat().st_uid == first.uid  # its writable folder is its own
        views = [view[1] for view in plan["views"]]
        assert str(tmp_path / "out") in views
        assert str(Path(sys.base_prefix).resolve()) in views
        assert plan["keep_fds"] == [int(plan["exec"][plan["exec"].index("--seccomp") + 1])]
    finally:
        first.release()
        second.release()


def test_resolve_mode() -> None:
    works, broken = (True, "bubblewrap 0.8.0"), (False, "bubblewrap (bwrap) is not installed: install ...")
    assert sandbox_mode.resolve_mode("auto", works) == ("bubblewrap", None)
    assert sandbox_mode.resolve_mode("", works) == ("bubblewrap", None)
    assert sandbox_mode.resolve_mode("required", works) == ("bubblewrap", None)
    assert sandbox_mode.resolve_mode("off", works) == ("off", None)
    mode, warning = sandbox_mode.resolve_mode("auto", broken)
    assert mode == "off"
    assert warning is not None
    assert "WITHOUT a sandbox" in warning
    with pytest.raises(
        ByoConfigError, match=r"sandbox = required, but bubblewrap \(bwrap\) is not installed"
    ):
        sandbox_mode.resolve_mode("required", broken)
    with pytest.raises(
        ByoConfigError, match=r"\[byo\] sandbox = 'yes' is not valid: use one of required, auto, off"
    ):
        sandbox_mode.resolve_mode("yes", works)


def test_describe_exit() -> None:
    assert "SIGSEGV" in sandbox.describe_exit(128 + signal.SIGSEGV)
    assert "SIGKILL" in sandbox.describe_exit(-signal.SIGKILL)  # the outer bwrap itself killed
    assert sandbox.describe_exit(3) == "the processor exited with code 3"
    assert sandbox.describe_exit(255) == "the processor exited with code 255"
    assert "could not start the processor" in sandbox.describe_exit(126)


def test_status_names_the_package_when_bwrap_is_missing(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setattr(sandbox_command, "_tool", lambda name: None)
    sandbox_mode.bubblewrap_status.cache_clear()
    try:
        works, reason = sandbox_mode.bubblewrap_status()
    finally:
        sandbox_mode.bubblewrap_status.cache_clear()
    assert not works
    assert "install the Debian package bubblewrap" in reason


def test_start_time_overhead(worker: Worker) -> None:
    """Not an assertion on time: prints the sandbox's start cost next to a plain start."""
    plain = [worker.python, "-I", "-c", "pass"]

    def median_ms(sandboxed: bool) -> float:
        samples = []
        for _ in range(15):
            started = time.perf_counter()
            if sandboxed:
                with worker.launch(plain, worker.spec()) as launch:
                    assert launch.run(timeout=60, prefix=worker.prefix).returncode == 0
            else:
                subprocess.run(worker.prefix + plain, check=True)
            samples.append((time.perf_counter() - started) * 1000)
        return statistics.median(samples)

    base, boxed = median_ms(False), median_ms(True)
    print(
        f"\n[{worker.kind}] python start: plain {base:.1f} ms, sandboxed {boxed:.1f} ms, "
        f"overhead {boxed - base:.1f} ms"
    )
