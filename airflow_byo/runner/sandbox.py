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

This module holds what a sandbox may see and do (:class:`SandboxSpec`) and its prepared start
(:func:`prepare_sandbox`, :class:`SandboxLaunch`); :mod:`.sandbox_command` builds bwrap's
command line, and :mod:`.sandbox_mode` decides from ``[byo] sandbox`` whether children run in one.

Stdlib only at import: the worker imports it, and tests run it without Airflow.
"""

from __future__ import annotations

import contextlib
import json
import marshal
import os
import signal
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from airflow_byo.runner.sandbox_command import (
    INSTALL_BUBBLEWRAP,
    bwrap_and_prlimit,
    bwrap_argv,
    interpreter_paths,
    limits_command,
    open_binds,
)
from airflow_byo.runner.sandbox_errors import config_error, processor_error
from airflow_byo.runner.sandbox_identity import SandboxIdentity, lease_identity, parse_uid_range

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

    from airflow_byo.images.model import ImageRoot
    from airflow_byo.runner.sandbox_command import Bind
    from airflow_byo.runner.sandbox_pasta import UserNetwork

__all__ = [
    "Network",
    "SandboxLaunch",
    "SandboxSpec",
    "describe_exit",
    "prepare_sandbox",
    "worker_identity",
]

Network = Literal["off", "user", "host"]

_LAUNCHER = str(Path(__file__).with_name("sandbox_launcher.py"))


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
    :param mounts: ``(host path, path inside)`` pairs bound read-only elsewhere than at their own
        place (the worker's tools an image sandbox runs, e.g. uv and its libraries for a venv build).
    :param image: an image runtime's unpacked image: its root file system is ``/`` (read-only) instead
        of the host's ``/usr``, its Env and WorkingDir replace ``env`` and ``cwd``, and the
        interpreter (the image's, or its ``image.venv``) is never run on the host (issue 25).
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
    mounts: tuple[tuple[str, str], ...] = ()
    image: ImageRoot | None = None


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
        self._in_use: int | None = None  # an image's in-use lock, held shared while the child lives

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
            raise processor_error(
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
        if self._in_use is not None:
            os.close(self._in_use)
            self._in_use = None

    def __enter__(self) -> SandboxLaunch:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def worker_identity() -> SandboxIdentity | None:
    """
    For a root worker, a uid of its own for the next child(ren) (release it when they are gone);
    ``None`` for any other worker, whose children run as its own uid.
    """
    if os.geteuid() != 0:
        return None
    from airflow_byo.provider_config import setting

    return lease_identity(parse_uid_range(setting("sandbox_uid_range")))


def _hold_shared(path: str) -> int:
    """An open ``flock(LOCK_SH)`` on ``path`` (``airflow byo runtimes prune`` skips what is held)."""
    import fcntl

    fd = os.open(path, os.O_RDONLY | os.O_CREAT | os.O_CLOEXEC, 0o644)
    fcntl.flock(fd, fcntl.LOCK_SH)
    return fd


def _resolv_conf_fd() -> int | None:
    """A pipe holding the sandbox's resolv.conf for a user-mode network, or None for the host's."""
    from airflow_byo.runner.sandbox_dns import sandbox_resolv_conf

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
    bwrap, prlimit = bwrap_and_prlimit()
    if bwrap is None or prlimit is None:
        raise config_error(f"the sandbox needs bwrap and prlimit: {INSTALL_BUBBLEWRAP}")
    if spec.image is not None:  # the image's Python is never run on the host to ask where it lives
        interpreter_dirs: tuple[str, ...] = (spec.image.venv,) if spec.image.venv else ()
    elif spec.interpreter == "/usr/bin/true":
        interpreter_dirs = ()
    else:
        interpreter_dirs = interpreter_paths(spec.interpreter)
    binds = open_binds(spec, interpreter_dirs)
    launch = SandboxLaunch([], [bind.fd for bind in binds])
    try:
        if spec.image is not None and spec.image.in_use:
            launch._in_use = _hold_shared(spec.image.in_use)
        plan = _launch_plan(launch, argv, spec, binds, identity, bwrap=bwrap, prlimit=prlimit)
        python = launcher_python or os.path.realpath(sys.executable)
        launch.command = [python, "-I", "-S", _LAUNCHER, marshal.dumps(plan, 4).hex()]
    except BaseException:
        launch.close()
        raise
    return launch


def _launch_plan(
    launch: SandboxLaunch,
    argv: list[str],
    spec: SandboxSpec,
    binds: list[Bind],
    identity: SandboxIdentity | None,
    *,
    bwrap: str,
    prlimit: str,
) -> dict[str, Any]:
    """
    What the launcher (:mod:`.sandbox_launcher`) does: the bwrap command it execs, the descriptors
    that reach bwrap, the uid it drops to and the folders it mounts for a root worker. Every
    descriptor opened here is added to ``launch``, which closes it.
    """
    from airflow_byo.runner.sandbox_identity import new_view_root
    from airflow_byo.runner.seccomp_filter import seccomp_fd

    root = identity is not None
    if identity is not None:
        for bind in binds:
            if bind.writable:  # the child's own folder: its uid owns it
                os.chown(f"/proc/self/fd/{bind.fd}", identity.uid, identity.gid)
        launch._view_root = new_view_root()
    args = bwrap_argv(bwrap, spec, binds, launch._view_root)
    seccomp = seccomp_fd()
    launch._fds.append(seccomp)
    args[1:1] = ["--seccomp", str(seccomp)]
    keep = [seccomp] if root else [seccomp, *(bind.fd for bind in binds)]
    if spec.network == "user":
        _block_until_connected(launch, args, keep)
    args += ["--", *limits_command(spec, prlimit), *argv]
    return {
        "exec": args,
        "keep_fds": keep,
        "uid": identity.uid if identity else None,
        "gid": identity.gid if identity else None,
        "view_root": launch._view_root,
        "views": [[bind.fd, bind.source, bind.is_dir] for bind in binds] if root else [],
    }


def _block_until_connected(launch: SandboxLaunch, args: list[str], keep: list[int]) -> None:
    """
    ``network: user``: bwrap reports the sandbox's pid (``--info-fd``) and waits (``--block-fd``)
    until :meth:`SandboxLaunch.start` has attached its network; the sandbox's resolv.conf, if the
    host's would not work there.
    """
    launch._info, launch._block = os.pipe(), os.pipe()
    args[1:1] = ["--info-fd", str(launch._info[1]), "--block-fd", str(launch._block[0])]
    launch._fds += [launch._info[1], launch._block[0]]
    keep += [launch._info[1], launch._block[0]]
    resolv_conf = _resolv_conf_fd()
    if resolv_conf is not None:  # a host resolver on loopback: the one pasta forwards to
        args += ["--ro-bind-data", str(resolv_conf), "/etc/resolv.conf"]
        launch._fds.append(resolv_conf)
        keep.append(resolv_conf)


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
