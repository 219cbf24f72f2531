"""
``network: true`` through pasta: real bwrap, real pasta, real servers on both sides.

The sandbox must reach another machine (a test host in a network namespace of its own, over a
veth pair) and must not reach the host: its loopback TCP/UDP servers, the gateway address pasta
would map to them, its abstract unix sockets, or the child's own ports from outside. Controls show
each of those checks fails without the option that makes it pass (shared network, or one isolation
option dropped). Every case runs with the worker as root (bwrap as root, and bwrap as an ordinary
uid with pasta started by root) and as an ordinary user (the whole session under ``setpriv``).
"""

from __future__ import annotations

import importlib.util
import json
import os
import random
import secrets
import select
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from airflow_byo.exceptions import ByoProcessorError
from airflow_byo.runner import sandbox_dns, sandbox_mode, sandbox_network
from tests.conftest import remove_user, throwaway_user
from tests.servers import network_namespace, wait_for_port

SESSION = Path(__file__).parent / "sandbox" / "network_session.py"
REPO = Path(__file__).resolve().parents[2]
ROOT = os.geteuid() == 0
PATH_ENV = {"PATH": "/usr/bin:/bin:/usr/sbin:/sbin"}
NEEDS_ROOT = "needs root (network namespaces, test users, a private mount namespace); CI runs as root"

pytestmark = [
    pytest.mark.skipif(not sandbox_mode.bubblewrap_status()[0], reason=sandbox_mode.bubblewrap_status()[1]),
    pytest.mark.skipif(not sandbox_network.pasta_status()[0], reason=sandbox_network.pasta_status()[1]),
]


def _load_session() -> Any:
    spec = importlib.util.spec_from_file_location("network_session", SESSION)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


network_session = _load_session()


# --- who runs the sandbox ---------------------------------------------------------------------------


@dataclass
class Worker:
    """``root``: bwrap and pasta as root; ``root-sandbox-uid``: bwrap as an ordinary uid, pasta
    started by root; ``user``: everything as an ordinary user; ``self``: the suite's own user."""

    kind: str
    uid: int
    gid: int
    copies: Path | None = None  # the session and the package, where the ordinary user can read them

    @property
    def drop(self) -> list[str]:
        return ["setpriv", f"--reuid={self.uid}", f"--regid={self.gid}", "--clear-groups", "--"]

    def session(self, **config: Any) -> dict[str, Any]:
        """Run one sandbox session: in this process (a root worker, or the suite's user) or as the user."""
        if self.kind == "root-sandbox-uid":
            config["bwrap_prefix"] = self.drop
        if self.kind != "user":
            return network_session.run(config)
        out = subprocess.run(
            self.script_argv(config), capture_output=True, text=True, env=PATH_ENV, timeout=180
        )
        assert out.returncode == 0, out.stderr
        return json.loads(out.stdout.strip().splitlines()[-1])

    def script_argv(self, config: dict[str, Any]) -> list[str]:
        """The session as its own process (the worker), as this worker's user."""
        if self.kind == "root-sandbox-uid":
            config["bwrap_prefix"] = self.drop
        if self.kind == "user":
            assert self.copies is not None
            return [
                *self.drop,
                "/usr/bin/python3",
                "-I",
                str(self.copies / "network_session.py"),
                "--package-root",
                str(self.copies),
                json.dumps(config),
            ]
        return [sys.executable, str(SESSION), json.dumps(config)]


def _script_env() -> dict[str, str]:
    return PATH_ENV | {"PYTHONPATH": str(REPO)}


@pytest.fixture(scope="module")
def test_user() -> Any:
    """A new system user of this module alone (concurrent test sessions must not share one)."""
    if not ROOT:
        yield None
        return
    user = throwaway_user("byonet")
    yield user
    remove_user(user)


WORKERS = ["root", "root-sandbox-uid", "user"] if ROOT else ["self"]


