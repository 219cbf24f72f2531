"""
One sandbox with its network attached, as the worker will run it: bwrap waits on ``--block-fd``,
pasta is attached to ``child-pid`` from ``--info-fd``, the probe runs, everything is reported.

The test module calls :func:`run` in its own process (a root worker); an ordinary user, or a root
worker in a private mount namespace (another ``/etc/resolv.conf``), runs this file as a script:
``python3 network_session.py [--package-root PATH] CONFIG_JSON`` prints :func:`run`'s result as
JSON (``PATH``: a copy of the ``airflow_byo`` package the user can read). Stdlib only, so
``/usr/bin/python3`` of an ordinary user runs it.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from typing import Any

# Runs inside the sandbox: one result per check of argv[1], as one JSON line on stdout.
PROBE = r"""
import json, socket, sys, time

def gateway():
    for line in open("/proc/net/route").read().splitlines()[1:]:
        fields = line.split()
        if fields[1] == "00000000":
            return socket.inet_ntoa(int(fields[2], 16).to_bytes(4, "little"))
    return None

def check(c):
    host = gateway() if c.get("host") == "GATEWAY" else c.get("host")
    kind = c["kind"]
    if kind == "tcp":
        with socket.create_connection((host, c["port"]), timeout=c.get("timeout", 2)) as s:
            s.sendall(b"hello\n")
            return s.recv(100).decode()
    if kind == "http":
        with socket.create_connection((host, c["port"]), timeout=10) as s:
            s.sendall(f"GET {c['path']} HTTP/1.0\r\nHost: {host}\r\n\r\n".encode())
            start, data = time.monotonic(), bytearray()
            while chunk := s.recv(1 << 20):
                data += chunk
            head, _, body = bytes(data).partition(b"\r\n\r\n")
            seconds = time.monotonic() - start
            return {"status": head.split()[1].decode(), "bytes": len(body), "seconds": seconds,
                    "body": body[:200].decode(errors="replace")}
    if kind == "udp":
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.settimeout(c.get("timeout", 2))
            s.sendto(b"hello", (host, c["port"]))
            return s.recv(100).decode()
    if kind == "abstract":
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.settimeout(2)
            s.connect("\0" + c["name"])
            s.sendall(b"hello\n")
            return s.recv(100).decode()
    if kind == "resolve":
        return socket.gethostbyname(c["name"])
    if kind == "source":  # the namespace's own address towards host (no packet is sent)
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.connect((host, 9))
            return s.getsockname()[0]
    if kind == "gateway":
        return gateway()
    if kind == "listen":  # tell the session, wait until it has tried to connect from outside
        with socket.socket() as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            s.bind(("0.0.0.0", c["port"]))
            s.listen()
            print("LISTENING", flush=True)
            sys.stdin.readline()
            return "listened"
    raise ValueError(kind)

results = []
for c in json.loads(sys.argv[1]):
    try:
        results.append({"ok": True, "value": check(c)})
    except Exception as exc:
        results.append({"ok": False, "error": f"{type(exc).__name__}: {exc}"})
