"""
B9 -- download throughput of a sandboxed child through the user-mode network (``network="user"``,
pasta) against the same child on the shared host network (``network="host"``), the same-run
baseline. What it costs a flow to be kept off the host's loopback and abstract sockets: every byte
of a ``user`` download crosses pasta (a user-space TCP splice) instead of the kernel alone.

The server is local to this machine and never on another address of the world: like
``tests/runner/test_sandbox_network.py``, a network namespace behind a veth pair with a random
free ``10.x.y.0/30`` (host side ``.1``, namespace side ``.2``) stands for another machine, and a
small HTTP server in it streams ``--size-mb`` MiB of zeros (a ``user`` child cannot reach the
host's ``127.0.0.1`` at all -- that is the point of the isolation -- so the loopback is no use).
The namespace, veth and server are removed at the end.

Each repetition runs both sides, alternating, in a fresh sandbox (``SandboxSpec`` as a flow gets
it, a leased uid when run as root). The child (``python -I -c``) connects, sends a GET and reads
the body with ``socket.recv_into`` into one buffer; it times itself from just before connecting
to the last byte, so sandbox start is off the clock. Also reported: start time, from just before
``prepare_sandbox`` to the child's first line of code (for ``user``: bwrap, pasta's attach and
the interpreter's start). Medians over ``--repeat``.

    .venv/bin/python bench/network.py [--size-mb N] [--repeat N]

Rows: MB/s of each side (user against host: the ratio is user/host, 1.0x means no cost) and the
start time of each side. Target, informational: user >= 0.5x host. Nothing is asserted.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from airflow_byo.runner import sandbox_network  # noqa: E402 -- after the checkout is importable
from airflow_byo.runner.sandbox import SandboxSpec, prepare_sandbox, worker_identity  # noqa: E402
from airflow_byo.runner.sandbox_mode import bubblewrap_status  # noqa: E402
from bench.timing import Row, table  # noqa: E402
from tests.servers import network_namespace, wait_for_port  # noqa: E402

if TYPE_CHECKING:
    from collections.abc import Iterator

PORT = 8080

#: The server in the namespace: ``GET /<bytes>`` answers that many zero bytes, one client at a time.
SERVER = r"""
import socket, sys
address, port = sys.argv[1], int(sys.argv[2])
chunk = bytes(1 << 20)
server = socket.socket()
server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
server.bind((address, port))
server.listen(8)
while True:
    conn, _ = server.accept()
    try:
        request = b""
        while b"\r\n\r\n" not in request:
            data = conn.recv(4096)
            if not data:
                break
            request += data
        path = request.split(b" ", 2)[1].decode() if request.count(b" ") >= 2 else "/0"
        size = int(path.strip("/") or 0)
        conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\nConnection: close\r\n\r\n" % size)
        left = size
        while left:
            view = chunk[: min(left, len(chunk))]
            conn.sendall(view)
            left -= len(view)
    except OSError:
        pass
    finally:
        conn.close()
"""

#: The child: its start time, then a timed download of ``size`` bytes, as one JSON line.
CHILD = r"""
import json, socket, sys, time
started = time.time()
address, port, size = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
buffer = bytearray(1 << 20)
view = memoryview(buffer)
t0 = time.perf_counter()
conn = socket.create_connection((address, port), timeout=60)
conn.sendall(b"GET /%d HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n\r\n" % (size, address.encode()))
head = b""
while b"\r\n\r\n" not in head:
    data = conn.recv(4096)
    if not data:
        raise SystemExit("no HTTP header")
    head += data
header, body = head.split(b"\r\n\r\n", 1)
assert header.startswith(b"HTTP/1.1 200"), header
got = len(body)
while True:
    n = conn.recv_into(view)
    if not n:
        break
    got += n
seconds = time.perf_counter() - t0
conn.close()
print(json.dumps({"started": started, "bytes": got, "seconds": seconds}))
"""


@contextlib.contextmanager
def local_server() -> Iterator[str]:
    """The namespace, its veth and the server; yields the server's address (on this machine)."""
    with network_namespace("byo-bench") as netns:
        server = subprocess.Popen(
            [*netns.exec, sys.executable, "-I", "-c", SERVER, netns.address, str(PORT)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            wait_for_port(PORT, server, "the benchmark's HTTP server", timeout=10, host=netns.address)
            yield netns.address
        finally:
            server.kill()
            server.wait()


def download(network: str, address: str, size: int) -> tuple[float, float]:
    """One sandboxed download: (MB/s inside the child, seconds from prepare to the child's start)."""
    spec = SandboxSpec(interpreter=sys.executable, network=network)  # type: ignore[arg-type]
    argv = [sys.executable, "-I", "-c", CHILD, address, str(PORT), str(size)]
    identity = worker_identity()
    try:
        before = time.time()
        launch = prepare_sandbox(argv, spec, identity=identity)
        try:
            result = launch.run(timeout=600)
        finally:
            launch.close()  # run() has waited for the process
    finally:
        if identity is not None:
            identity.release()
    if result.returncode != 0:
        raise RuntimeError(f"{network} child failed ({result.returncode}): {result.stderr.strip()}")
    line = json.loads(result.stdout.strip().splitlines()[-1])
    if line["bytes"] != size:
        raise RuntimeError(f"{network} child got {line['bytes']} bytes of {size}")
    return line["bytes"] / line["seconds"] / 1e6, line["started"] - before


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--size-mb", type=int, default=200, help="MiB per download (default 200)")
    parser.add_argument("--repeat", type=int, default=5, help="downloads per side (default 5)")
    args = parser.parse_args()
    for ok, why in (bubblewrap_status(), sandbox_network.pasta_status()):
        if not ok:
            raise SystemExit(why)
    size = args.size_mb << 20
    samples: dict[str, list[tuple[float, float]]] = {"host": [], "user": []}
    with local_server() as address:
        for network in samples:  # warm-up, off the record (page cache, interpreter files)
            download(network, address, 1 << 20)
        for _ in range(args.repeat):
            for network, values in samples.items():
                values.append(download(network, address, size))
    rate = {net: statistics.median(v[0] for v in values) for net, values in samples.items()}
    start = {net: statistics.median(v[1] for v in values) for net, values in samples.items()}
    rows: list[Row] = [
        (f"download {args.size_mb} MiB, MB/s: user (pasta) vs host", rate["user"], rate["host"], ">= 0.5x"),
        ("download, MB/s: host", rate["host"], None, "baseline"),
        ("start to child's first line, s: user vs host", start["user"], start["host"], "informational"),
        ("start to child's first line, s: host", start["host"], None, "baseline"),
    ]
    print(f"B9 network throughput, median of {args.repeat}, server {address}:{PORT} (netns on this machine)")
    print(table(rows))


if __name__ == "__main__":
    main()
