"""
The seccomp filter of every sandboxed child: bubblewrap loads it (``bwrap --seccomp FD``) just
before it starts the child, so the child and everything it starts keep it for life (issue #21).

A deny list modelled on Docker's default profile (moby ``profiles/seccomp/default.json``): every
ordinary system call stays allowed, so user libraries work as they do elsewhere; the calls below
fail with ``EPERM`` (the child's error then says the sandbox may be why, see
:func:`airflow_byo.runtime.limits.limit_hint`). The child has no capabilities, so the kernel
already refuses most of them; the filter removes the kernel code behind them from its reach, which
is where container escapes come from. Built with libseccomp (PyPI ``pyseccomp``, a ctypes binding
to Debian's ``libseccomp2``), never by hand; compiled once per process.

Refused with ``EPERM`` (:data:`DENIED_SYSCALLS`; names this architecture lacks are skipped):

- other processes: ``ptrace`` (the sandbox's init could be frozen), ``process_vm_readv/writev``,
  ``process_madvise``, ``kcmp``, ``pidfd_getfd`` (steal another process's descriptors);
- the kernel keyrings: ``keyctl``, ``add_key``, ``request_key`` (the worker's session keyring);
- large kernel attack surfaces: ``bpf``, ``perf_event_open``, ``userfaultfd`` (exploit timing),
  ``io_uring_*`` (bypasses this filter for the calls it submits), ``fanotify_init``;
- new namespaces and mounts: ``unshare``, ``setns``, ``mount``, ``umount(2)``, ``pivot_root``,
  ``chroot``, the new mount API (``fsopen``, ``fsconfig``, ``fsmount``, ``fspick``, ``move_mount``,
  ``open_tree``, ``open_tree_attr``, ``mount_setattr``);
- the machine: kernel modules, ``kexec_*``, ``reboot``, ``swapon/off``, ``acct``, ``quotactl*``,
  setting the clock (``settimeofday``, ``stime``, ``clock_settime``, ``clock_adjtime``), host and
  domain names, I/O ports (``iopl``, ``ioperm``, ``vm86``), the kernel log (``syslog``),
  ``vhangup``;
- files by handle (``name_to_handle_at``, ``open_by_handle_at``: the "shocker" escape) and
  obsolete calls (``lookup_dcookie``, ``nfsservctl``, ``uselib``, ``_sysctl``, ``sysfs``, ``ustat``).

Refused by their arguments (libseccomp compares registers; one comparison per argument and rule):

- ``clone`` with any namespace flag (:data:`CLONE_NAMESPACE_FLAGS`; argument 0, 1 on s390).
  ``CLONE_NEWTIME`` is not among them: in ``clone`` its bit is part of the exit signal, and it is
  reachable only through ``unshare`` (refused) and ``clone3``.
- ``clone3`` fails with ``ENOSYS``: its flags are in memory, out of a filter's reach, and glibc
  then falls back to ``clone``, so threads and subprocesses keep working.
- ``personality`` except Docker's values (:data:`PERSONALITY_ALLOWED`: Linux, 32-bit, uname26,
  and ``0xffffffff``, the query); no ``ADDR_NO_RANDOMIZE``, ``READ_IMPLIES_EXEC``...
- ``ioctl`` ``TIOCSTI`` (type into a terminal) and ``TIOCLINUX`` (:data:`DENIED_IOCTLS`).
- ``socket(AF_VSOCK)``: vsock is not network-namespaced and reaches the hypervisor host.

Left allowed on purpose: ``adjtimex`` (its mode is in memory; setting the clock needs
``CAP_SYS_TIME``, which the child lacks) and the NUMA calls (``mbind``, ``get/set_mempolicy``,
``move_pages``; Docker refuses them, but OpenMP/BLAS runtimes use them on the child's own memory).
A deny list cannot refuse system calls newer than the installed libseccomp knows.

System calls of another architecture (i386 through ``int 0x80``, x32 on x86_64) kill the whole
child: the filter is for the native architecture only, and its bad-architecture action is set to
``KILL_PROCESS`` (libseccomp's default kills only the thread).
"""

from __future__ import annotations

import contextlib
import errno
import functools
import io
import os
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from types import ModuleType

__all__ = [
    "CLONE_NAMESPACE_FLAGS",
    "DENIED_IOCTLS",
    "DENIED_SYSCALLS",
    "PERSONALITY_ALLOWED",
    "seccomp_fd",
    "seccomp_program",
    "seccomp_status",
]

