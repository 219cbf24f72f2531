"""
The seccomp filter of the sandbox, loaded by a real bwrap into real processes.

Each probe runs twice: with ``--seccomp`` and without it (the control), so every assertion is also
shown to fail without the filter. The denied calls are probed side-effect free: the probe stacks
an inner filter that answers each probed call with TRACE (ENOSYS, since there is no tracer); the
kernel applies the strictest answer, so EPERM can only come from the sandbox's filter, and no
probed call ever runs. Everything runs as root and as a throwaway ordinary user (``setpriv``).
"""

from __future__ import annotations

import errno
import json
import os
import platform
import random
import shutil
import signal
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import pytest

from airflow_byo.runner import sandbox_mode, seccomp_filter
from airflow_byo.runner.seccomp_filter import (
    CLONE_NAMESPACE_FLAGS,
    DENIED_IOCTLS,
    DENIED_SYSCALLS,
    PERSONALITY_ALLOWED,
    seccomp_fd,
    seccomp_program,
    seccomp_status,
)
from tests.conftest import remove_user, throwaway_user

PROBE = Path(__file__).parent / "sandbox" / "seccomp_probe.py"
PYTHON = "/usr/bin/python3"  # Debian's: under /usr, so every user reaches it inside the sandbox
EPERM, ENOSYS = -errno.EPERM, -errno.ENOSYS  # the probe reports -errno
SIGSYS_EXIT = 128 + signal.SIGSYS  # bwrap's exit code for a child killed by SIGSYS

pytestmark = [
    pytest.mark.skipif(
        not sandbox_mode.bubblewrap_status()[0],
        reason=f"bubblewrap cannot work here: {sandbox_mode.bubblewrap_status()[1]}",
    ),
    pytest.mark.skipif(not seccomp_status()[0], reason=f"no seccomp filter here: {seccomp_status()[1]}"),
    pytest.mark.skipif(not os.path.exists(PYTHON), reason=f"the probe runs on {PYTHON}, which is missing"),
]


def _nr(name: str) -> int:
    import pyseccomp

    return pyseccomp.resolve_syscall(pyseccomp.Arch.NATIVE, name)


@dataclass
class Sandbox:
    """Runs the probe in a minimal bwrap sandbox, as root or dropped to an ordinary user."""

    kind: str
    prefix: list[str]
    probe: str

    def argv(self, seccomp: int | None) -> list[str]:
        args = ["bwrap", "--unshare-all", "--unshare-user", "--uid", "65534", "--gid", "65534"]
        args += ["--die-with-parent", "--new-session", "--cap-drop", "ALL", "--ro-bind", "/usr", "/usr"]
        for top in ("/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32"):  # as sandbox_command does
            if os.path.islink(top):
                args += ["--symlink", os.readlink(top), top]
            elif os.path.isdir(top):
                args += ["--ro-bind", top, top]
        args += ["--proc", "/proc", "--dev", "/dev", "--tmpfs", "/tmp"]  # before the probe under /tmp
        args += ["--ro-bind-try", "/etc/ssl", "/etc/ssl", "--ro-bind", self.probe, self.probe]
        if seccomp is not None:
            args += ["--seccomp", str(seccomp)]
        return args

    def run(self, mode: str, arg: object, *, seccomp: bool = True) -> tuple[int, dict | None, str]:
        """``(exit code, the probe's JSON or None, stderr)``, with or without the filter."""
        fd = seccomp_fd() if seccomp else None
        try:
            result = subprocess.run(
                [*self.prefix, *self.argv(fd), "--", PYTHON, "-I", self.probe, mode, json.dumps(arg)],
                pass_fds=[fd] if fd is not None else [],
                capture_output=True,
                text=True,
                timeout=120,
            )
        finally:
            if fd is not None:
                os.close(fd)
        lines = result.stdout.strip().splitlines()
        return result.returncode, json.loads(lines[-1]) if lines else None, result.stderr

    def probe_json(self, mode: str, arg: object, *, seccomp: bool = True) -> dict:
        code, out, err = self.run(mode, arg, seccomp=seccomp)
        assert code == 0, err
        assert out is not None, err
        return out


