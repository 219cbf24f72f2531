"""
Probes of the sandbox's seccomp filter, run inside bubblewrap by Debian's python3 (stdlib only).

``python3 -I seccomp_probe.py <mode> <json argument>`` prints one JSON line:

- ``calls``: loads the *inner* filter given (hex), which answers every probed system call with
  SECCOMP_RET_TRACE, then makes each call ``[label, number, args...]``. The kernel applies the
  strictest answer of all filters: the sandbox's ERRNO(EPERM) beats TRACE, and a call the sandbox
  allows gets TRACE's ENOSYS (no tracer). So EPERM means "refused by the sandbox", ENOSYS "allowed",
  and no probed call ever runs, with or without the sandbox's filter.
- ``real``: the calls the issue names, made for real (ptrace of the sandbox's init, keyctl,
  personality query, clone3 with a too-small size).
- ``work``: ordinary work that must keep working under the filter.
- ``int80`` / ``x32``: a system call of another architecture (the filter must kill the process).
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import mmap
import multiprocessing
import os
import socket
import sqlite3
import ssl
import subprocess
import sys
import threading

LIBC = ctypes.CDLL(None, use_errno=True)
LIBC.syscall.restype = ctypes.c_long
PR_SET_NO_NEW_PRIVS, PR_SET_SECCOMP, SECCOMP_MODE_FILTER = 38, 22, 2


def _syscall(number: int, *args: int) -> int:
    """The call's result, or -errno."""
    ctypes.set_errno(0)
    result = LIBC.syscall(ctypes.c_long(number), *(ctypes.c_ulong(a & (2**64 - 1)) for a in args))
    return -ctypes.get_errno() if result == -1 else result


class _Fprog(ctypes.Structure):
    _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_void_p)]


def _load_filter(program: bytes) -> None:
    buffer = ctypes.create_string_buffer(program, len(program))
    fprog = _Fprog(len(program) // 8, ctypes.addressof(buffer))
    if LIBC.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_NO_NEW_PRIVS)")
    if LIBC.prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, ctypes.byref(fprog), 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_SECCOMP)")


def calls(arg: dict) -> dict:
    _load_filter(bytes.fromhex(arg["inner"]))
    # From here on only ctypes calls and the final write: every probed call is traced.
    return {label: _syscall(number, *args) for label, number, *args in arg["calls"]}


def real(arg: dict) -> dict:
    nr = arg["nr"]
    out = {}
    attached = _syscall(nr["ptrace"], 16, 1, 0, 0)  # PTRACE_ATTACH to pid 1, bwrap's init here
    out["ptrace_attach_init"] = attached
    if attached == 0:  # only without the filter: let init go again
        os.waitpid(1, 0x40000000)  # __WALL: init is not our child, but we trace it
        _syscall(nr["ptrace"], 17, 1, 0, 0)  # PTRACE_DETACH
    out["keyctl_get_session_keyring"] = _syscall(nr["keyctl"], 0, 2**64 - 3, 0)  # KEY_SPEC_SESSION_KEYRING
    buffer = ctypes.create_string_buffer(256)
    out["keyctl_read_session_keyring"] = _syscall(nr["keyctl"], 11, 2**64 - 3, ctypes.addressof(buffer), 256)
    out["personality_query"] = _syscall(nr["personality"], 0xFFFFFFFF)
    out["clone3_size_0"] = _syscall(nr["clone3"], 0, 0)  # the kernel alone says EINVAL: no process
    return out


def _check(results: dict, name: str, action) -> None:
    try:
        results[name] = action()
    except Exception as exc:  # noqa: BLE001 - every failure is a result here
        results[name] = f"FAILED {type(exc).__name__}: {exc}"


def _threads() -> str:
    done = []
    threads = [threading.Thread(target=lambda i=i: done.append(sum(range(i * 1000)))) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(done) == 8
    return "ok"


def _subprocess() -> str:
    assert subprocess.run(["/bin/true"], check=False).returncode == 0
    out = subprocess.run(["/bin/sh", "-c", "echo $((6 * 7))"], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "42", out
    return "ok"


def _fork() -> str:
    pid = os.fork()
    if pid == 0:
        os._exit(7)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 7, status
    return "ok"


def _multiprocessing() -> str:
    with multiprocessing.get_context("fork").Pool(2) as pool:
        assert pool.map(abs, [-1, -2, -3]) == [1, 2, 3]
    return "ok"


def _mmap() -> str:
    with mmap.mmap(-1, 1 << 20) as anonymous:
        anonymous[:5] = b"hello"
        assert anonymous[:5] == b"hello"
    with open("/tmp/mapped", "w+b") as handle:
        handle.write(b"x" * 4096)
        handle.flush()
        with mmap.mmap(handle.fileno(), 4096) as mapped:
            mapped[:2] = b"ok"
    with open("/tmp/mapped", "rb") as handle:
        assert handle.read(2) == b"ok"
    return "ok"


def _loopback() -> str:
    with socket.create_server(("127.0.0.1", 0)) as server:
        port = server.getsockname()[1]

        def serve() -> None:
            connection, _ = server.accept()
            with connection:
                connection.sendall(connection.recv(100).upper())

        thread = threading.Thread(target=serve)
        thread.start()
        with socket.create_connection(("127.0.0.1", port), timeout=10) as client:
            client.sendall(b"ping")
            assert client.recv(100) == b"PING"
        thread.join()
    with socket.socket(socket.AF_INET6 if socket.has_ipv6 else socket.AF_INET, socket.SOCK_DGRAM):
        pass
    return "ok"


def _ssl() -> str:
    context = ssl.create_default_context()
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    tls = context.wrap_bio(incoming, outgoing, server_hostname="example.invalid")
    with contextlib.suppress(ssl.SSLWantReadError):  # it wrote its ClientHello, waits for a server
        tls.do_handshake()
    assert outgoing.pending > 100
    return "ok"


def _sqlite() -> str:
    with sqlite3.connect("/tmp/probe.db") as db:
        db.execute("create table t (x integer)")
        db.executemany("insert into t values (?)", [(i,) for i in range(100)])
        assert db.execute("select sum(x) from t").fetchone() == (4950,)
    return "ok"


def work(arg: dict) -> dict:
    results: dict = {}
    for name, action in [
        ("threads", _threads),
        ("subprocess", _subprocess),
        ("fork", _fork),
        ("multiprocessing_fork", _multiprocessing),
        ("mmap", _mmap),
        ("loopback_sockets", _loopback),
        ("ssl", _ssl),
        ("sqlite3", _sqlite),
    ]:
        _check(results, name, action)
    return results


def int80(arg: dict) -> dict:
    """getpid through the i386 entry: mov eax, 20; int 0x80; ret."""
    code = b"\xb8\x14\x00\x00\x00\xcd\x80\xc3"
    page = mmap.mmap(-1, mmap.PAGESIZE, prot=mmap.PROT_READ | mmap.PROT_WRITE | mmap.PROT_EXEC)
    page.write(code)
    address = ctypes.addressof(ctypes.c_char.from_buffer(page))
    return {"pid": ctypes.CFUNCTYPE(ctypes.c_int)(address)(), "getpid": os.getpid()}


def x32(arg: dict) -> dict:
    return {"result": _syscall(0x40000000 | 39), "getpid": os.getpid()}  # x32's getpid


if __name__ == "__main__":
    MODES = {"calls": calls, "real": real, "work": work, "int80": int80, "x32": x32}
    print(json.dumps(MODES[sys.argv[1]](json.loads(sys.argv[2]))), flush=True)