DENIED_SYSCALLS: tuple[str, ...] = (
    # other processes
    *("ptrace", "process_vm_readv", "process_vm_writev", "process_madvise", "kcmp", "pidfd_getfd"),
    # kernel keyrings
    *("keyctl", "add_key", "request_key"),
    # large kernel attack surfaces
    *("bpf", "perf_event_open", "userfaultfd", "fanotify_init"),
    *("io_uring_setup", "io_uring_enter", "io_uring_register"),
    # namespaces and mounts
    *("unshare", "setns", "mount", "umount", "umount2", "pivot_root", "chroot"),
    *("fsopen", "fsconfig", "fsmount", "fspick", "move_mount", "open_tree", "open_tree_attr"),
    "mount_setattr",
    # kernel modules, kexec, reboot, swap, accounting, quotas
    *("init_module", "finit_module", "delete_module", "create_module", "get_kernel_syms"),
    *("query_module", "kexec_load", "kexec_file_load", "reboot", "swapon", "swapoff", "acct"),
    *("quotactl", "quotactl_fd"),
    # the host's clock and names
    *("settimeofday", "stime", "clock_settime", "clock_settime64", "clock_adjtime"),
    *("clock_adjtime64", "sethostname", "setdomainname"),
    # hardware, the kernel log, terminals
    *("iopl", "ioperm", "vm86", "vm86old", "syslog", "vhangup"),
    # files by handle; obsolete calls
    *("name_to_handle_at", "open_by_handle_at"),
    *("lookup_dcookie", "nfsservctl", "uselib", "_sysctl", "sysfs", "ustat"),
)

# CLONE_NEWNS, NEWCGROUP, NEWUTS, NEWIPC, NEWUSER, NEWPID, NEWNET: Docker's mask 0x7E020000.
CLONE_NAMESPACE_FLAGS: tuple[int, ...] = (
    0x00020000,
    0x02000000,
    0x04000000,
    0x08000000,
    0x10000000,
    0x20000000,
    0x40000000,
)
PERSONALITY_ALLOWED: tuple[int, ...] = (0x0, 0x8, 0x20000, 0x20008, 0xFFFFFFFF)
DENIED_IOCTLS: tuple[int, ...] = (0x5412, 0x541C)  # TIOCSTI, TIOCLINUX
_AF_VSOCK = 40
_LOW32 = 0xFFFFFFFF  # the kernel reads these arguments as 32-bit ints: ignore the upper half

_INSTALL = (
    "install the Debian package libseccomp2 (apt-get install -y libseccomp2) and the Python "
    "package pyseccomp in the worker's environment (pip install 'pyseccomp>=0.1.2')"
)


class _Unavailable(RuntimeError):
    """The filter cannot be built here; the message says why (without the fix)."""


@functools.cache
def seccomp_status() -> tuple[bool, str]:
    """
    Whether the filter can be built here: pyseccomp importable, libseccomp found, compiling works.

    Cached. The kernel must support seccomp too; bwrap itself reports if loading fails.

    :return: ``(True, "libseccomp <version>: <n> BPF instructions")`` or
        ``(False, "<why>; <how to fix>")``.
    """
    if not _kernel_has_seccomp():
        return False, (
            "this kernel has no seccomp (no 'Seccomp:' in /proc/self/status); use a kernel built "
            "with CONFIG_SECCOMP_FILTER (every distribution kernel is)"
        )
    try:
        program = seccomp_program()
    except _Unavailable as exc:
        return False, f"{exc}; {_INSTALL}"
    return True, f"libseccomp {_libseccomp_version()}: {len(program) // 8} BPF instructions"


@functools.cache
def seccomp_program() -> bytes:
    """
    The compiled filter (classic BPF, ``struct sock_filter`` array) for the native architecture.

    Built once per process (a few milliseconds); every child reuses the same bytes.

    :raises RuntimeError: when pyseccomp or libseccomp is missing or cannot build it; check
        :func:`seccomp_status` first for the message with the fix.
    """
    try:
        import pyseccomp
    except ImportError as exc:
        raise _Unavailable(f"the Python package pyseccomp is not installed ({exc})") from exc
    except (OSError, RuntimeError) as exc:  # pyseccomp loads libseccomp when imported
        raise _Unavailable(f"libseccomp could not be loaded: {exc}") from exc
    try:
        syscall_filter = _build(pyseccomp)
        with io.FileIO(os.memfd_create("byo-seccomp-build", os.MFD_CLOEXEC), "r+") as out:
            syscall_filter.export_bpf(out)
            out.seek(0)
            return out.read()
    except OSError as exc:
        raise _Unavailable(f"libseccomp could not build the sandbox's seccomp filter: {exc}") from exc