@pytest.fixture(scope="module", params=["root", "user"] if os.geteuid() == 0 else ["user"])
def box(request: pytest.FixtureRequest) -> object:
    # A world-readable copy of the probe: the ordinary user must reach it (pytest's tmp is 0700).
    base = Path(tempfile.mkdtemp(prefix="byo-seccomp-test-"))
    base.chmod(0o755)
    probe = base / PROBE.name
    shutil.copyfile(PROBE, probe)
    probe.chmod(0o644)
    user = None
    if request.param == "user" and os.geteuid() == 0:
        user = throwaway_user("byoscmp")
        prefix = ["setpriv", f"--reuid={user.pw_uid}", f"--regid={user.pw_gid}", "--clear-groups", "--"]
    else:
        prefix = []
    yield Sandbox(request.param, prefix, str(probe))
    shutil.rmtree(base, ignore_errors=True)
    if user is not None:
        remove_user(user)


# --- side-effect-free probes of every denied call and every argument rule -----------------------


def _clone_flags_arg() -> int:
    return 1 if platform.machine().startswith("s390") else 0


def _argument_cases() -> dict[str, tuple[str, list[int], int]]:
    """label -> (system call, arguments, expected: EPERM refused by the sandbox, ENOSYS allowed)."""
    sigchld = signal.SIGCHLD

    def clone_args(flags: int) -> list[int]:
        return [0, flags] if _clone_flags_arg() else [flags]

    cases: dict[str, tuple[str, list[int], int]] = {}
    for flag in CLONE_NAMESPACE_FLAGS:
        cases[f"clone {flag:#x}|SIGCHLD"] = ("clone", clone_args(flag | sigchld), EPERM)
    cases["clone CLONE_NEWUSER|CLONE_NEWNS"] = ("clone", clone_args(0x10020000), EPERM)
    cases["clone SIGCHLD (fork)"] = ("clone", clone_args(sigchld), ENOSYS)
    cases["clone thread flags"] = ("clone", clone_args(0x3D0F00), ENOSYS)  # glibc's pthread_create
    cases["clone CLONE_VM|CLONE_VFORK|SIGCHLD"] = ("clone", clone_args(0x4100 | sigchld), ENOSYS)
    cases["unshare CLONE_NEWUSER"] = ("unshare", [0x10000000], EPERM)
    cases["unshare CLONE_NEWTIME"] = ("unshare", [0x80], EPERM)
    cases["unshare CLONE_FILES"] = ("unshare", [0x400], EPERM)  # refused whatever the flags
    for request in DENIED_IOCTLS:
        cases[f"ioctl {request:#x}"] = ("ioctl", [0, request, 0], EPERM)
        cases[f"ioctl {request:#x} with upper bits"] = ("ioctl", [0, (0xDEAD << 32) | request, 0], EPERM)
    cases["ioctl TCGETS"] = ("ioctl", [0, 0x5401, 0], ENOSYS)
    cases["ioctl FIONREAD"] = ("ioctl", [0, 0x541B, 0], ENOSYS)
    cases["socket AF_VSOCK"] = ("socket", [40, 1, 0], EPERM)
    cases["socket AF_VSOCK with upper bits"] = ("socket", [(1 << 32) | 40, 1, 0], EPERM)
    cases["socket AF_INET"] = ("socket", [2, 1, 0], ENOSYS)
    cases["socket AF_UNIX"] = ("socket", [1, 1, 0], ENOSYS)
    values = set(PERSONALITY_ALLOWED)
    values |= {1 << i for i in range(33)} | {0xFFFFFFFF ^ (1 << i) for i in range(32)}
    values |= {0xFFFDFFF7, 0xFFFDFFFF, 0xFFFFFFF7, (1 << 32) | 8, 2**64 - 1, 0xFFFFFFFF << 32}
    values |= {0x0040000, 0x0400000, 0x0440008}  # ADDR_NO_RANDOMIZE, READ_IMPLIES_EXEC
    values |= {random.Random(21).getrandbits(32) for _ in range(64)}
    for value in sorted(values):
        expected = ENOSYS if value in PERSONALITY_ALLOWED else EPERM
        cases[f"personality {value:#x}"] = ("personality", [value], expected)
    return cases


