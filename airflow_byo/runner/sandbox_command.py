"""
bubblewrap's command line for one sandbox (see :mod:`.sandbox` for what the sandbox is).

Where ``bwrap`` and ``prlimit`` are; the folders the interpreter needs; the namespaces; the
host's programs and libraries and the few ``/etc`` files bound read-only; the sandbox's own
``/proc`` with the kernel's knobs read-only or masked; ``/tmp``, ``/dev`` and ``/dev/shm``; the
spec's folders, each opened by the worker and bound from its descriptor; and the ``prlimit``
options for the spec's limits.

Stdlib only at import: the worker imports it, and tests run it without Airflow.
"""

from __future__ import annotations

import functools
import os
import shutil
import subprocess
import threading
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Sequence

    from airflow_byo.images.model import ImageRoot
    from airflow_byo.runner.sandbox import Network, SandboxSpec

__all__ = [
    "INSTALL_BUBBLEWRAP",
    "SANDBOX_UID",
    "Bind",
    "bwrap_and_prlimit",
    "bwrap_argv",
    "interpreter_paths",
    "limits_command",
    "open_binds",
    "prlimit_options",
]

SANDBOX_UID = 65534  # "nobody" inside
INSTALL_BUBBLEWRAP = "install the Debian package bubblewrap (apt-get install -y bubblewrap)"

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


@functools.cache
def _tool(name: str) -> str | None:
    found = shutil.which(name, path=os.environ.get("PATH", "") + ":/usr/bin:/bin:/usr/sbin")
    return os.path.realpath(found) if found else None


def bwrap_and_prlimit() -> tuple[str | None, str | None]:
    """The real paths of ``bwrap`` and util-linux's ``prlimit``; ``None`` for one not installed."""
    return _tool("bwrap"), _tool("prlimit")


#: One question to an interpreter at a time: children starting side by side (and the warm-up of
#: :func:`~airflow_byo.runner.start_up.environment_and_sandbox`) wait for its answer, not ask again.
_ASKING = threading.Lock()


def interpreter_paths(python: str) -> tuple[str, ...]:
    """
    The folders ``python`` needs read-only: its venv (if it is one) and its base installation.

    The base is asked of the interpreter itself (``-I -S``: no site-packages, no ``.pth`` files, so
    none of the flow's packages runs outside the sandbox), once per path; a venv is recognised the
    way Python does, by ``pyvenv.cfg`` next to the executable or one level up.
    """
    with _ASKING:
        return _interpreter_paths(os.path.abspath(python))


@functools.cache
def _interpreter_paths(python: str) -> tuple[str, ...]:
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
class Bind:
    """One folder (or file) for the sandbox, opened by the worker: bound from this descriptor."""

    dest: str
    source: str
    fd: int
    is_dir: bool
    writable: bool


def open_binds(spec: SandboxSpec, interpreter_dirs: Sequence[str]) -> list[Bind]:
    """Open every folder the sandbox binds (the caller closes their descriptors)."""
    read_only = {os.path.abspath(p) for p in spec.read_only}
    writable = {os.path.abspath(p) for p in spec.writable}
    if read_only & writable:
        raise ValueError(f"paths both read-only and writable in the sandbox: {sorted(read_only & writable)}")
    if spec.image is None and not any(_inside(spec.cwd, p) for p in ("/tmp", *read_only, *writable)):
        raise ValueError(f"the sandbox's cwd {spec.cwd!r} is not inside /tmp or a bound path")
    # An interpreter under /usr (Debian's python3) is already there with /usr (not in an image).
    usr = "/usr" if spec.image is None else "/nonexistent"
    wanted = {p: (p, False) for p in interpreter_dirs if not _inside(p, usr)}
    wanted |= {p: (p, False) for p in read_only} | {p: (p, True) for p in writable}
    wanted |= {dest: (os.path.abspath(source), False) for source, dest in spec.mounts}
    if spec.image is not None:  # the image's root: "/" here, the root of the sandbox's file system
        wanted = {"/": (spec.image.root, False)} | wanted
    binds: list[Bind] = []
    try:
        # Parents before children, so a read-only input folder inside a writable one stays read-only.
        for dest, (source, rw) in sorted(wanted.items(), key=lambda item: (item[0].count("/"), item[0])):
            fd = os.open(source, os.O_PATH | os.O_CLOEXEC)
            binds.append(
                Bind(dest, os.readlink(f"/proc/self/fd/{fd}"), fd, os.path.isdir(f"/proc/self/fd/{fd}"), rw)
            )
    except BaseException:
        for bind in binds:
            os.close(bind.fd)
        raise
    return binds


