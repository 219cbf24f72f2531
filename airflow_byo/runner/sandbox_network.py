"""
Network on, but not the host: a sandbox's own network namespace, connected outward by pasta.

A child with ``network: true`` still gets bwrap's ``--unshare-net``; the worker then attaches pasta
(Debian ``passt``), a user-mode TCP/IP stack, to that namespace (issue #21, item 8). pasta puts a tap
interface in the namespace with the host's address, gateway and routes (``--config-net``) and
replays the child's TCP/UDP/ICMP flows through ordinary sockets of its own on the host. Stdlib only at
import: the worker imports it next to ``sandbox``.

What the child can and cannot reach:

- Outbound TCP, UDP and ping to other machines work, as if the host made the connection (source
  address: the host's). Attaching costs ~40-50 ms; a 200 MiB HTTP download ran at ~550-650 MB/s
  through pasta against ~1,000 MB/s on the shared network (2-core VM, server and child on one host).
- The host's loopback is not reachable: ``127.0.0.1`` in the namespace is the namespace's own, and
  ``--no-map-gw`` turns off pasta's default of mapping connections to the gateway address to the
  host's ``127.0.0.1``. No port is forwarded in either direction: ``-T``/``-U`` default to ``auto``,
  which would make every port the host listens on at ``127.0.0.1`` appear on the namespace's
  loopback, and ``-t``/``-u`` ``auto`` would expose the child's listening ports on the host.
- Abstract unix sockets (``@/tmp/.X11-unix``, dbus, container shims) belong to the network
  namespace, so the host's are not there; pasta carries IP only.
- The host's address on its outbound interface is copied into the namespace, so connecting to it
  reaches the namespace itself, not the host. **The host's other addresses are reachable**: pasta
  connects to them from the host, so a host service listening on ``0.0.0.0``/``::`` answers on
  any other interface's address (a docker bridge, a VPN, a second NIC, IPv6 link-local) -- the
  same as any machine on those networks would see it. Listen on ``127.0.0.1`` to keep a service
  from sandboxes; a cloud metadata service (``169.254.169.254``) is reachable as from the host.

DNS: a resolver on the host's loopback is not reachable from the namespace; pasta forwards the
sandbox's queries to it (:mod:`.sandbox_dns`).

Lifetime: pasta runs in the foreground as the worker's child, as the uid that owns the sandbox's
user namespace (the worker, or the sandbox uid a root worker started bwrap as; uid 0 only if bwrap
itself ran as root), in the sandbox's user namespace (its capabilities end there), an empty mount
namespace and a seccomp filter of its own; the child cannot see it (another PID namespace). pasta
stops when the sandbox ends, or earlier on :meth:`~.sandbox_pasta.UserNetwork.close` (the running
pasta is :mod:`.sandbox_pasta`'s). A killed worker takes pasta along (parent-death signal) -- like
bwrap's ``--die-with-parent``, that is the death of the *thread* that called
:func:`attach_user_network`: call it from the thread that started bwrap. Its files (log, readiness
FIFO) are unlinked as soon as it is ready, so a killed worker leaves none.

This module holds the availability probe and the attach (namespaces, who pasta runs as, its
command line); :mod:`.sandbox_pasta` the running pasta, :mod:`.sandbox_dns` the DNS side.
"""

from __future__ import annotations

import contextlib
import fcntl
import functools
import os
import shutil
import struct
import subprocess
import tempfile
import time

from airflow_byo.runner.sandbox_dns import DNS_FORWARD_ADDRESS, forwards_dns
from airflow_byo.runner.sandbox_errors import processor_error
from airflow_byo.runner.sandbox_pasta import (
    PastaOutput,
    UserNetwork,
    pasta_file_options,
    pasta_files,
    wait_until_ready,
)

__all__ = ["attach_user_network", "pasta_status"]

# What keeps the host out (see the module docstring); a module constant so that the tests can
# show each option matters by dropping it.
ISOLATION_OPTIONS: tuple[str, ...] = ("--no-map-gw", "-t", "none", "-u", "none", "-T", "none", "-U", "none")

_INSTALL = "install the Debian package passt (apt-get install -y passt)"
_NS_GET_USERNS = 0xB701  # ioctl _IO(0xb7, 0x1): the user namespace that owns a namespace
_NS_GET_OWNER_UID = 0xB704  # ioctl _IO(0xb7, 0x4): the uid that created a user namespace