@pytest.fixture(scope="module", params=WORKERS)
def worker(request: pytest.FixtureRequest, test_user: Any) -> Any:
    if request.param == "self":
        yield Worker("self", os.getuid(), os.getgid())
        return
    uid, gid = (0, 0) if request.param == "root" else (test_user.pw_uid, test_user.pw_gid)
    copies = None
    if request.param == "user":
        if not os.path.exists("/usr/bin/python3"):
            pytest.skip("an ordinary user needs an interpreter it can reach: /usr/bin/python3 is missing")
        copies = Path(tempfile.mkdtemp(prefix="byo-netsession-code-"))
        copies.chmod(0o755)
        shutil.copy(SESSION, copies / "network_session.py")
        _copy_runner(copies)
    yield Worker(request.param, uid, gid, copies)
    if copies is not None:
        shutil.rmtree(copies)


def _copy_runner(copies: Path) -> None:
    """``airflow_byo/runner`` (and the package's import-free ``__init__``) without the rest of it:
    the sandbox's network modules must import with the standard library alone."""
    runner = Path(sandbox_network.__file__).parent
    (copies / "airflow_byo" / "runner").mkdir(parents=True)
    shutil.copy(runner.parent / "__init__.py", copies / "airflow_byo" / "__init__.py")
    for source in runner.glob("*.py"):
        shutil.copy(source, copies / "airflow_byo" / "runner" / source.name)
    for folder in (copies / "airflow_byo", copies / "airflow_byo" / "runner"):
        folder.chmod(0o755)


def _pasta_children() -> list[int]:
    """pasta processes this test process started and has not reaped."""
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            stat = Path(f"/proc/{pid}/stat").read_text()
        except OSError:
            continue
        comm, rest = stat[stat.index("(") + 1 : stat.rindex(")")], stat[stat.rindex(")") + 2 :].split()
        if comm.startswith(("passt", "pasta")) and int(rest[1]) == os.getpid():
            found.append(int(pid))
    return found


@pytest.fixture(autouse=True)
def no_pasta_left() -> Any:
    yield
    assert _pasta_children() == [], "a pasta process of this test outlived it"


# --- servers --------------------------------------------------------------------------------------


def _serve(server: socket.socket, reply: bytes, hits: list[str], stop: threading.Event) -> None:
    """Answer every connection (stream) or datagram with ``reply``; note each in ``hits``."""
    server.settimeout(0.2)
    while not stop.is_set():
        try:
            if server.type == socket.SOCK_STREAM:
                conn, _ = server.accept()
                with conn:
                    conn.settimeout(2)
                    conn.recv(100)  # the probe's hello: closing with it unread would reset the reply
                    conn.sendall(reply)
            else:
                _, peer = server.recvfrom(100)
                server.sendto(reply, peer)
        except TimeoutError:
            continue
        hits.append(reply.decode())


def _stream_server(family: int, address: Any) -> socket.socket:
    server = socket.socket(family, socket.SOCK_STREAM)
    if family == socket.AF_INET:
        server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    server.bind(address)
    server.listen()
    return server


@dataclass
class HostServices:
    """Servers of the host the sandbox must not reach: TCP and UDP on 127.0.0.1, an abstract socket."""

    tcp_port: int
    udp_port: int
    abstract: str
    hits: list[str]


@pytest.fixture(scope="module")
def host_services() -> Any:
    tcp = _stream_server(socket.AF_INET, ("127.0.0.1", 0))
    udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    udp.bind(("127.0.0.1", 0))
    abstract = f"byo-test-{secrets.token_hex(6)}"
    unix = _stream_server(socket.AF_UNIX, "\0" + abstract)
    hits: list[str] = []
    stop = threading.Event()
    threads = [
        threading.Thread(target=_serve, args=(sock, reply, hits, stop), daemon=True)
        for sock, reply in (
            (tcp, b"host-loopback-tcp\n"),
            (udp, b"host-loopback-udp"),
            (unix, b"host-abstract\n"),
        )
    ]
    for thread in threads:
        thread.start()
    yield HostServices(tcp.getsockname()[1], udp.getsockname()[1], abstract, hits)
    stop.set()
    for thread in threads:
        thread.join()
    for sock in (tcp, udp, unix):
        sock.close()


@pytest.fixture
def host(host_services: HostServices) -> HostServices:
    host_services.hits.clear()
    return host_services


