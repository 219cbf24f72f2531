"""
The step between the worker and bubblewrap: run as a script, ``python -I -S sandbox_launcher.py PLAN``.

What bwrap cannot do for itself, done by the worker's own interpreter (no site-packages, nothing
of the flow's) before it execs bwrap with an empty environment:

1. **A fresh, empty session keyring** (``keyctl(KEYCTL_JOIN_SESSION_KEYRING, NULL)``): the child
   would otherwise inherit the worker's, with whatever keys it holds. The seccomp filter then
   refuses every key call to the child anyway.
2. For a **root worker**, the child must not be host uid 0 (see :mod:`.sandbox_identity`), but
   bwrap started as an unprivileged uid resolves its bind sources as that uid, and a root
   worker's interpreter, venvs and DAGs often sit under ``/root`` (mode 0700). So, still root and
   in a private mount namespace of its own, the launcher bind-mounts every folder the sandbox
   needs -- each given as a descriptor the worker opened -- onto ``<view_root>/<n>`` (a small
   tmpfs), where the unprivileged bwrap can reach it; nothing of this is visible on the host.
   Then it drops every group and switches to the child's uid/gid. A folder shows inside with its
   own permissions: the child reads what "other" (or its group) may read.
3. The view descriptors are closed: only stdin/stdout/stderr and the descriptors bwrap reads
   (seccomp program, info and block pipes) reach bwrap, which closes them in turn.

The plan is a dict ``{"exec": [bwrap, args...], "keep_fds": [...], "uid": int | None, "gid": int |
None, "view_root": str | None, "views": [[fd, path, is_dir], ...]}``, in ``marshal`` format (version
4), hex-encoded: the worker wrote it, and reading it imports nothing (``json`` and what it pulls in
were half of this script's start, paid by every child: issue 24). Standard library only, and as
little of it as will do; any failure exits with code 126 and a line on stderr the worker shows.
"""

from __future__ import annotations

import ctypes
import marshal
import os
import sys

# keyctl has no libc wrapper; its number per architecture (asm/unistd.h).
_SYS_KEYCTL = {"x86_64": 250, "aarch64": 219, "riscv64": 219, "ppc64le": 271, "s390x": 280, "armv7l": 311}
_KEYCTL_JOIN_SESSION_KEYRING = 1
_CLONE_NEWNS = 0x00020000
_MS_NOSUID, _MS_NODEV, _MS_BIND, _MS_REC, _MS_PRIVATE = 0x2, 0x4, 0x1000, 0x4000, 0x40000


def _fail(message: str) -> None:
    sys.stderr.write(f"airflow-byo sandbox launcher: {message}\n")
    sys.stderr.flush()
    os._exit(126)


def _check(result: int, what: str) -> None:
    if result != 0:
        error = ctypes.get_errno()
        _fail(f"{what} failed: {os.strerror(error)}")


def _fresh_keyring(libc: ctypes.CDLL) -> None:
    number = _SYS_KEYCTL.get(os.uname().machine)
    if number is None:
        return  # the seccomp filter still refuses every key call inside
    if libc.syscall(number, _KEYCTL_JOIN_SESSION_KEYRING, None) < 0:
        # Kernels without keyrings, or a container profile refusing keyctl: nothing to inherit then.
        sys.stderr.write(
            f"airflow-byo sandbox launcher: no fresh session keyring ({os.strerror(ctypes.get_errno())})\n"
        )


def _mount_views(libc: ctypes.CDLL, view_root: str, views: list[list[object]]) -> None:
    _check(libc.unshare(_CLONE_NEWNS), "unshare(CLONE_NEWNS)")
    _check(libc.mount(None, b"/", None, _MS_REC | _MS_PRIVATE, None), "making mounts private")
    options = b"mode=0755,size=1m"
    _check(libc.mount(b"tmpfs", view_root.encode(), b"tmpfs", _MS_NOSUID | _MS_NODEV, options), "tmpfs")
    for index, (given, path, is_dir) in enumerate(views):
        # The worker's descriptor belongs to the old mount namespace, which a bind cannot take
        # from: open the path again here, and bind it only if it is still the same object.
        fd = os.open(str(path), os.O_PATH | os.O_CLOEXEC)
        mine, theirs = os.fstat(fd), os.fstat(int(given))  # type: ignore[call-overload]
        if (mine.st_dev, mine.st_ino) != (theirs.st_dev, theirs.st_ino):
            _fail(f"{path} changed while the sandbox was prepared")
        target = os.path.join(view_root, str(index))
        if is_dir:
            os.mkdir(target, 0o755)
        else:
            os.close(os.open(target, os.O_CREAT | os.O_WRONLY | os.O_CLOEXEC, 0o644))
        source = f"/proc/self/fd/{fd}".encode()
        _check(libc.mount(source, target.encode(), None, _MS_BIND | _MS_REC, None), f"binding {path}")
        os.close(fd)


def main() -> None:
    plan = marshal.loads(bytes.fromhex(sys.argv[1]))
    libc = ctypes.CDLL(None, use_errno=True)
    _fresh_keyring(libc)
    if plan.get("views"):
        _mount_views(libc, plan["view_root"], plan["views"])
    if plan.get("uid") is not None:
        os.setgroups([])
        os.setresgid(plan["gid"], plan["gid"], plan["gid"])
        os.setresuid(plan["uid"], plan["uid"], plan["uid"])
    keep = set(plan.get("keep_fds", ()))
    for name in os.listdir("/proc/self/fd"):  # nothing else of the worker reaches bwrap
        fd = int(name)
        if fd > 2 and fd not in keep:
            try:  # noqa: SIM105 -- no contextlib: every import here delays every child's start
                os.close(fd)
            except OSError:  # the listing's own descriptor
                pass
    argv = plan["exec"]
    try:
        os.execve(argv[0], argv, {})
    except OSError as exc:
        _fail(f"cannot run {argv[0]}: {exc.strerror}")


if __name__ == "__main__":
    main()