def _tool(name: str) -> str | None:
    # Not realpath'd: /usr/bin/pasta is a link to passt, which picks its mode from its argv[0].
    return shutil.which(name, path=os.environ.get("PATH", "") + ":/usr/bin:/bin:/usr/sbin:/sbin")


# --- availability -----------------------------------------------------------------------------------


@functools.cache
def pasta_status() -> tuple[bool, str]:
    """
    Whether pasta exists *and* can connect a namespace here (one trial attach, cached).

    :return: ``(True, "pasta <path>")`` or ``(False, "<why>; <how to fix>")``.
    """
    pasta, setpriv, unshare = _tool("pasta"), _tool("setpriv"), _tool("unshare")
    if pasta is None:
        return False, f"pasta is not installed; {_INSTALL}"
    if setpriv is None or unshare is None:  # setpriv starts pasta; unshare makes the trial namespace
        return False, "setpriv/unshare are not installed; install the Debian package util-linux"
    # A throwaway user + network namespace, as bwrap makes them (a root worker: as an unprivileged
    # uid, like the sandbox's); it waits on stdin, so it ends with us.
    drop = [setpriv, "--reuid=65534", "--regid=65534", "--clear-groups", "--"] if os.geteuid() == 0 else []
    holder = subprocess.Popen(
        [*drop, unshare, "--user", "--map-root-user", "--net", "--", "/bin/sh", "-c", "echo ready; read _"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        if holder.stdout is None or holder.stdout.readline().strip() != "ready":
            why = (holder.communicate(timeout=10)[1] or "").strip() or f"exit code {holder.returncode}"
            return False, f"cannot create a user and network namespace for pasta: {why}"
        with attach_user_network(holder.pid, timeout=10) as network:
            network.check_configured()
    except Exception as exc:  # noqa: BLE001 -- any failure means "not usable", with its message
        return False, f"{exc}; pasta needs /dev/net/tun and user namespaces, and {_INSTALL}"
    finally:
        if holder.poll() is None:  # still waiting on stdin: release it
            with contextlib.suppress(OSError, ValueError, subprocess.TimeoutExpired):
                holder.communicate("\n", timeout=10)
        if holder.poll() is None:
            holder.kill()
            holder.wait()
    return True, f"pasta {pasta}"


# --- attaching --------------------------------------------------------------------------------------


def _open_namespaces(pid: int) -> tuple[int, int, int]:
    """The sandbox's network namespace, the user namespace owning it, and that one's owner uid."""
    try:
        net = os.open(f"/proc/{pid}/ns/net", os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        raise processor_error(f"cannot attach the network: the sandbox process {pid} is gone") from None
    except PermissionError:
        raise processor_error(
            f"cannot attach the network: no access to the namespaces of process {pid}; the worker "
            f"(uid {os.geteuid()}) must run as root or as the user that started bwrap"
        ) from None
    try:
        if os.fstat(net).st_ino == os.stat("/proc/self/ns/net").st_ino:
            raise processor_error(
                f"process {pid} shares the worker's network namespace: start bwrap with --unshare-net "
                "and attach to the pid from its --info-fd"
            )
        # Not /proc/PID/ns/user: bwrap nests the child in a second user namespace, and only the
        # outer one -- which owns the network namespace -- lets pasta configure it.
        user = fcntl.ioctl(net, _NS_GET_USERNS)
    except BaseException:
        os.close(net)
        raise
    try:
        owner = struct.unpack("I", fcntl.ioctl(user, _NS_GET_OWNER_UID, bytes(4)))[0]
        if os.fstat(user).st_ino == os.stat("/proc/self/ns/user").st_ino:
            raise processor_error(
                f"the network namespace of process {pid} belongs to the worker's own user namespace "
                "(bwrap run with privileges?): pasta can only join one the sandbox owns"
            )
    except BaseException:
        os.close(net)
        os.close(user)
        raise
    return net, user, owner


def _launcher(setpriv: str, owner: int, gid: int) -> tuple[list[str], list[str]]:
    """The setpriv prefix that starts pasta as the namespace's owner, and pasta's own --runas."""
    if os.geteuid() != 0:
        if owner != os.geteuid():
            raise processor_error(
                f"the sandbox's user namespace belongs to uid {owner}, the worker runs as uid "
                f"{os.geteuid()}: pasta can only join it as root or as uid {owner}"
            )
        return [setpriv, "--pdeathsig=KILL", "--"], []
    if owner == 0:  # bwrap itself ran as root: pasta must stay uid 0 (only in its own, empty mounts)
        return [setpriv, "--pdeathsig=KILL", "--"], ["--runas", "0:0"]
    # Drop to the sandbox's uid *before* pasta starts: setpriv sets the parent-death signal after
    # the uid change, which would clear it (and pasta's own --runas would, too).
    drop = [f"--reuid={owner}", f"--regid={gid}", "--clear-groups"]
    return [setpriv, *drop, "--pdeathsig=KILL", "--"], []


def attach_user_network(pid: int, *, timeout: float = 10.0) -> UserNetwork:
    """
    Connect the network namespace of ``pid`` (bwrap's ``child-pid``) outward through pasta.

    Returns once the namespace has its address, routes and DNS forwarding; start the command then
    (write bwrap's ``--block-fd``). The worker must be root or the user that started bwrap.

    :param pid: a process in the sandbox, blocked before the command runs.
    :param timeout: seconds to wait for pasta to configure the namespace.
    :raises ByoProcessorError: naming what failed, with pasta's own message.
    """
    started = time.monotonic()
    pasta, setpriv = _tool("pasta"), _tool("setpriv")
    if pasta is None or setpriv is None:
        raise processor_error(f"network: true needs pasta and setpriv: {_INSTALL} and util-linux")
    try:
        sandbox_fd = os.pidfd_open(pid)
    except ProcessLookupError:
        raise processor_error(f"cannot attach the network: the sandbox process {pid} is gone") from None
    net = user = ready = -1
    workdir = None
    output: PastaOutput | None = None
    process: subprocess.Popen[bytes] | None = None
    try:
        net, user, owner = _open_namespaces(pid)
        gid = _sandbox_gid(pid, owner)
        prefix, runas = _launcher(setpriv, owner, gid)
        workdir = tempfile.mkdtemp(prefix="byo-pasta-")
        ready, output = pasta_files(workdir, owner if os.geteuid() == 0 else -1, gid)
        process = subprocess.Popen(
            _pasta_argv(pasta, prefix, runas, workdir, user=user, net=net),
            stdin=subprocess.DEVNULL,
            stdout=output.stderr,
            stderr=output.stderr,
            pass_fds=(net, user),
            env={},
        )
        wait_until_ready(process, ready, output, pid, timeout)
        network = UserNetwork(pid, process, sandbox_fd, output)
    except BaseException:
        if process is not None and process.poll() is None:
            process.kill()
            process.wait()
        if output is not None:
            output.close()
        os.close(sandbox_fd)
        raise
    finally:
        for fd in (net, user, ready):
            if fd >= 0:
                os.close(fd)
        if workdir is not None:  # pasta holds its files open: nothing is left if the worker dies
            shutil.rmtree(workdir, ignore_errors=True)
    network.attach_ms = (time.monotonic() - started) * 1000
    return network


def _sandbox_gid(pid: int, owner: int) -> int:
    """
    The sandbox's gid on the host (bwrap's own); a process not owned by the namespace's owner
    (not dumpable) has no useful one: then the gid is taken equal to the uid.
    """
    status = os.stat(f"/proc/{pid}")
    return status.st_gid if status.st_uid == owner else owner


def _pasta_argv(
    pasta: str, prefix: list[str], runas: list[str], workdir: str, *, user: int, net: int
) -> list[str]:
    """pasta's command line: started through ``prefix``, joining the namespaces open as ``user``, ``net``."""
    argv = [*prefix, pasta, "--foreground", "--quiet", "--config-net", *ISOLATION_OPTIONS]
    if forwards_dns():
        argv += ["--dns-forward", DNS_FORWARD_ADDRESS]
    # Foreground: pasta stays our child, so the parent-death signal and close() reach it. Its
    # pid "file" is a FIFO we read: pasta writes it once the namespace is configured.
    argv += pasta_file_options(workdir)
    argv += [*runas, "--userns", f"/proc/self/fd/{user}", "--netns", f"/proc/self/fd/{net}"]
    return argv