print(json.dumps(results), flush=True)
"""


def bwrap_argv(config: dict[str, Any], info_fd: int, block_fd: int, resolv_conf: str) -> list[str]:
    """A minimal sandbox, as ``airflow_byo.runner.sandbox`` builds one (binds, links, namespaces)."""
    argv = [*config.get("bwrap_prefix", []), "bwrap", "--unshare-all", "--unshare-user"]
    if config.get("share_net"):
        argv.append("--share-net")
    argv += ["--uid", "65534", "--gid", "65534", "--die-with-parent", "--ro-bind", "/usr", "/usr"]
    for top in ("/bin", "/sbin", "/lib", "/lib32", "/lib64"):
        if os.path.islink(top):
            argv += ["--symlink", os.readlink(top), top]
        elif os.path.isdir(top):
            argv += ["--ro-bind", top, top]
    argv += ["--ro-bind", resolv_conf, "/etc/resolv.conf"]
    argv += ["--proc", "/proc", "--dev", "/dev", "--tmpfs", "/tmp"]
    argv += ["--info-fd", str(info_fd), "--block-fd", str(block_fd)]
    return [*argv, "--", "/usr/bin/python3", "-I", "-c", PROBE, json.dumps(config.get("checks", []))]


def _read_info(fd: int) -> dict[str, Any]:
    data = b""
    while True:  # bwrap writes the JSON in pieces; child-pid comes first
        chunk = os.read(fd, 4096)
        data += chunk
        try:
            return json.loads(data)
        except ValueError:
            if not chunk:
                raise RuntimeError(f"bwrap wrote no info: {data!r}") from None


def _inbound(port: int) -> str:
    """From the host's side: does anything answer on 127.0.0.1:port (the child's listening port)?"""
    time.sleep(1.5)  # pasta's -t auto rescans the namespace's ports every second
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=2):
            return "connected"
    except OSError as exc:
        return f"{type(exc).__name__}: {exc}"


def run(config: dict[str, Any]) -> dict[str, Any]:
    """
    Start the sandbox, attach its network (unless ``share_net``), run the probe, report.

    :param config: ``checks`` for the probe, ``bwrap_prefix`` (setpriv to another uid),
        ``share_net``, ``resolv_conf`` (``"module"``: bind what ``sandbox_dns.sandbox_resolv_conf()``
        gives),
        ``close_before_start``, ``hold`` (print pids and wait to be killed), ``inbound`` (a port).
    The network is attached by ``airflow_byo.runner.sandbox_network`` as imported: the checkout's,
    or the copy under ``--package-root``.
    """
    from airflow_byo.runner import sandbox_dns, sandbox_network

    resolv = "/etc/resolv.conf"
    with tempfile.TemporaryDirectory(prefix="byo-netsession-") as tmp:
        os.chmod(tmp, 0o755)
        text = sandbox_dns.sandbox_resolv_conf() if config.get("resolv_conf") == "module" else None
        if text is not None:
            resolv = os.path.join(tmp, "resolv.conf")
            with open(resolv, "w") as handle:
                handle.write(text)
            os.chmod(resolv, 0o644)
        info_r, info_w = os.pipe()
        block_r, block_w = os.pipe()
        sandbox = subprocess.Popen(
            bwrap_argv(config, info_w, block_r, resolv),
            pass_fds=(info_w, block_r),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        os.close(info_w)
        os.close(block_r)
        result: dict[str, Any] = {"bwrap_pid": sandbox.pid, "sandbox_resolv_conf": text, "tmp": tmp}
        network = None
        try:
            pid = _read_info(info_r)["child-pid"]
            result["child_pid"] = pid
            if not config.get("share_net"):
                network = sandbox_network.attach_user_network(pid)
                result.update(pasta_pid=network.pasta_pid, attach_ms=network.attach_ms)
                if config.get("close_before_start"):
                    network.close()
                if config.get("hold"):
                    print(json.dumps(result), flush=True)
                    time.sleep(3600)
            os.write(block_w, b"x")
            assert sandbox.stdout is not None
            assert sandbox.stdin is not None
            if config.get("inbound"):
                line = sandbox.stdout.readline()
                result["listening"] = line.strip()
                result["inbound"] = _inbound(config["inbound"])
                sandbox.stdin.write("\n")
                sandbox.stdin.flush()
            out, err = sandbox.communicate(timeout=120)
        finally:
            os.close(info_r)
            os.close(block_w)
            if sandbox.poll() is None:
                sandbox.kill()
                sandbox.communicate()
        result.update(returncode=sandbox.returncode, stderr=err)
        result["results"] = json.loads(out.strip().splitlines()[-1]) if out.strip() else None
        if network is not None:
            ended = time.monotonic()  # the watcher stops pasta once the sandbox is gone
            while network.running and time.monotonic() < ended + 5:
                time.sleep(0.005)
            result["pasta_running_after"] = network.running
            result["pasta_gone_ms"] = round((time.monotonic() - ended) * 1000, 1)
            network.close()
    return result


if __name__ == "__main__":
    args = sys.argv[1:]
    if args[0] == "--package-root":
        sys.path.insert(0, args[1])
        args = args[2:]
    config = json.loads(args[0])
    print(json.dumps(run(config)), flush=True)