def _probe_calls() -> dict:
    """The ``calls`` probe's argument: the inner TRACE filter and the calls ``[label, nr, args...]``."""
    import pyseccomp

    here = [name for name in DENIED_SYSCALLS if _nr(name) >= 0]
    calls = [[f"syscall {name}", _nr(name), 0, 0, 0, 0, 0, 0] for name in here]
    calls += [[label, _nr(name), *args] for label, (name, args, _) in _argument_cases().items()]
    traced = sorted({number for _, number, *_ in calls})
    inner = pyseccomp.SyscallFilter(pyseccomp.ALLOW)
    for number in traced:
        inner.add_rule(pyseccomp.TRACE(0), number)
    with tempfile.TemporaryFile() as out:
        inner.export_bpf(out)
        out.seek(0)
        program = out.read()
    return {"inner": program.hex(), "calls": calls}


@pytest.fixture(scope="module")
def call_results(box: Sandbox) -> tuple[dict, dict]:
    """``(with the filter, without it)`` for every probed call of this sandbox kind."""
    arg = _probe_calls()
    return box.probe_json("calls", arg), box.probe_json("calls", arg, seccomp=False)


@pytest.mark.parametrize("name", DENIED_SYSCALLS)
def test_each_denied_call_gets_eperm(name: str, call_results: tuple[dict, dict]) -> None:
    if _nr(name) < 0:
        pytest.skip(f"{name} is not a system call libseccomp knows on {platform.machine()}")
    filtered, control = call_results
    assert filtered[f"syscall {name}"] == EPERM
    assert control[f"syscall {name}"] == ENOSYS  # without the filter it would have run


@pytest.mark.parametrize("label", sorted(_argument_cases()))
def test_argument_rules(label: str, call_results: tuple[dict, dict]) -> None:
    filtered, control = call_results
    assert filtered[label] == _argument_cases()[label][2]
    assert control[label] == ENOSYS


# --- the calls the issue names, made for real ---------------------------------------------------


@pytest.fixture(scope="module")
def real_results(box: Sandbox) -> tuple[dict, dict]:
    arg = {"nr": {name: _nr(name) for name in ("ptrace", "keyctl", "personality", "clone3")}}
    return box.probe_json("real", arg), box.probe_json("real", arg, seccomp=False)


def test_ptrace_of_the_sandbox_init_is_refused(real_results: tuple[dict, dict]) -> None:
    filtered, control = real_results
    assert filtered["ptrace_attach_init"] == EPERM
    assert control["ptrace_attach_init"] == 0  # the attack of issue #21 item 6, without the filter


def test_the_kernel_keyring_is_out_of_reach(real_results: tuple[dict, dict]) -> None:
    filtered, control = real_results
    assert filtered["keyctl_get_session_keyring"] == EPERM
    assert filtered["keyctl_read_session_keyring"] == EPERM
    assert control["keyctl_get_session_keyring"] > 0  # a key id: the keyring is there without it


def test_personality_query_still_works(real_results: tuple[dict, dict]) -> None:
    filtered, control = real_results
    assert filtered["personality_query"] == control["personality_query"] >= 0


def test_clone3_says_enosys_so_glibc_falls_back(real_results: tuple[dict, dict]) -> None:
    filtered, control = real_results
    assert filtered["clone3_size_0"] == ENOSYS
    assert control["clone3_size_0"] == -errno.EINVAL  # the kernel's own answer to size 0


def test_ordinary_work_still_works(box: Sandbox) -> None:
    results = box.probe_json("work", {})
    assert results == dict.fromkeys(
        (
            "threads",
            "subprocess",
            "fork",
            "multiprocessing_fork",
            "mmap",
            "loopback_sockets",
            "ssl",
            "sqlite3",
        ),
        "ok",
    )


# --- other architectures ------------------------------------------------------------------------


@pytest.mark.skipif(platform.machine() != "x86_64", reason="i386 and x32 entries exist on x86_64 only")
@pytest.mark.parametrize("mode", ["int80", "x32"])
def test_a_call_of_another_architecture_kills_the_child(mode: str, box: Sandbox) -> None:
    code, control, err = box.run(mode, {}, seccomp=False)
    if mode == "int80" and code != 0:
        pytest.skip(f"this kernel has no i386 entry (ia32_emulation off?): exit {code}, {err[-200:]}")
    assert code == 0, err
    assert control is not None
    code, out, _ = box.run(mode, {})
    assert (code, out) == (SIGSYS_EXIT, None)