def limits_command(spec: SandboxSpec, prlimit: str) -> list[str]:
    """
    What runs before the command to set the spec's limits: ``prlimit``, or in an image (which has
    no prlimit of the worker's) the image's own Python; nothing without limits.
    """
    limits = prlimit_options(spec)
    if not limits:
        return []
    if spec.image is None:
        return [prlimit, *limits, "--"]
    from airflow_byo.images.sandbox_root import limits_prefix

    names = {"--nproc": "NPROC", "--fsize": "FSIZE", "--as": "AS"}
    values = {names[option]: int(value) for option, value in (limit.split("=") for limit in limits)}
    return limits_prefix(spec.interpreter, values)


def prlimit_options(spec: SandboxSpec) -> list[str]:
    """``prlimit``'s options for the spec's limits (none: the child starts without prlimit)."""
    limits = []
    if spec.max_processes is not None:
        limits.append(f"--nproc={spec.max_processes}")
    if spec.max_file_bytes is not None:
        limits.append(f"--fsize={spec.max_file_bytes}")
    if spec.max_memory_bytes is not None:
        limits.append(f"--as={spec.max_memory_bytes}")
    return limits


def bwrap_argv(bwrap: str, spec: SandboxSpec, binds: list[Bind], view_root: str | None) -> list[str]:
    """
    bwrap and its options, up to the command (the caller adds seccomp, network and the command).

    :param view_root: where a root worker's launcher mounts the binds (``<view_root>/<n>``);
        ``None``: bwrap binds them from their descriptors.
    """
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
    if spec.image is not None:  # first: everything else is mounted over the image's root
        args += _image_root(spec, spec.image, binds, view_root)
    args += ["--proc", "/proc", *_proc_protection(), "--dev", "/dev"]
    size = ["--size", str(spec.tmp_bytes)]
    args += ["--perms", "1777", *size, "--tmpfs", "/tmp", "--perms", "1777", *size, "--tmpfs", "/dev/shm"]
    args += ["--remount-ro", "/dev"]  # bwrap's /dev is an uncapped tmpfs: no files in RAM there
    args += _system_binds(spec.network) if spec.image is None else _network_files(spec.network)
    for index, bind in enumerate(binds):
        if bind.dest == "/":  # the image's root, shown above
            continue
        if view_root is not None:  # a root worker: the launcher mounted it at <view_root>/<n>
            option = "--bind" if bind.writable else "--ro-bind"
            args += [option, f"{view_root}/{index}", bind.dest]
        else:
            option = "--bind-fd" if bind.writable else "--ro-bind-fd"
            args += [option, str(bind.fd), bind.dest]
    args += ["--remount-ro", "/"]  # the root itself (and mount points bwrap made) read-only
    if spec.image is not None:  # the image's WorkingDir and Env, nothing of the worker's
        args += ["--chdir", spec.image.workdir]
        env = spec.image.environment()
    else:
        args += ["--chdir", spec.cwd]
        env = {**spec.env, "HOME": "/tmp", "TMPDIR": "/tmp"}  # the host's HOME/TMPDIR are not there
    for key, value in env.items():
        args += ["--setenv", key, value]
    return args


#: The host's files an image's sandbox gets when the flow may use the network (as container
#: runtimes give a container the host's resolver and hosts file; certificates stay the image's).
_NETWORK_FILES = ("/etc/resolv.conf", "/etc/hosts")


def _network_files(network: Network) -> list[str]:
    args: list[str] = []
    for path in _NETWORK_FILES if network != "off" else ():
        args += ["--ro-bind-try", path, path]
    return args


def _image_root(spec: SandboxSpec, image: ImageRoot, binds: list[Bind], view_root: str | None) -> list[str]:
    """The image's root file system at /, with room for the binds and network files that follow."""
    from airflow_byo.images.sandbox_root import image_root_args

    index, root = next((n, bind) for n, bind in enumerate(binds) if bind.dest == "/")
    source = f"{view_root}/{index}" if view_root is not None else root.source
    mount_points = [bind.dest for bind in binds if bind.dest != "/"]
    if spec.network != "off":
        mount_points += _NETWORK_FILES
    return image_root_args(image.root, source, mount_points)
