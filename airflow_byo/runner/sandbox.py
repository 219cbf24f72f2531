"""
The sandbox around every child: bubblewrap (``bwrap``), started through a small launcher.

The child runs in new user, PID, mount, IPC, UTS, cgroup and network namespaces, as uid/gid 65534
inside with no capabilities, under a seccomp filter (:mod:`.seccomp_filter`), and sees only what
the spec binds -- each path at its own location, so the child protocol's paths stay valid -- over
a read-only empty root, with its own ``/proc`` (the kernel's knobs in it read-only or masked, as
container runtimes do) and a minimal ``/dev`` (issues #12, #21).

**Identity on the host.** The sandbox's user maps to the uid that starts bwrap. A worker running
as an ordinary user starts it as itself. A **root worker never does**: each child gets a uid of
its own (:mod:`.sandbox_identity`), and the launcher (:mod:`.sandbox_launcher`) drops to it
before it execs bwrap, after giving the child a fresh keyring and making the folders it binds
reachable. Every folder is bound from a descriptor the worker opened, never re-resolved by path
later. Writable folders are handed to the child's uid; read-only ones must be readable by
"other" (the flow environment, its interpreter, the staged runtime and inputs are).

**Network**: ``off`` (a loopback of its own), ``user`` (outbound through the user-mode stack of
:mod:`.sandbox_network`: the host's loopback services and abstract unix sockets stay out of
reach) or ``host`` (the worker's own network, loopback included).

Stdlib only at import: the worker imports it, and tests run it without Airflow.
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import shutil
import signal
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from airflow_byo.runner.sandbox_identity import SandboxIdentity, lease_identity, parse_uid_range

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

    from airflow_byo.runner.sandbox_network import UserNetwork

__all__ = [
    "SANDBOX_UID",
    "Network",
    "SandboxLaunch",
    "SandboxSpec",
    "bubblewrap_status",
    "describe_exit",
    "interpreter_paths",
    "prepare_sandbox",
    "resolve_mode",
    "sandbox_mode",
    "worker_identity",
]

SANDBOX_UID = 65534  # "nobody" inside
MODES = ("required", "auto", "off")
Mode = Literal["required", "auto", "off"]
InEffect = Literal["bubblewrap", "off"]
Network = Literal["off", "user", "host"]

_INSTALL = "install the Debian package bubblewrap (apt-get install -y bubblewrap)"
_LAUNCHER = str(Path(__file__).with_name("sandbox_launcher.py"))

#: Parts of the sandbox's own /proc that container runtimes (runc's defaults) make read-only ...
_PROC_READ_ONLY = ("/proc/sys", "/proc/sysrq-trigger", "/proc/irq", "/proc/bus", "/proc/fs")
#: ... and the files they hide (kernel memory, every process's keys, timers, scheduler details).
_PROC_MASKED_FILES = (
    "/proc/kcore",
    "/proc/keys",
    "/proc/kallsyms",
    "/proc/latency_stats",
    "/proc/timer_list",
    "/proc/timer_stats",
    "/proc/sched_debug",
    "/proc/kmsg",
)
_PROC_MASKED_DIRS = ("/proc/acpi", "/proc/scsi", "/proc/asound", "/proc/driver")


@dataclass(frozen=True)
class SandboxSpec:
    """
    What one sandboxed child may see and do.

    :param interpreter: the child's Python; its venv folder and base installation are bound read-only.
    :param read_only: paths bound read-only at the same place (runtime copy, inputs, sys_path folders).
    :param writable: paths bound read-write at the same place (the child's output drop folder).
    :param network: ``off``, ``user`` (outbound only, through a user-mode network stack) or ``host``.
    :param env: the complete environment of the child (already allow-listed by the caller).
    :param cwd: working directory inside; must be ``/tmp`` or inside a bound path.
    :param max_processes: RLIMIT_NPROC: processes *and threads*, bwrap's init and the child included.
    :param max_file_bytes: RLIMIT_FSIZE: largest file the child may write (``OSError: File too large``).
    :param max_memory_bytes: RLIMIT_AS of the child, set before its interpreter starts.
    :param tmp_bytes: size cap of the private ``/tmp`` and ``/dev/shm`` (tmpfs is RAM, not in RLIMIT_AS).
    """

    interpreter: str
    read_only: tuple[str, ...] = ()
    writable: tuple[str, ...] = ()
    network: Network = "off"
    env: Mapping[str, str] = field(default_factory=dict)
    cwd: str = "/tmp"
    max_processes: int | None = None
    max_file_bytes: int | None = None
    max_memory_bytes: int | None = None
    tmp_bytes: int = 512 << 20


def _config_error(message: str) -> Exception:
    # The project's errors import Airflow; only build one when there is something to raise.
    from airflow_byo.exceptions import ByoConfigError

    return ByoConfigError(message)


@functools.cache
def _tool(name: str) -> str | None:
    found = shutil.which(name, path=os.environ.get("PATH", "") + ":/usr/bin:/bin:/usr/sbin")
    return os.path.realpath(found) if found else None


@functools.cache
def bubblewrap_status() -> tuple[bool, str]:
    """
    Whether bwrap exists, the seccomp filter can be built, *and* a sandbox can start here (one
    trivial sandboxed ``true``, cached).

    :return: ``(True, "bubblewrap <version>")`` or ``(False, "<why>; <how to fix>")``.
    """
    from airflow_byo.runner.seccomp_filter import seccomp_status

    bwrap, prlimit = _tool("bwrap"), _tool("prlimit")
    if bwrap is None:
        return False, f"bubblewrap (bwrap) is not installed: {_INSTALL}"
    if prlimit is None:  # the limits are applied inside the sandbox by util-linux's prlimit
        return False, "prlimit is not installed: install the Debian package util-linux"
    works, why = seccomp_status()
    if not works:
        return False, why
    identity = None
    try:
        identity = worker_identity()
        probe = SandboxSpec(interpreter="/usr/bin/true")
        with prepare_sandbox(["/usr/bin/true"], probe, identity=identity) as launch:
            result = launch.run(timeout=30)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return False, f"bubblewrap ({bwrap}) could not run: {exc}"
    except Exception as exc:  # noqa: BLE001 -- e.g. no free sandbox uid: the reason is the message
        return False, str(exc)
    finally:
        if identity is not None:
            identity.release()
    if result.returncode != 0:
        why_lines = result.stderr.strip().splitlines()[-1:] or [f"exit code {result.returncode}"]
        return False, (
            f"bubblewrap ({bwrap}) cannot create a sandbox here: {why_lines[0]}. Unprivileged user "
            "namespaces must be allowed (sysctl user.max_user_namespaces > 0; Debian <= 10: "
            "kernel.unprivileged_userns_clone=1; Ubuntu >= 23.10: an AppArmor profile for bwrap or "
            "kernel.apparmor_restrict_unprivileged_userns=0; in a container: a seccomp profile "
            "that allows clone/unshare of namespaces)"
        )
    version = subprocess.run([bwrap, "--version"], capture_output=True, text=True).stdout.strip()
    return True, version or "bubblewrap"


def sandbox_mode() -> tuple[InEffect, str | None]:
    """The mode in effect for this worker's ``[byo] sandbox`` setting, and a warning to log once."""
    from airflow_byo.provider_config import setting

    configured = setting("sandbox")
    if configured.strip().lower() == "off":
        return "off", None  # no probe: a trusted setup pays nothing
    return resolve_mode(configured, bubblewrap_status())


def resolve_mode(setting: str, status: tuple[bool, str]) -> tuple[InEffect, str | None]:
    """
    The sandbox mode in effect for ``[byo] sandbox = required | auto | off``.

    :param setting: the configured value (``""`` means the default, ``auto``).
    :param status: :func:`bubblewrap_status` (passed in so this stays a pure function).
    :return: ``("bubblewrap" | "off", warning or None)``; ``auto`` without bubblewrap warns.
    :raises ByoConfigError: for an unknown value, or ``required`` when bubblewrap cannot work.
    """
    value = (setting or "auto").strip().lower()
    if value not in MODES:
        raise _config_error(f"[byo] sandbox = {setting!r} is not valid: use one of {', '.join(MODES)}")
    works, reason = status
    if value == "off":
        return "off", None
    if works:
        return "bubblewrap", None
    if value == "required":
        raise _config_error(f"[byo] sandbox = required, but {reason}")
    return "off", (
        f"the processor runs WITHOUT a sandbox: {reason}. Fix that to enable it, or set "
        "[byo] sandbox = off to silence this warning for trusted code"
    )


@functools.cache
def interpreter_paths(python: str) -> tuple[str, ...]:
    """
    The folders ``python`` needs read-only: its venv (if it is one) and its base installation.

    The base is asked of the interpreter itself (``-I -S``: no site-packages, no ``.pth`` files, so
    none of the flow's packages runs outside the sandbox), once per path; a venv is recognised the
    way Python does, by ``pyvenv.cfg`` next to the executable or one level up.
    """
    python = os.path.abspath(python)
    probe = "import sys; print(sys.base_prefix); print(sys.base_exec_prefix); print(sys.executable)"
    try:
        out = subprocess.run(
            [python, "-I", "-S", "-c", probe], capture_output=True, text=True, timeout=60, check=True
        ).stdout.split("\n")
    except (OSError, subprocess.SubprocessError) as exc:
        from airflow_byo.exceptions import ByoProcessorError

        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else exc
        raise ByoProcessorError(
            f"cannot start the processor's interpreter {python!r}: {reason}. "
            "Check python_interpreter (or the flow's environment under venv_cache_path)"
        ) from None
    paths = [os.path.realpath(out[0]), os.path.realpath(out[1])]
    for venv in (os.path.dirname(python), os.path.dirname(os.path.dirname(python))):
        if os.path.isfile(os.path.join(venv, "pyvenv.cfg")):
            paths.append(venv)
            break
    if not any(_inside(python, path) for path in paths):
        paths.append(python)  # a lone interpreter outside its prefix (e.g. a wrapper)
    return tuple(dict.fromkeys(paths))


def _inside(path: str, folder: str) -> bool:
    return path == folder or path.startswith(folder.rstrip("/") + "/")


def _system_binds(network: Network) -> list[str]:
    """The host's programs and libraries, and the few /etc files they read; nothing else of /etc."""
    args = ["--ro-bind", "/usr", "/usr"]
    # Merged-/usr systems have /bin -> usr/bin etc.: recreate the links, else bind the folders.
    for top in ("/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32"):
        if os.path.islink(top):
            args += ["--symlink", os.readlink(top), top]
        elif os.path.isdir(top):
            args += ["--ro-bind", top, top]
    etc = [
        "/etc/ld.so.cache",  # the dynamic loader's library index (numpy & co. load .so files)
        "/etc/localtime",  # time.localtime() and logging timestamps in the worker's zone
        "/etc/passwd",  # world-readable anyway; pwd.getpwuid(65534) -> nobody (getpass, ~)
        "/etc/group",
        "/etc/alternatives",  # Debian's /usr/bin/<tool> -> /etc/alternatives/<tool> links
    ]
    if network != "off":  # name resolution and TLS trust, only when the flow may use the network
        etc += ["/etc/resolv.conf", "/etc/hosts", "/etc/nsswitch.conf", "/etc/host.conf"]
        etc += ["/etc/gai.conf", "/etc/ssl/certs", "/etc/ssl/openssl.cnf", "/etc/ca-certificates"]
        etc += ["/etc/pki/tls/certs", "/etc/pki/ca-trust"]  # RHEL-style trust stores
    for path in etc:
        args += ["--ro-bind-try", path, path]  # -try: not every distribution has every file
    return args


def _proc_protection() -> list[str]:
    """Read-only and masked parts of the sandbox's /proc (only those this kernel has)."""
    args: list[str] = []
    for path in _PROC_READ_ONLY:
        if os.path.exists(path):
            args += ["--ro-bind", path, path]
    for path in _PROC_MASKED_FILES:
        if os.path.exists(path):
            args += ["--ro-bind", "/dev/null", path]
    for path in _PROC_MASKED_DIRS:
        if os.path.isdir(path):
            args += ["--perms", "0555", "--tmpfs", path, "--remount-ro", path]
    return args


@dataclass
class _Bind:
    """One folder (or file) for the sandbox, opened by the worker: bound from this descriptor."""

    dest: str
    source: str
    fd: int
    is_dir: bool
    writable: bool


def _open_binds(spec: SandboxSpec, interpreter_dirs: Sequence[str]) -> list[_Bind]:
    read_only = {os.path.abspath(p) for p in spec.read_only}
    writable = {os.path.abspath(p) for p in spec.writable}
    if read_only & writable:
        raise ValueError(f"paths both read-only and writable in the sandbox: {sorted(read_only & writable)}")
    if not any(_inside(spec.cwd, p) for p in ("/tmp", *read_only, *writable)):
        raise ValueError(f"the sandbox's cwd {spec.cwd!r} is not inside /tmp or a bound path")
    # An interpreter under /usr (Debian's python3) is already there with /usr.
    wanted = dict.fromkeys((p for p in interpreter_dirs if not _inside(p, "/usr")), False)
    wanted |= dict.fromkeys(read_only, False) | dict.fromkeys(writable, True)
    binds: list[_Bind] = []
    try:
        # Parents before children, so a read-only input folder inside a writable one stays read-only.
        for path, rw in sorted(wanted.items(), key=lambda item: (item[0].count("/"), item[0])):
            fd = os.open(path, os.O_PATH | os.O_CLOEXEC)
            binds.append(
                _Bind(path, os.readlink(f"/proc/self/fd/{fd}"), fd, os.path.isdir(f"/proc/self/fd/{fd}"), rw)
            )
    except BaseException:
        for bind in binds:
            os.close(bind.fd)
        raise
    return binds


def _limits(spec: SandboxSpec) -> list[str]:
    limits = []
    if spec.max_processes is not None:
        limits.append(f"--nproc={spec.max_processes}")
    if spec.max_file_bytes is not None:
        limits.append(f"--fsize={spec.max_file_bytes}")
    if spec.max_memory_bytes is not None:
        limits.append(f"--as={spec.max_memory_bytes}")
    return limits


def _bwrap_argv(bwrap: str, spec: SandboxSpec, binds: list[_Bind], view_root: str | None) -> list[str]:
    args = [bwrap, "--unshare-user", "--uid", str(SANDBOX_UID), "--gid", str(SANDBOX_UID)]
    args.append("--disable-userns")  # no nested user namespaces: less kernel attack surface
    args += ["--unshare-pid", "--unshare-ipc", "--unshare-uts", "--unshare-cgroup-try"]
    if spec.network != "host":
        args.append("--unshare-net")  # a network namespace with only a loopback of its own
    args += ["--hostname", "byo-sandbox", "--cap-drop", "ALL"]
    # Not --as-pid-1: bwrap stays the namespace's init and exits when the child does; the kernel
    # then kills every process left in the namespace (daemons, background forks), so the pipes
    # close at once and the worker sees the crash. --die-with-parent: a killed worker (or a
    # SIGKILL to the outer bwrap) takes the whole namespace with it. --new-session: no TIOCSTI
    # keystroke injection into a terminal, harmless for the pipe protocol.
    args += ["--die-with-parent", "--new-session"]
    args += ["--proc", "/proc", *_proc_protection(), "--dev", "/dev"]
    size = ["--size", str(spec.tmp_bytes)]
    args += ["--perms", "1777", *size, "--tmpfs", "/tmp", "--perms", "1777", *size, "--tmpfs", "/dev/shm"]
    args += ["--remount-ro", "/dev"]  # bwrap's /dev is an uncapped tmpfs: no files in RAM there
    args += _system_binds(spec.network)
    for index, bind in enumerate(binds):
        if view_root is not None:  # a root worker: the launcher mounted it at <view_root>/<n>
            option = "--bind" if bind.writable else "--ro-bind"
            args += [option, f"{view_root}/{index}", bind.dest]
        else:
            option = "--bind-fd" if bind.writable else "--ro-bind-fd"
            args += [option, str(bind.fd), bind.dest]
    args += ["--remount-ro", "/"]  # the root itself (and mount points bwrap made) read-only
    args += ["--chdir", spec.cwd]
    env = {**spec.env, "HOME": "/tmp", "TMPDIR": "/tmp"}  # the host's HOME/TMPDIR are not there
    for key, value in env.items():
        args += ["--setenv", key, value]
    return args


class SandboxLaunch:
    """
    One sandboxed start, prepared (a context manager: :meth:`close` releases what it holds).

    Holds the descriptors the launcher
    and bwrap read, and, for ``network: user``, what it takes to connect the namespace once the
    process exists. :meth:`start` runs it; the sandbox's init waits until its network is ready.
    """

    def __init__(self, command: list[str], fds: list[int]) -> None:
        self.command = command
        self._fds = fds
        self._view_root: str | None = None
        self._info: tuple[int, int] | None = None  # bwrap's --info-fd pipe (read, write)
        self._block: tuple[int, int] | None = None  # bwrap's --block-fd pipe (read, write)
        self.network: UserNetwork | None = None

    @property
    def pass_fds(self) -> tuple[int, ...]:
        return tuple(self._fds)

    def start(self, *, prefix: Sequence[str] = (), **popen: Any) -> subprocess.Popen[Any]:
        """
        Start the sandbox (``prefix`` runs before the launcher: tests drop to another user with
        it). ``env`` does not matter: the sandbox starts from ``spec.env`` only.
        """
        process = subprocess.Popen([*prefix, *self.command], pass_fds=self.pass_fds, **popen)
        self._close_fds()
        if self._info is not None and self._block is not None:
            try:
                self._connect(process)
            except BaseException:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, signal.SIGKILL)
                process.wait()
                raise
        return process

    def run(self, *, timeout: float, prefix: Sequence[str] = ()) -> subprocess.CompletedProcess[str]:
        """Start, wait and capture (a probe, or a test)."""
        process = self.start(prefix=prefix, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            out, err = process.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.communicate()
            raise
        return subprocess.CompletedProcess(process.args, process.returncode, out, err)

    def _connect(self, process: subprocess.Popen[Any]) -> None:
        from airflow_byo.runner.sandbox_network import attach_user_network

        assert self._info is not None
        assert self._block is not None
        with os.fdopen(self._info[0], "rb") as info:
            self._info = None
            raw = info.read(65536)
        try:
            child_pid = int(json.loads(raw)["child-pid"])
        except (ValueError, KeyError, TypeError):
            raise _sandbox_error(
                f"the sandbox did not start (exit code {process.wait()}); the [processor] lines say why"
            ) from None
        self.network = attach_user_network(child_pid)
        os.write(self._block[1], b"x")  # the sandbox's init now runs the child
        os.close(self._block[1])
        self._block = None

    def _close_fds(self) -> None:
        """Our copies of what the child side inherited (the launcher and bwrap close theirs)."""
        for fd in self._fds:
            with contextlib.suppress(OSError):
                os.close(fd)
        self._fds = []
        if self._info is not None:
            with contextlib.suppress(OSError):
                os.close(self._info[1])
        if self._block is not None:
            with contextlib.suppress(OSError):
                os.close(self._block[0])

    def close(self) -> None:
        self._close_fds()
        for pair in (self._info, self._block):
            if pair is not None:
                for fd in pair:
                    with contextlib.suppress(OSError):
                        os.close(fd)
        self._info = self._block = None
        if self.network is not None:
            self.network.close()
            self.network = None
        if self._view_root is not None:
            with contextlib.suppress(OSError):
                os.rmdir(self._view_root)
            self._view_root = None

    def __enter__(self) -> SandboxLaunch:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def _sandbox_error(message: str) -> Exception:
    from airflow_byo.exceptions import ByoProcessorError

    return ByoProcessorError(message)


def worker_identity() -> SandboxIdentity | None:
    """
    For a root worker, a uid of its own for the next child(ren) (release it when they are gone);
    ``None`` for any other worker, whose children run as its own uid.
    """
    if os.geteuid() != 0:
        return None
    from airflow_byo.provider_config import setting

    return lease_identity(parse_uid_range(setting("sandbox_uid_range")))


def _resolv_conf_fd() -> int | None:
    """A pipe holding the sandbox's resolv.conf for a user-mode network, or None for the host's."""
    from airflow_byo.runner.sandbox_network import sandbox_resolv_conf

    text = sandbox_resolv_conf()
    if text is None:
        return None
    read, write = os.pipe()
    with os.fdopen(write, "w", encoding="utf-8") as pipe:  # a few hundred bytes: the pipe holds them
        pipe.write(text)
    return read


def prepare_sandbox(
    argv: list[str],
    spec: SandboxSpec,
    *,
    identity: SandboxIdentity | None = None,
    launcher_python: str | None = None,
) -> SandboxLaunch:
    """
    The sandboxed start of ``argv`` (starting with ``spec.interpreter``), ready to
    :meth:`~SandboxLaunch.start`.

    :param identity: the child's uid when the worker is root (:func:`worker_identity`): the
        launcher then runs as root, drops to it, and the writable folders are handed to it.
        ``None``: the launcher runs as this process's own, unprivileged, user.
    :param launcher_python: the interpreter that runs the launcher (default: this one).
    :raises ByoConfigError: bwrap or prlimit missing.
    """
    from airflow_byo.runner.sandbox_identity import new_view_root
    from airflow_byo.runner.seccomp_filter import seccomp_fd

    bwrap, prlimit = _tool("bwrap"), _tool("prlimit")
    if bwrap is None or prlimit is None:
        raise _config_error(f"the sandbox needs bwrap and prlimit: {_INSTALL}")
    root = identity is not None
    interpreter_dirs = () if spec.interpreter == "/usr/bin/true" else interpreter_paths(spec.interpreter)
    binds = _open_binds(spec, interpreter_dirs)
    fds = [bind.fd for bind in binds]
    launch = SandboxLaunch([], fds)
    try:
        if identity is not None:
            for bind in binds:
                if bind.writable:  # the child's own folder: its uid owns it
                    os.chown(f"/proc/self/fd/{bind.fd}", identity.uid, identity.gid)
            launch._view_root = new_view_root()
        args = _bwrap_argv(bwrap, spec, binds, launch._view_root)
        seccomp = seccomp_fd()
        fds.append(seccomp)
        args[1:1] = ["--seccomp", str(seccomp)]
        keep = [seccomp] if root else [seccomp, *(bind.fd for bind in binds)]
        if spec.network == "user":
            launch._info, launch._block = os.pipe(), os.pipe()
            args[1:1] = ["--info-fd", str(launch._info[1]), "--block-fd", str(launch._block[0])]
            fds += [launch._info[1], launch._block[0]]
            keep += [launch._info[1], launch._block[0]]
            resolv_conf = _resolv_conf_fd()
            if resolv_conf is not None:  # a host resolver on loopback: the one pasta forwards to
                args += ["--ro-bind-data", str(resolv_conf), "/etc/resolv.conf"]
                fds.append(resolv_conf)
                keep.append(resolv_conf)
        limits = _limits(spec)
        args += ["--", prlimit, *limits, "--", *argv] if limits else ["--", *argv]
        plan = {
            "exec": args,
            "keep_fds": keep,
            "uid": identity.uid if identity else None,
            "gid": identity.gid if identity else None,
            "view_root": launch._view_root,
            "views": [[bind.fd, bind.source, bind.is_dir] for bind in binds] if root else [],
        }
        python = launcher_python or os.path.realpath(sys.executable)
        launch.command = [python, "-I", "-S", _LAUNCHER, json.dumps(plan)]
    except BaseException:
        launch.close()
        raise
    return launch


def describe_exit(returncode: int) -> str:
    """Why the sandboxed child ended. bwrap reports a child killed by signal N as exit code 128+N."""
    if returncode == 126:
        return "the sandbox could not start the processor (exit code 126; the [processor] lines say why)"
    number = returncode - 128 if returncode > 128 else -returncode
    try:
        signum = signal.Signals(number)
    except ValueError:
        return f"the processor exited with code {returncode}"
    if signum == signal.SIGKILL:
        return "the processor was killed by signal SIGKILL: the memory cap, a limit, or the worker's own kill"
    return f"the processor was killed by signal {signum.name}"