def seccomp_fd() -> int:
    """
    A new file descriptor holding :func:`seccomp_program`, at offset 0, for ``bwrap --seccomp FD``.

    Close-on-exec: pass it with ``subprocess.Popen(pass_fds=[fd])``, which makes it inheritable in
    the child only; one descriptor per bwrap (it reads it to the end). The caller closes it.
    """
    program = seccomp_program()
    fd = os.memfd_create("byo-seccomp", os.MFD_CLOEXEC)
    try:
        view = memoryview(program)
        while view:
            view = view[os.write(fd, view) :]
        os.lseek(fd, 0, os.SEEK_SET)
    except BaseException:
        os.close(fd)
        raise
    return fd


def _build(sc: ModuleType) -> Any:
    """The filter: default ALLOW, the deny list, the argument rules (see the module docstring)."""
    if sc.resolve_syscall(sc.Arch.NATIVE, "clone3") < 0:  # the kernel has it since 5.3
        raise _Unavailable(
            f"libseccomp {_libseccomp_version()} does not know clone3, so the filter could not stop "
            "it making namespaces: install libseccomp2 >= 2.5"
        )
    deny = sc.ERRNO(errno.EPERM)
    syscall_filter = sc.SyscallFilter(sc.ALLOW)
    syscall_filter.set_attr(sc.Attr.ACT_BADARCH, sc.KILL_PROCESS)
    # A binary tree of system call numbers: a few comparisons per allowed call, not ~70.
    # libseccomp < 2.5 refuses the attribute; its linear list works the same, a little slower.
    with contextlib.suppress(OSError):
        syscall_filter.set_attr(sc.Attr.CTL_OPTIMIZE, 2)
    for name in _denied_here(sc):
        syscall_filter.add_rule(deny, name)
    syscall_filter.add_rule(sc.ERRNO(errno.ENOSYS), "clone3")
    flags_arg = 1 if sc.system_arch() in (sc.Arch.S390, sc.Arch.S390X) else 0
    for flag in CLONE_NAMESPACE_FLAGS:
        syscall_filter.add_rule(deny, "clone", sc.Arg(flags_arg, sc.MASKED_EQ, flag, flag))
    for request in DENIED_IOCTLS:
        syscall_filter.add_rule(deny, "ioctl", sc.Arg(1, sc.MASKED_EQ, _LOW32, request))
    syscall_filter.add_rule(deny, "socket", sc.Arg(0, sc.MASKED_EQ, _LOW32, _AF_VSOCK))
    for op, a, b in _personality_denials(sc):
        syscall_filter.add_rule(deny, "personality", sc.Arg(0, op, a, b))
    return syscall_filter


def _personality_denials(sc: ModuleType) -> list[tuple[int, int, int]]:
    """
    ``(op, a, b)`` comparisons of ``personality``'s argument; matching any one of them refuses it.

    A rule holds one comparison per argument, so "not one of PERSONALITY_ALLOWED" is a union:
    with P = the 30 bits other than 0x8 and 0x20000, a 32-bit value whose P bits are neither all
    clear (0, 0x8, 0x20000, 0x20008) nor all set has, going round P, a set bit followed by a clear
    one: one masked rule per such pair. Left to refuse: the all-set values but 0xffffffff, and
    anything above 32 bits (glibc passes the persona zero-extended).
    """
    keep = 0x20008
    bits = [1 << i for i in range(32) if not (1 << i) & keep]
    comparisons = [(sc.MASKED_EQ, bit | bits[(k + 1) % len(bits)], bit) for k, bit in enumerate(bits)]
    all_p = _LOW32 & ~keep
    comparisons += [(sc.EQ, all_p | extra, 0) for extra in (0x0, 0x8, 0x20000)]
    comparisons.append((sc.GT, _LOW32, 0))
    return comparisons


def _denied_here(sc: ModuleType) -> tuple[str, ...]:
    """The names of DENIED_SYSCALLS this architecture has (libseccomp: < 0 means it has not)."""
    return tuple(name for name in DENIED_SYSCALLS if sc.resolve_syscall(sc.Arch.NATIVE, name) >= 0)


def _kernel_has_seccomp() -> bool:
    try:
        with open("/proc/self/status", encoding="ascii", errors="replace") as status:
            return any(line.startswith("Seccomp:") for line in status)
    except OSError:
        return False


def _libseccomp_version() -> str:
    import ctypes  # here, not at the top: ctypes.util alone takes ~20 ms to import
    import ctypes.util

    class _Version(ctypes.Structure):
        _fields_ = [("major", ctypes.c_uint), ("minor", ctypes.c_uint), ("micro", ctypes.c_uint)]

    try:
        library = ctypes.CDLL(ctypes.util.find_library("seccomp") or "libseccomp.so.2")
        library.seccomp_version.restype = ctypes.POINTER(_Version)
        version = library.seccomp_version().contents
    except (OSError, AttributeError):
        return "(version unknown)"
    return f"{version.major}.{version.minor}.{version.micro}"
