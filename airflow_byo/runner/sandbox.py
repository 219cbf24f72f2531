"""
The sandbox around every child: a bubblewrap (``bwrap``) command line built from a spec.

The child runs in new user, PID, mount, IPC, UTS, cgroup and (unless the flow turns network on)
network namespaces, as uid/gid 65534 with no capabilities, and sees only what the spec binds --
each path at its own location, so the child protocol's paths stay valid -- over a read-only empty
root (issue #12). Stdlib only at import: the worker imports it, and tests run it without Airflow.

Identity: the sandbox uid 65534 maps to the worker's own uid on the host (a user namespace, so
bwrap needs no setuid bit). Files the child writes are therefore owned by the worker and it can
read and ``os.replace`` them; and the worker's own 0600/0700 files (``/root`` holding pyenv, the
venv cache) can be bound. A root worker thus runs the child as host uid 0 *without* any
capability; the kernel exempts uid 0 from RLIMIT_NPROC, so ``max_processes`` is only enforced for
an ordinary-user worker (see :func:`limits_warning`) -- production images run Airflow as a user.
"""

from __future__ import annotations

import functools
import os
import shutil
import signal
import subprocess
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:
    from collections.abc import Mapping

__all__ = [
    "SANDBOX_UID",
    "SandboxSpec",
    "bubblewrap_status",
    "describe_exit",
    "interpreter_paths",
    "limits_warning",
    "resolve_mode",
    "sandbox_command",
    "sandbox_mode",
]

SANDBOX_UID = 65534  # "nobody" inside; mapped to the worker's uid outside
MODES = ("required", "auto", "off")
Mode = Literal["required", "auto", "off"]
InEffect = Literal["bubblewrap", "off"]

_INSTALL = "install the Debian package bubblewrap (apt-get install -y bubblewrap)"


@dataclass(frozen=True)
class SandboxSpec:
    """
    What one sandboxed child may see and do.

    :param interpreter: the child's Python; its venv folder and base installation are bound read-only.
    :param read_only: paths bound read-only at the same place (runtime copy, inputs, sys_path folders).
    :param writable: paths bound read-write at the same place (the output staging directory).
    :param network: share the worker's network (and DNS/TLS config); off = loopback only.
    :param env: the complete environment of the child (already allow-listed by the caller).
    :param cwd: working directory inside; must be ``/tmp`` or inside a bound path.
    :param cpu_seconds: RLIMIT_CPU of the child (a lifetime total; SIGXCPU when hit).
    :param max_processes: RLIMIT_NPROC: processes *and threads*, bwrap's init and the child included.
    :param max_file_bytes: RLIMIT_FSIZE: largest file the child may write (``OSError: File too large``).
    :param tmp_bytes: size cap of the private ``/tmp`` and ``/dev/shm`` (tmpfs is RAM, not in RLIMIT_AS).
    """

    interpreter: str
    read_only: tuple[str, ...] = ()
    writable: tuple[str, ...] = ()
    network: bool = False
    env: Mapping[str, str] = field(default_factory=dict)
    cwd: str = "/tmp"
    cpu_seconds: int | None = None
    max_processes: int | None = None
    max_file_bytes: int | None = None
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
def _bwrap_features(bwrap: str) -> frozenset[str]:
    """Options this bwrap knows: --disable-userns (0.8) and --size (0.5) are not in older ones."""
    result = subprocess.run([bwrap, "--help"], capture_output=True, text=True, timeout=10)
    text = result.stdout + result.stderr
    return frozenset(opt for opt in ("--disable-userns", "--size", "--perms") if opt in text)


