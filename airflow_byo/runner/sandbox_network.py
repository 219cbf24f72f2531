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

DNS: the sandbox reads the host's ``/etc/resolv.conf``. A resolver on another machine just works.
A resolver on the host's loopback (systemd-resolved's ``127.0.0.53``, dnsmasq's ``127.0.0.1``)
is not reachable from the namespace, so :func:`sandbox_resolv_conf` gives the sandbox a copy that
names :data:`DNS_FORWARD_ADDRESS` instead, and pasta (``--dns-forward``) sends UDP port 53 to that
address -- and only that -- to the host's first IPv4 resolver. DNS over TCP is not forwarded:
answers too big for one datagram (512 bytes, ~1200 with ``options edns0``), which the resolver
truncates for a retry over TCP, fail.

Lifetime: pasta runs in the foreground as the worker's child, as the uid that owns the sandbox's
user namespace (the worker, or the sandbox uid a root worker started bwrap as; uid 0 only if bwrap
itself ran as root), in the sandbox's user namespace (its capabilities end there), an empty mount
namespace and a seccomp filter of its own; the child cannot see it (another PID namespace). pasta
does not notice on its own that the sandbox ended (it holds the namespace open), so a thread per
network waits on the sandbox's pidfd and stops pasta then; :meth:`UserNetwork.close` stops it
earlier. A killed worker takes pasta along (parent-death signal) -- like bwrap's
``--die-with-parent``, that is the death of the *thread* that called :func:`attach_user_network`:
call it from the thread that started bwrap. Its files (log, readiness FIFO) are unlinked as soon
as it is ready, so a killed worker leaves none.
"""

from __future__ import annotations

import contextlib
import fcntl
import functools
import ipaddress
import os
import select
import shutil
import signal
import struct
import subprocess
import tempfile
import threading
import time

__all__ = ["DNS_FORWARD_ADDRESS", "UserNetwork", "attach_user_network", "pasta_status", "sandbox_resolv_conf"]

#: Where a sandbox sends DNS queries when the host's resolver is on its loopback. Link-local, so it
#: names no real machine, and it is not the cloud metadata address (169.254.169.254).
DNS_FORWARD_ADDRESS = "169.254.1.53"

# What keeps the host out (see the module docstring); a module constant so that the tests can
# show each option matters by dropping it.
ISOLATION_OPTIONS: tuple[str, ...] = ("--no-map-gw", "-t", "none", "-u", "none", "-T", "none", "-U", "none")

_INSTALL = "install the Debian package passt (apt-get install -y passt)"
_NS_GET_USERNS = 0xB701  # ioctl _IO(0xb7, 0x1): the user namespace that owns a namespace
_NS_GET_OWNER_UID = 0xB704  # ioctl _IO(0xb7, 0x4): the uid that created a user namespace
_HOST_RESOLV_CONF = "/etc/resolv.conf"  # pasta reads this path itself; it cannot be told another


def _tool(name: str) -> str | None:
    # Not realpath'd: /usr/bin/pasta is a link to passt, which picks its mode from its argv[0].
    return shutil.which(name, path=os.environ.get("PATH", "") + ":/usr/bin:/bin:/usr/sbin:/sbin")


def _error(message: str) -> Exception:
    # The project's errors import Airflow; only build one when there is something to raise.
    from airflow_byo.exceptions import ByoProcessorError

    return ByoProcessorError(message)


# --- DNS ------------------------------------------------------------------------------------------


def _forwarded_resolver(resolv_conf: str) -> str | None:
    """The host resolver pasta forwards to, if the sandbox cannot reach it directly, else None.

    pasta forwards to the *first* IPv4 ``nameserver`` of the file, so only that one decides.
    """
    for line in resolv_conf.splitlines():
        fields = line.split()
        if len(fields) < 2 or fields[0] != "nameserver":
            continue
        try:
            address = ipaddress.ip_address(fields[1].split("%")[0])
        except ValueError:
            continue
        if address.version == 4:
            return str(address) if address.is_loopback else None
    return None


def _read(path: str) -> str:
    try:
        with open(path, encoding="utf-8", errors="replace") as handle:
            return handle.read()
    except OSError:
        return ""  # no resolver configured: the sandbox has none either


def sandbox_resolv_conf(path: str = _HOST_RESOLV_CONF) -> str | None:
    """
    What the sandbox's ``/etc/resolv.conf`` must say, when the host's own file would not work.

    :param path: the host's resolver configuration (the default is the only one pasta reads).
    :return: ``None`` when the host's file can be bound as it is (its first IPv4 resolver is on
        another machine); else a copy naming :data:`DNS_FORWARD_ADDRESS` first, without the
        loopback resolvers, keeping ``search``/``options`` -- bind it read-only at ``/etc/resolv.conf``.
    """
    text = _read(path)
    if _forwarded_resolver(text) is None:
        return None
    lines = [f"nameserver {DNS_FORWARD_ADDRESS}  # the host's resolver, forwarded by pasta"]
    for line in text.splitlines():
        fields = line.split()
        if fields[:1] == ["nameserver"] and len(fields) > 1:
            with contextlib.suppress(ValueError):
                if ipaddress.ip_address(fields[1].split("%")[0]).is_loopback:
                    continue
        lines.append(line)
    return "\n".join(lines) + "\n"


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


class _Output:
    """pasta's log file and stderr, still readable once their folder is gone."""

    def __init__(self, log: str) -> None:
        self._log = os.open(log, os.O_RDONLY | os.O_CLOEXEC)
        self.stderr = tempfile.TemporaryFile()  # noqa: SIM115 -- closed by close()

    def text(self) -> str:
        """Everything pasta wrote so far, the log (at most its 1 MiB ``--log-size``) then stderr."""
        parts = []
        for fd in (self._log, self.stderr.fileno()):
            with contextlib.suppress(OSError):  # closed
                parts.append(os.pread(fd, 1 << 20, 0).decode(errors="replace"))
        return "".join(parts)

    def message(self) -> str:
        """pasta's own words for an error: without its banner, syslog noise or usage text."""
        lines = []
        for line in self.text().splitlines():
            line = line.strip()
            if line.startswith("Usage:"):  # after an option it does not know: the reason came first
                break
            if line and "syslog" not in line and not line.startswith(("pasta unknown version", "pasta 0")):
                lines.append(line)
        return "; ".join(dict.fromkeys(lines[-5:])) or "no message"

    def close(self) -> None:
        with contextlib.suppress(OSError):
            os.close(self._log)
        self.stderr.close()


