"""
A hostile processor: each attack tries one escape from the sandbox and prints what it got as JSON.

Run inside the sandbox as ``python -I hostile.py <attack> <json argument>``; stdlib only.
"""

from __future__ import annotations

import json
import os
import socket
import sys
import time


def _try(action):
    try:
        return {"ok": True, "value": action()}
    except Exception as exc:  # noqa: BLE001 - every failure is a result here
        return {"ok": False, "error": f"{type(exc).__name__}: {exc}"}


def _read(path: str) -> object:
    if os.path.isdir(path):
        return sorted(os.listdir(path))
    with open(path, "rb") as handle:
        return handle.read(4096).decode("utf-8", "replace")


def probe(arg: dict) -> dict:
    """Who and where am I; can I import the stdlib, the venv's module and the DAGs module?"""
    import ctypes  # noqa: F401 - a C extension from lib-dynload
    import sqlite3
    import ssl

    sys.path.insert(0, arg["sys_path"])
    import byo_dags_helper  # type: ignore[import-not-found]
    import byo_venv_probe  # type: ignore[import-not-found]

    return {
        "uid": os.getuid(),
        "gid": os.getgid(),
        "groups": os.getgroups(),
        "hostname": socket.gethostname(),
        "pid": os.getpid(),
        "cwd": os.getcwd(),
        "prefix": sys.prefix,
        "env": dict(os.environ),
        "venv_module": byo_venv_probe.VALUE,
        "dags_module": byo_dags_helper.VALUE,
        "ssl": ssl.OPENSSL_VERSION,
        "sqlite": sqlite3.sqlite_version,
        "pids": sorted(int(p) for p in os.listdir("/proc") if p.isdigit()),
    }


def read(arg: dict) -> dict:
    return {path: _try(lambda path=path: _read(path)) for path in arg["paths"]}


def secrets(arg: dict) -> dict:
    """Everything another process could tell: its environment and command line."""
    found = {"self": dict(os.environ)}
    targets = {f"/proc/{arg['worker_pid']}/environ", "/proc/1/environ"}
    for pid in os.listdir("/proc"):
        if pid.isdigit():
            targets |= {f"/proc/{pid}/environ", f"/proc/{pid}/cmdline"}
    for target in sorted(targets):
        found[target] = _try(lambda target=target: _read(target))
    return found


def connect(arg: dict) -> dict:
    def attempt() -> str:
        with socket.create_connection(("127.0.0.1", arg["port"]), timeout=3) as sock:
            return sock.recv(100).decode()

    return _try(attempt)


def write(arg: dict) -> dict:
    def attempt(path: str) -> int:
        with open(path, "w") as handle:
            return handle.write("x" * arg.get("size", 10))

    return {path: _try(lambda path=path: attempt(path)) for path in arg["paths"]}


def daemon(arg: dict) -> dict:
    """The classic daemon: fork, setsid, fork again, exec something long-lived; then linger."""
    if os.fork() == 0:
        os.setsid()
        if os.fork() == 0:
            devnull = os.open("/dev/null", os.O_RDWR)
            for fd in (0, 1, 2):
                os.dup2(devnull, fd)
            code = "import time; time.sleep(600)"
            os.execv(sys.executable, [sys.executable, "-c", code, arg["token"]])
        os._exit(0)
    os.wait()
    print(json.dumps({"ready": True}), flush=True)
    sys.stdin.readline()  # the test looks for the daemon from outside, then lets us exit
    return {"exiting": True}


def fork_exit(arg: dict) -> dict:
    """A background child that keeps stdout open, and a parent that dies at once."""
    if os.fork() == 0:
        time.sleep(600)
        os._exit(0)
    print(json.dumps({"forked": True}), flush=True)
    os._exit(3)


def spin(arg: dict) -> dict:
    print(json.dumps({"spinning": True}), flush=True)
    while True:
        pass


def forks(arg: dict) -> dict:
    """Start processes until the kernel says no (a fork bomb with a safety cap)."""
    started = 0
    try:
        for _ in range(arg["cap"]):
            if os.fork() == 0:
                time.sleep(60)
                os._exit(0)
            started += 1
    except OSError as exc:
        return {"started": started, "error_type": type(exc).__name__, "error": str(exc)}
    return {"started": started}


if __name__ == "__main__":
    attack, argument = sys.argv[1], json.loads(sys.argv[2])
    print(json.dumps(globals()[attack](argument)), flush=True)