# A DNS server of the tests: answers every A query with argv[3], logs "udp NAME" / "tcp" lines.
DNS_SERVER = r"""
import socket, struct, sys, threading
address, port, answer = sys.argv[1], int(sys.argv[2]), socket.inet_aton(sys.argv[3])
udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
udp.bind((address, port))
tcp = socket.socket()
tcp.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
tcp.bind((address, port))
tcp.listen()
def tcp_loop():
    while True:
        conn, _ = tcp.accept()
        print("tcp", flush=True)
        conn.close()
threading.Thread(target=tcp_loop, daemon=True).start()
print("ready", flush=True)
while True:
    query, peer = udp.recvfrom(512)
    labels, end = [], 12
    while query[end]:
        labels.append(query[end + 1 : end + 1 + query[end]].decode(errors="replace"))
        end += query[end] + 1
    question = query[12 : end + 5]
    is_a = question[-4:-2] == b"\x00\x01"
    record = b"\xc0\x0c\x00\x01\x00\x01" + struct.pack(">IH", 60, 4) + answer if is_a else b""
    udp.sendto(query[:2] + b"\x81\x80" + struct.pack(">HHHH", 1, int(is_a), 0, 0) + question + record, peer)
    print("udp", ".".join(labels), flush=True)
"""


def _start_dns(prefix: list[str], address: str, port: int, answer: str) -> subprocess.Popen[str]:
    server = subprocess.Popen(
        [*prefix, sys.executable, "-c", DNS_SERVER, address, str(port), answer],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert server.stdout is not None
    assert server.stdout.readline().strip() == "ready", server.stderr.read() if server.stderr else ""
    return server


def _stop(server: subprocess.Popen[str]) -> str:
    server.terminate()
    out, _ = server.communicate(timeout=10)
    return out


@dataclass
class Remote:
    """Another machine: a network namespace behind a veth pair, with an HTTP and a DNS server."""

    netns: str
    host_side: str  # the host's address on the veth (a host address other than its main one)
    address: str
    http_port: int
    token: str
    dns_answer: str = "198.51.100.7"


@pytest.fixture(scope="module")
def remote() -> Any:
    if not ROOT:
        pytest.skip(f"a test host in a network namespace {NEEDS_ROOT}")
    directory = Path(tempfile.mkdtemp(prefix="byo-remote-"))
    token = secrets.token_hex(8)
    (directory / "hello.txt").write_text(f"remote {token}\n")
    servers: list[subprocess.Popen[str]] = []
    try:
        with network_namespace("byo-test") as netns:
            try:
                address = netns.address
                http = [sys.executable, "-m", "http.server", "--bind", address, "8080"]
                http += ["--directory", str(directory)]
                servers.append(
                    subprocess.Popen(
                        [*netns.exec, *http], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
                    )
                )
                servers.append(_start_dns(netns.exec, address, 53, Remote.dns_answer))
                wait_for_port(8080, servers[0], "the remote HTTP server", timeout=10, host=address)
                yield Remote(netns.name, netns.host_side, address, 8080, token)
            finally:
                for server in servers:
                    server.kill()
                    server.communicate()
    finally:
        shutil.rmtree(directory, ignore_errors=True)


def _ok(result: dict[str, Any]) -> list[Any]:
    """The probe's values, asserting each check succeeded."""
    assert result["returncode"] == 0, result["stderr"]
    for item in result["results"]:
        assert item["ok"], item
    return [item["value"] for item in result["results"]]


# --- outbound ---------------------------------------------------------------------------------------


def test_outbound_reaches_another_machine(worker: Worker, remote: Remote) -> None:
    http = {"kind": "http", "host": remote.address, "port": remote.http_port, "path": "/hello.txt"}
    result = worker.session(checks=[http, {"kind": "gateway"}])
    got, gateway = _ok(result)
    assert (got["status"], got["body"]) == ("200", f"remote {remote.token}\n")
    assert gateway is not None  # pasta's --config-net: address, route, gateway
    assert 0 < result["attach_ms"] < 2000


def test_pasta_exits_with_the_sandbox(worker: Worker) -> None:
    result = worker.session(checks=[{"kind": "gateway"}])
    assert _ok(result)[0] is not None
    assert result["pasta_running_after"] is False  # stopped by the watcher, before any close()
    assert result["pasta_gone_ms"] < 2000
    assert not Path(f"/proc/{result['pasta_pid']}").exists()


def test_killed_worker_takes_pasta_and_the_sandbox_along(worker: Worker) -> None:
    """SIGKILL to the worker: pasta (parent-death signal) and bwrap (--die-with-parent) end with it."""
    env = PATH_ENV if worker.kind == "user" else _script_env()
    argv = worker.script_argv({"hold": True, "checks": []})
    holder = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    assert holder.stdout is not None
    line = holder.stdout.readline()
    assert line, holder.communicate()[1]
    pids = json.loads(line)
    handles = [os.pidfd_open(pids[key]) for key in ("pasta_pid", "bwrap_pid")]
    try:
        holder.kill()
        holder.communicate()
        for handle in handles:
            assert select.select([handle], [], [], 10)[0], "pasta or bwrap outlived the killed worker"
    finally:
        for handle in handles:
            os.close(handle)
        shutil.rmtree(pids["tmp"])  # the killed session's own folder (its bwrap's resolv.conf)


# --- the host stays out ---------------------------------------------------------------------------


def _host_checks(host: HostServices) -> list[dict[str, Any]]:
    return [
        {"kind": "tcp", "host": "127.0.0.1", "port": host.tcp_port},
        {"kind": "tcp", "host": "GATEWAY", "port": host.tcp_port, "timeout": 1},
        {"kind": "udp", "host": "127.0.0.1", "port": host.udp_port, "timeout": 1},
        {"kind": "udp", "host": "GATEWAY", "port": host.udp_port, "timeout": 1},
        {"kind": "abstract", "name": host.abstract},
    ]


def test_host_loopback_and_abstract_sockets_are_not_reachable(worker: Worker, host: HostServices) -> None:
    result = worker.session(checks=_host_checks(host))
    assert result["returncode"] == 0, result["stderr"]
    loopback, gateway, udp, udp_gateway, abstract = result["results"]
    assert "ConnectionRefused" in loopback["error"]  # the namespace's own, empty loopback
    assert "ConnectionRefused" in abstract["error"]  # abstract sockets belong to the netns
    assert "timed out" in udp["error"]
    # The gateway is the host's real one now: it may answer (or a proxy may), the host may not.
    for item in (gateway, udp_gateway):
        assert not item["ok"] or "host-" not in item["value"], item
    assert host.hits == []


def test_control_a_shared_network_reaches_them(host: HostServices) -> None:
    """Without --unshare-net the same checks reach the host: the test above can fail."""
    values = network_session.run({"share_net": True, "checks": _host_checks(host)})
    loopback, _gateway, udp, _udp_gateway, abstract = (item.get("value") for item in values["results"])
    assert (loopback, udp, abstract) == ("host-loopback-tcp\n", "host-loopback-udp", "host-abstract\n")


def _replace_option(monkeypatch: pytest.MonkeyPatch, option: str, *instead: str) -> None:
    """ISOLATION_OPTIONS without ``option`` (and its value), plus ``instead``."""
    options = list(sandbox_network.ISOLATION_OPTIONS)
    start = options.index(option)
    del options[start : start + (1 if option.startswith("--") else 2)]
    monkeypatch.setattr(sandbox_network, "ISOLATION_OPTIONS", (*options, *instead))


@pytest.mark.parametrize(
    ("option", "check", "reply"),
    [
        ("--no-map-gw", {"kind": "tcp", "host": "GATEWAY"}, "host-loopback-tcp\n"),  # gateway -> 127.0.0.1
        ("-T", {"kind": "tcp", "host": "127.0.0.1"}, "host-loopback-tcp\n"),  # -T auto: host ports in the ns
        ("-U", {"kind": "udp", "host": "127.0.0.1"}, "host-loopback-udp"),  # -U auto, the same for UDP
    ],
)
def test_control_each_isolation_option_matters(
    host: HostServices, monkeypatch: pytest.MonkeyPatch, option: str, check: dict[str, Any], reply: str
) -> None:
    """pasta's defaults hand the host's loopback to the sandbox; each option shuts one door."""
    _replace_option(monkeypatch, option)
    port = host.udp_port if check["kind"] == "udp" else host.tcp_port
    result = network_session.run({"checks": [check | {"port": port}]})
    assert _ok(result) == [reply]
    assert host.hits == [reply]


def test_childs_ports_are_not_exposed_on_the_host(worker: Worker) -> None:
    port = _free_port()
    result = worker.session(checks=[{"kind": "listen", "port": port}], inbound=port)
    assert result["listening"] == "LISTENING"
    assert "ConnectionRefused" in result["inbound"]  # -t none: nothing on the host's side


def test_control_a_forwarded_port_is_seen_from_the_host(monkeypatch: pytest.MonkeyPatch) -> None:
    """The check above sees a forwarded port (bound on the host's 127.0.0.1 only, for the control)."""
    port = _free_port()
    _replace_option(monkeypatch, "-t", "-t", f"127.0.0.1/{port}")
    result = network_session.run({"checks": [{"kind": "listen", "port": port}], "inbound": port})
    assert result["inbound"] == "connected"


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def test_host_addresses(worker: Worker, remote: Remote) -> None:
    """Documented, not wished for: pasta copies the host's main address into the namespace (so it
    is the namespace's own), but the host's other addresses are reached through the host's sockets."""
    other = _stream_server(socket.AF_INET, (remote.host_side, 0))  # on the veth: only the test host sees it
    hits: list[str] = []
    stop = threading.Event()
    server = threading.Thread(target=_serve, args=(other, b"other\n", hits, stop), daemon=True)
    server.start()
    try:
        checks = [
            {"kind": "source", "host": remote.address},
            {"kind": "gateway"},
            {"kind": "tcp", "host": remote.host_side, "port": other.getsockname()[1]},
        ]
        source, gateway, reply = _ok(worker.session(checks=checks))
    finally:
        stop.set()
        server.join()
        other.close()
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.connect((gateway, 9))  # no packet: only the route lookup
        assert source == probe.getsockname()[0]  # the host's main address, now the namespace's
    assert reply == "other\n"
    assert hits == ["other\n"]


def test_close_takes_the_network_away(worker: Worker) -> None:
    result = worker.session(checks=[{"kind": "gateway"}], close_before_start=True)
    assert _ok(result) == [None]  # pasta's tap interface went with it: no route at all
    assert result["pasta_running_after"] is False


# --- DNS --------------------------------------------------------------------------------------------


@dataclass
class LoopbackResolver:
    conf: Path  # a resolv.conf naming it, to bind over /etc/resolv.conf in a private mount namespace
    server: subprocess.Popen[str]
    answer: str = "198.51.100.53"


@pytest.fixture
def loopback_resolver() -> Any:
    """A DNS server on a loopback address of the host, as systemd-resolved (127.0.0.53) is."""
    if not ROOT:
        pytest.skip(f"a resolver on port 53 and another /etc/resolv.conf {NEEDS_ROOT}")
    address = f"127.53.{random.randint(0, 255)}.{random.randint(1, 254)}"
    server = _start_dns([], address, 53, LoopbackResolver.answer)
    directory = Path(tempfile.mkdtemp(prefix="byo-resolv-"))
    conf = directory / "resolv.conf"
    conf.write_text(f"nameserver {address}\nsearch example.test\noptions edns0\n")
    directory.chmod(0o755)
    conf.chmod(0o644)
    yield LoopbackResolver(conf, server)
    if server.poll() is None:
        _stop(server)
    shutil.rmtree(directory)


def _with_resolv_conf(worker: Worker, conf: Path, **config: Any) -> dict[str, Any]:
    """The session in a mount namespace of its own, where /etc/resolv.conf is ``conf``."""
    mount = 'mount --bind "$0" /etc/resolv.conf && exec "$@"'
    argv = ["unshare", "--mount", "--propagation", "private", "--", "sh", "-c", mount, str(conf)]
    out = subprocess.run(
        [*argv, *worker.script_argv(config)], capture_output=True, text=True, env=_script_env(), timeout=180
    )
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_loopback_resolver_is_forwarded(worker: Worker, loopback_resolver: LoopbackResolver) -> None:
    checks = [
        {"kind": "resolve", "name": "byo-dns.example"},
        {"kind": "tcp", "host": sandbox_dns.DNS_FORWARD_ADDRESS, "port": 53},  # UDP only
    ]
    result = _with_resolv_conf(worker, loopback_resolver.conf, resolv_conf="module", checks=checks)
    assert result["sandbox_resolv_conf"].startswith(f"nameserver {sandbox_dns.DNS_FORWARD_ADDRESS}")
    assert result["results"][0] == {"ok": True, "value": loopback_resolver.answer}
    # Control: the host's own file in the sandbox names a loopback address it cannot reach.
    control = _with_resolv_conf(worker, loopback_resolver.conf, checks=checks[:1])
    assert not control["results"][0]["ok"]
    log = _stop(loopback_resolver.server).splitlines()
    assert log.count("udp byo-dns.example") == 1  # the forwarded query reached the host's resolver
    assert "tcp" not in log  # and TCP to the forwarded address did not (whatever else answered it)


def test_remote_resolver_is_used_as_it_is(worker: Worker, remote: Remote) -> None:
    directory = Path(tempfile.mkdtemp(prefix="byo-resolv-"))
    conf = directory / "resolv.conf"
    conf.write_text(f"nameserver {remote.address}\n")
    directory.chmod(0o755)
    conf.chmod(0o644)
    try:
        checks = [{"kind": "resolve", "name": "byo-remote-dns.example"}]
        result = _with_resolv_conf(worker, conf, resolv_conf="module", checks=checks)
    finally:
        shutil.rmtree(directory)
    assert result["sandbox_resolv_conf"] is None  # the host's file is bound as it is
    assert _ok(result) == [remote.dns_answer]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "# systemd-resolved\nnameserver 127.0.0.53\nnameserver 10.0.0.2\nnameserver ::1\nsearch a.test\n",
            f"nameserver {sandbox_dns.DNS_FORWARD_ADDRESS}  # the host's resolver, forwarded by pasta\n"
            "# systemd-resolved\nnameserver 10.0.0.2\nsearch a.test\n",
        ),
        ("nameserver 10.0.0.2\nnameserver 127.0.0.1\n", None),  # the first IPv4 one decides, as in pasta
        ("nameserver ::1\n", None),  # no IPv4 resolver: nothing pasta could forward
        ("nameserver fe80::1%eth0\nnameserver 127.0.0.1\n", "forwarded"),
        ("", None),
    ],
)
def test_sandbox_resolv_conf(tmp_path: Path, text: str, expected: str | None) -> None:
    conf = tmp_path / "resolv.conf"
    conf.write_text(text)
    got = sandbox_dns.sandbox_resolv_conf(str(conf))
    if expected == "forwarded":
        assert got is not None
        assert got.startswith(f"nameserver {sandbox_dns.DNS_FORWARD_ADDRESS}")
        assert "127.0.0.1" not in got
        assert "fe80::1%eth0" in got
    else:
        assert got == expected