class UserNetwork:
    """
    pasta attached to one sandbox's network namespace; stops when the sandbox ends or on :meth:`close`.

    :ivar pid: the sandbox process whose namespace pasta serves.
    :ivar pasta_pid: pasta's own pid on the host.
    :ivar attach_ms: how long :func:`attach_user_network` took, start to configured namespace.
    """

    def __init__(self, pid: int, process: subprocess.Popen[bytes], sandbox_fd: int, output: _Output) -> None:
        self.pid = pid
        self.pasta_pid = process.pid
        self.attach_ms = 0.0
        self._process = process
        self._output = output
        self._log = ""
        self._lock = threading.Lock()
        self._closed = False
        self._pasta_fd = os.pidfd_open(process.pid)
        self._sandbox_fd = sandbox_fd
        self._watcher = threading.Thread(target=self._watch, name=f"byo-pasta-{pid}", daemon=True)
        self._watcher.start()

    def __enter__(self) -> UserNetwork:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def running(self) -> bool:
        """Whether pasta still serves the namespace."""
        return self._process.poll() is None

    def log(self) -> str:
        """What pasta logged (errors only: it runs ``--quiet``), e.g. to say why the network died."""
        with self._lock:
            return self._log if self._closed else self._output.text()

    def check_configured(self) -> None:
        """Raise unless the namespace has a default route through pasta's interface (a self-test)."""
        try:
            with open(f"/proc/{self.pid}/net/route", encoding="ascii") as routes:
                default = any(line.split()[1:2] == ["00000000"] for line in routes.readlines()[1:])
        except OSError as exc:
            raise _error(f"cannot read the routes of the sandbox (pid {self.pid}): {exc}") from None
        if not default:
            raise _error(f"pasta started, but the sandbox (pid {self.pid}) has no default route")

    def close(self, timeout: float = 5.0) -> None:
        """Stop pasta (SIGTERM, then SIGKILL after ``timeout``); returns once it is gone. Idempotent.

        The sandbox keeps running, without a network (pasta's interface goes with it).
        """
        with self._lock:  # held throughout: a second caller (the watcher) waits for the first
            if self._closed:
                return
            if self._process.poll() is None:
                self._process.terminate()
                try:
                    self._process.wait(timeout)
                except subprocess.TimeoutExpired:
                    self._process.kill()
                    self._process.wait()
            self._log = self._output.text()
            self._output.close()
            self._closed = True

    def _watch(self) -> None:
        # Both pidfds become readable when their process ends: the sandbox (stop pasta) or pasta
        # (stopped by close(), or crashed: reap it). This thread alone closes them, so no other
        # thread can close an fd while it is polled.
        poller = select.poll()
        poller.register(self._sandbox_fd, select.POLLIN)
        poller.register(self._pasta_fd, select.POLLIN)
        try:
            poller.poll()
        finally:
            self.close()
            os.close(self._sandbox_fd)
            os.close(self._pasta_fd)