# --- the module's own API -----------------------------------------------------------------------


def test_the_program_is_built_once_and_each_fd_holds_it() -> None:
    program = seccomp_program()
    assert seccomp_program() is program
    assert len(program) % 8 == 0
    assert 0 < len(program) // 8 < 4096  # BPF_MAXINSNS
    fds = [seccomp_fd(), seccomp_fd()]
    try:
        assert fds[0] != fds[1]
        for fd in fds:
            assert os.lseek(fd, 0, os.SEEK_CUR) == 0
            assert not os.get_inheritable(fd)  # Popen(pass_fds=...) makes it inheritable in bwrap only
            assert os.read(fd, len(program) + 1) == program
    finally:
        for fd in fds:
            os.close(fd)


def test_status_names_the_library_version() -> None:
    works, message = seccomp_status()
    assert works
    assert message.startswith("libseccomp 2.")
    assert message.endswith(f": {len(seccomp_program()) // 8} BPF instructions")


@pytest.fixture
def fresh_caches() -> object:
    seccomp_filter.seccomp_status.cache_clear()
    seccomp_filter.seccomp_program.cache_clear()
    yield
    seccomp_filter.seccomp_status.cache_clear()
    seccomp_filter.seccomp_program.cache_clear()


FIX = (
    "install the Debian package libseccomp2 (apt-get install -y libseccomp2) and the Python package pyseccomp"
)


def test_status_without_pyseccomp(fresh_caches: None, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "pyseccomp", None)  # import pyseccomp -> ImportError
    works, message = seccomp_status()
    assert not works
    assert message.startswith("the Python package pyseccomp is not installed (")
    assert f"; {FIX} in the worker's environment (pip install 'pyseccomp>=0.1.2')" in message
    with pytest.raises(RuntimeError, match="pyseccomp is not installed"):
        seccomp_program()


def test_status_without_libseccomp(
    fresh_caches: None, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    # What pyseccomp itself raises when ctypes finds no libseccomp.so.
    (tmp_path / "pyseccomp.py").write_text("raise RuntimeError('Unable to find libseccomp')\n")
    monkeypatch.delitem(sys.modules, "pyseccomp", raising=False)
    monkeypatch.syspath_prepend(str(tmp_path))
    works, message = seccomp_status()
    assert not works
    assert message.startswith(f"libseccomp could not be loaded: Unable to find libseccomp; {FIX}")


def test_status_when_building_fails(fresh_caches: None, monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(sc: object) -> None:
        raise OSError(errno.EINVAL, "Invalid argument")

    monkeypatch.setattr(seccomp_filter, "_build", refuse)
    works, message = seccomp_status()
    assert not works
    assert message.startswith(
        f"libseccomp could not build the sandbox's seccomp filter: [Errno 22] Invalid argument; {FIX}"
    )


def test_status_when_libseccomp_does_not_know_clone3(
    fresh_caches: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    import pyseccomp

    known = pyseccomp.resolve_syscall
    monkeypatch.setattr(
        pyseccomp, "resolve_syscall", lambda arch, name: -1 if name == "clone3" else known(arch, name)
    )
    works, message = seccomp_status()
    assert not works
    assert message.startswith("libseccomp 2.")
    assert message.endswith(
        " does not know clone3, so the filter could not stop it making namespaces: install "
        f"libseccomp2 >= 2.5; {FIX} in the worker's environment (pip install 'pyseccomp>=0.1.2')"
    )


def test_status_without_kernel_seccomp(fresh_caches: None, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(seccomp_filter, "_kernel_has_seccomp", lambda: False)
    assert seccomp_status() == (
        False,
        "this kernel has no seccomp (no 'Seccomp:' in /proc/self/status); use a kernel built with "
        "CONFIG_SECCOMP_FILTER (every distribution kernel is)",
    )


def test_the_module_imports_without_pyseccomp() -> None:
    code = (
        "import sys; sys.modules['pyseccomp'] = None; "
        "from airflow_byo.runner import seccomp_filter as s; "
        "print(s.seccomp_status()[0], len(s.DENIED_SYSCALLS))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["False", str(len(DENIED_SYSCALLS))]