def test_sandbox_resolv_conf_without_a_file(tmp_path: Path) -> None:
    assert sandbox_dns.sandbox_resolv_conf(str(tmp_path / "missing")) is None


# --- errors -----------------------------------------------------------------------------------------


def test_pasta_status() -> None:
    works, reason = sandbox_network.pasta_status()
    assert works, reason
    assert reason.startswith("pasta /")


def test_pasta_status_without_pasta(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(
        sandbox_network, "_tool", lambda name: None if name == "pasta" else f"/usr/bin/{name}"
    )
    works, reason = sandbox_network.pasta_status.__wrapped__()
    assert not works
    assert reason == "pasta is not installed; install the Debian package passt (apt-get install -y passt)"


def test_pasta_status_without_user_namespaces(monkeypatch: pytest.MonkeyPatch) -> None:
    real = sandbox_network._tool
    monkeypatch.setattr(
        sandbox_network, "_tool", lambda name: "/bin/false" if name == "unshare" else real(name)
    )
    works, reason = sandbox_network.pasta_status.__wrapped__()
    assert (works, reason) == (False, "cannot create a user and network namespace for pasta: exit code 1")


def test_pasta_status_when_pasta_fails(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sandbox_network, "ISOLATION_OPTIONS", ("--bogus-option",))
    works, reason = sandbox_network.pasta_status.__wrapped__()
    assert not works
    assert reason.startswith("pasta could not connect the sandbox (pid ")
    pasta = sandbox_network._tool("pasta")
    assert f"(exit code 1): {pasta}: unrecognized option '--bogus-option'; pasta needs" in reason
    assert reason.endswith("; pasta needs /dev/net/tun and user namespaces, and " + sandbox_network._INSTALL)


def test_attach_to_a_process_that_is_gone() -> None:
    gone = subprocess.Popen(["true"])
    gone.wait()
    with pytest.raises(ByoProcessorError, match=f"the sandbox process {gone.pid} is gone"):
        sandbox_network.attach_user_network(gone.pid)


def test_attach_to_the_workers_own_network_is_refused() -> None:
    with pytest.raises(
        ByoProcessorError, match="shares the worker's network namespace: start bwrap with --unshare-net"
    ):
        sandbox_network.attach_user_network(os.getpid())


def test_attach_to_a_namespace_the_sandbox_does_not_own() -> None:
    if not ROOT:
        pytest.skip(f"a network namespace of the host's user namespace {NEEDS_ROOT}")
    holder = subprocess.Popen(
        ["unshare", "--net", "--", "sh", "-c", "echo ready; read _"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None
        assert holder.stdout.readline().strip() == "ready"
        with pytest.raises(ByoProcessorError, match="belongs to the worker's own user namespace"):
            sandbox_network.attach_user_network(holder.pid)
    finally:
        holder.communicate("\n")


def test_non_root_worker_and_a_foreign_namespace(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(os, "geteuid", lambda: 1234)
    with pytest.raises(
        ByoProcessorError, match="belongs to uid 999, the worker runs as uid 1234: pasta can only"
    ):
        sandbox_network._launcher("/usr/bin/setpriv", 999, 999)


@pytest.fixture
def blocked_sandbox() -> Any:
    """A bwrap sandbox waiting on its --block-fd, for attach's failure modes."""
    info_r, info_w = os.pipe()
    block_r, block_w = os.pipe()
    argv = network_session.bwrap_argv({"checks": []}, info_w, block_r, "/etc/resolv.conf")
    process = subprocess.Popen(
        argv, pass_fds=(info_w, block_r), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    os.close(info_w)
    os.close(block_r)
    try:
        yield network_session._read_info(info_r)["child-pid"]
    finally:
        os.close(info_r)
        os.close(block_w)  # bwrap's block-fd at EOF: it goes on, runs nothing, exits
        process.wait(timeout=30)


def test_pasta_failure_names_pastas_message(blocked_sandbox: int, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(
        sandbox_network, "ISOLATION_OPTIONS", (*sandbox_network.ISOLATION_OPTIONS, "-t", "none")
    )
    with pytest.raises(ByoProcessorError) as raised:
        sandbox_network.attach_user_network(blocked_sandbox)
    assert str(raised.value).startswith(
        f"pasta could not connect the sandbox (pid {blocked_sandbox}) to the network (exit code 1): "
    )
    assert "Port forwarding mode 'none' conflicts with previous mode" in str(raised.value)


def test_pasta_that_never_gets_ready_times_out(
    blocked_sandbox: int, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    stuck = tmp_path / "pasta"
    stuck.write_text("#!/bin/sh\necho 'stuck on purpose' >&2\nexec sleep 60\n")
    stuck.chmod(0o755)
    tmp_path.chmod(0o755)
    real = sandbox_network._tool
    monkeypatch.setattr(sandbox_network, "_tool", lambda name: str(stuck) if name == "pasta" else real(name))
    started = time.monotonic()
    with pytest.raises(
        ByoProcessorError,
        match=r"did not configure the sandbox's network \(pid \d+\) within 0.5 s: stuck on purpose",
    ):
        sandbox_network.attach_user_network(blocked_sandbox, timeout=0.5)
    assert time.monotonic() - started < 5