def _open_namespaces(pid: int) -> tuple[int, int, int]:
    """The sandbox's network namespace, the user namespace owning it, and that one's owner uid."""
    try:
        net = os.open(f"/proc/{pid}/ns/net", os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        raise _error(f"cannot attach the network: the sandbox process {pid} is gone") from None
    except PermissionError:
        raise _error(
            f"cannot attach the network: no access to the namespaces of process {pid}; the worker "
            f"(uid {os.geteuid()}) must run as root or as the user that started bwrap"
        ) from None
    try:
        if os.fstat(net).st_ino == os.stat("/proc/self/ns/net").st_ino:
            raise _error(
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
            raise _error(
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
            raise _error(
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
        raise _error(f"network: true needs pasta and setpriv: {_INSTALL} and util-linux")
    try:
        sandbox_fd = os.pidfd_open(pid)
    except ProcessLookupError:
        raise _error(f"cannot attach the network: the sandbox process {pid} is gone") from None
    net = user = ready = -1
    workdir = output = None
    process: subprocess.Popen[bytes] | None = None
    try:
        net, user, owner = _open_namespaces(pid)
        # The sandbox's gid on the host (bwrap's own); a process not owned by the namespace's
        # owner (not dumpable) has no useful one: then the gid is taken equal to the uid.
        status = os.stat(f"/proc/{pid}")
        gid = status.st_gid if status.st_uid == owner else owner
        prefix, runas = _launcher(setpriv, owner, gid)
        workdir = tempfile.mkdtemp(prefix="byo-pasta-")
        ready, output = _prepare_files(workdir, owner if os.geteuid() == 0 else -1, gid)
        argv = [*prefix, pasta, "--foreground", "--quiet", "--config-net", *ISOLATION_OPTIONS]
        if _forwarded_resolver(_read(_HOST_RESOLV_CONF)) is not None:
            argv += ["--dns-forward", DNS_FORWARD_ADDRESS]
        # Foreground: pasta stays our child, so the parent-death signal and close() reach it. Its
        # pid "file" is a FIFO we read: pasta writes it once the namespace is configured.
        argv += ["--log-file", os.path.join(workdir, "log"), "--pid", os.path.join(workdir, "ready")]
        argv += [*runas, "--userns", f"/proc/self/fd/{user}", "--netns", f"/proc/self/fd/{net}"]
        process = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=output.stderr,
            stderr=output.stderr,
            pass_fds=(net, user),
            env={},
        )
        _wait_ready(process, ready, output, pid, timeout)
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


def _prepare_files(workdir: str, owner: int, gid: int) -> tuple[int, _Output]:
    """pasta's log file and readiness FIFO, owned by the uid pasta runs as; the FIFO's read end.

    The folder stays the worker's (0711): pasta may write its two files, not create or delete any.
    """
    os.chmod(workdir, 0o711)
    log = os.path.join(workdir, "log")
    os.close(os.open(log, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
    fifo = os.path.join(workdir, "ready")
    os.mkfifo(fifo, 0o600)
    if owner >= 0:
        for path in (log, fifo):
            os.chown(path, owner, gid)
    # Opened before pasta starts, non-blocking: its write-open then succeeds at once, and poll()
    # reports nothing until it has written (a FIFO never opened for writing does not hang up).
    ready = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    return ready, _Output(log)


def _wait_ready(
    process: subprocess.Popen[bytes], ready: int, output: _Output, pid: int, timeout: float
) -> None:
    pasta_fd = os.pidfd_open(process.pid)
    try:
        poller = select.poll()
        poller.register(ready, select.POLLIN)
        poller.register(pasta_fd, select.POLLIN)
        deadline = time.monotonic() + timeout
        written = b""
        while not written.endswith(b"\n"):
            left = deadline - time.monotonic()
            events = dict(poller.poll(max(left, 0) * 1000)) if left > 0 else {}
            if ready in events:
                chunk = os.read(ready, 64)
                written += chunk
                if chunk:
                    continue
            if process.poll() is not None or ready in events:  # exited, or closed the FIFO unwritten
                if process.poll() is None:
                    process.kill()
                code = process.wait()
                raise _error(
                    f"pasta could not connect the sandbox (pid {pid}) to the network (exit code "
                    f"{code}): {output.message()}"
                )
            if not events:
                process.send_signal(signal.SIGKILL)
                process.wait()
                raise _error(
                    f"pasta did not configure the sandbox's network (pid {pid}) within {timeout:g} s: "
                    f"{output.message()}"
                )
    finally:
        os.close(pasta_fd)