@functools.cache
def bubblewrap_status() -> tuple[bool, str]:
    """
    Whether bwrap exists *and* can build a sandbox here (one trivial sandboxed ``true``, cached).

    :return: ``(True, "bubblewrap <version>")`` or ``(False, "<why>; <how to fix>")``.
    """
    bwrap, prlimit = _tool("bwrap"), _tool("prlimit")
    if bwrap is None:
        return False, f"bubblewrap (bwrap) is not installed: {_INSTALL}"
    if prlimit is None:  # the limits are applied inside the sandbox by util-linux's prlimit
        return False, "prlimit is not installed: install the Debian package util-linux"
    probe = SandboxSpec(interpreter="/usr/bin/true")
    argv = [*_bwrap_argv(bwrap, probe, interpreter_dirs=()), "/usr/bin/true"]
    try:
        result = subprocess.run(argv, capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return False, f"bubblewrap ({bwrap}) could not run: {exc}"
    if result.returncode != 0:
        why = result.stderr.strip().splitlines()[-1:] or [f"exit code {result.returncode}"]
        return False, (
            f"bubblewrap ({bwrap}) cannot create a sandbox here: {why[0]}. Unprivileged user "
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


def _system_binds(network: bool) -> list[str]:
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
    if network:  # name resolution and TLS trust, only when the flow may use the network
        etc += ["/etc/resolv.conf", "/etc/hosts", "/etc/nsswitch.conf", "/etc/host.conf"]
        etc += ["/etc/gai.conf", "/etc/ssl/certs", "/etc/ssl/openssl.cnf", "/etc/ca-certificates"]
        etc += ["/etc/pki/tls/certs", "/etc/pki/ca-trust"]  # RHEL-style trust stores
    for path in etc:
        args += ["--ro-bind-try", path, path]  # -try: not every distribution has every file
    return args


def _bwrap_argv(bwrap: str, spec: SandboxSpec, interpreter_dirs: tuple[str, ...]) -> list[str]:
    features = _bwrap_features(bwrap)
    # env -i: bwrap's own environment is readable in the sandbox as /proc/1/environ (bwrap is the
    # namespace's init), so bwrap must start with none; --setenv below gives the child its own.
    args = [_tool("env") or "/usr/bin/env", "-i", bwrap]
    args += ["--unshare-user", "--uid", str(SANDBOX_UID), "--gid", str(SANDBOX_UID)]
    if "--disable-userns" in features:  # no nested user namespaces: less kernel attack surface
        args.append("--disable-userns")
    args += ["--unshare-pid", "--unshare-ipc", "--unshare-uts", "--unshare-cgroup-try"]
    if not spec.network:
        args.append("--unshare-net")  # a network namespace with only a loopback of its own
    args += ["--hostname", "byo-sandbox", "--cap-drop", "ALL"]
    # Not --as-pid-1: bwrap stays the namespace's init and exits when the child does; the kernel
    # then kills every process left in the namespace (daemons, background forks), so the pipes
    # close at once and the worker sees the crash. --die-with-parent: a killed worker (or a
    # SIGKILL to the outer bwrap) takes the whole namespace with it. --new-session: no TIOCSTI
    # keystroke injection into a terminal, harmless for the pipe protocol.
    args += ["--die-with-parent", "--new-session"]
    args += ["--proc", "/proc", "--dev", "/dev"]  # /proc of the new PID namespace; null, urandom...
    size = ["--size", str(spec.tmp_bytes)] if "--size" in features else []
    perms = ["--perms", "1777"] if "--perms" in features else []
    args += [*perms, *size, "--tmpfs", "/tmp", *perms, *size, "--tmpfs", "/dev/shm"]
    args += ["--remount-ro", "/dev"]  # bwrap's /dev is an uncapped tmpfs: no files in RAM there
    args += _system_binds(spec.network)
    read_only = {os.path.abspath(p) for p in spec.read_only}
    writable = {os.path.abspath(p) for p in spec.writable}
    if read_only & writable:
        raise ValueError(f"paths both read-only and writable in the sandbox: {sorted(read_only & writable)}")
    if not any(_inside(spec.cwd, p) for p in ("/tmp", *read_only, *writable)):
        raise ValueError(f"the sandbox's cwd {spec.cwd!r} is not inside /tmp or a bound path")
    # An interpreter under /usr (Debian's python3) is already there with /usr.
    binds = dict.fromkeys((p for p in interpreter_dirs if not _inside(p, "/usr")), "--ro-bind")
    binds |= dict.fromkeys(read_only, "--ro-bind") | dict.fromkeys(writable, "--bind")
    # Parents before children, so a read-only input folder inside a writable one stays read-only.
    for path, option in sorted(binds.items(), key=lambda item: (item[0].count("/"), item[0])):
        args += [option, path, path]
    args += ["--remount-ro", "/"]  # the root itself (and mount points bwrap made) read-only
    args += ["--chdir", spec.cwd]
    env = {**spec.env, "HOME": "/tmp", "TMPDIR": "/tmp"}  # the host's HOME/TMPDIR are not there
    for key, value in env.items():
        args += ["--setenv", key, value]
    return args


def sandbox_command(argv: list[str], spec: SandboxSpec) -> list[str]:
    """
    The command line that runs ``argv`` (starting with ``spec.interpreter``) in the sandbox.

    Start it like the unsandboxed command (``subprocess.Popen(..., start_new_session=True)``;
    ``env`` does not matter, the sandbox starts from ``spec.env`` only). Requires a working
    :func:`bubblewrap_status`. Limits are set by ``prlimit`` inside the namespaces: set on bwrap
    before it creates the user namespace, RLIMIT_NPROC would also count the worker's processes.
    """
    bwrap, prlimit = _tool("bwrap"), _tool("prlimit")
    if bwrap is None or prlimit is None:
        raise _config_error(f"the sandbox needs bwrap and prlimit: {_INSTALL}")
    args = _bwrap_argv(bwrap, spec, interpreter_paths(spec.interpreter))
    limits = []
    if spec.cpu_seconds is not None:  # SIGXCPU at the soft limit, SIGKILL a second later
        limits.append(f"--cpu={spec.cpu_seconds}:{spec.cpu_seconds + 1}")
    if spec.max_processes is not None:
        limits.append(f"--nproc={spec.max_processes}")
    if spec.max_file_bytes is not None:
        limits.append(f"--fsize={spec.max_file_bytes}")
    if limits:
        return [*args, "--", prlimit, *limits, "--", *argv]
    return [*args, "--", *argv]


def limits_warning(spec: SandboxSpec) -> str | None:
    """A warning when a limit of ``spec`` cannot be enforced for this worker, else None."""
    if spec.max_processes is not None and os.geteuid() == 0:
        return (
            f"job_config.max_processes={spec.max_processes} is not enforced: the worker runs as "
            "root and Linux does not apply RLIMIT_NPROC to uid 0. Run the worker as an ordinary "
            "user, or cap it from outside (docker --pids-limit, systemd TasksMax=)"
        )
    return None


def describe_exit(returncode: int, spec: SandboxSpec) -> str:
    """Why the sandboxed child ended. bwrap reports a child killed by signal N as exit code 128+N."""
    number = returncode - 128 if returncode > 128 else -returncode
    try:
        signum = signal.Signals(number)
    except ValueError:
        return f"the processor exited with code {returncode}"
    if signum == signal.SIGXCPU:
        return (
            f"the processor used up its CPU time, job_config.cpu_seconds={spec.cpu_seconds} (a total "
            "for the child process): raise it or make the function faster"
        )
    if signum == signal.SIGKILL and spec.cpu_seconds is not None:
        return (
            "the processor was killed by SIGKILL: the hard CPU limit (job_config.cpu_seconds="
            f"{spec.cpu_seconds} plus 1 s), the memory cap, or the worker's own kill"
        )
    return f"the processor was killed by signal {signum.name}"
