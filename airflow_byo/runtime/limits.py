"""
Resource limits the child sets on itself before running the user's code (standard library only).

Memory (``RLIMIT_AS``) and the size of any file the function writes (``RLIMIT_FSIZE``) hold for
the child's life (in the sandbox they are set before the interpreter starts, so the function
cannot lift them). CPU time is a budget per file: a profiling timer (``ITIMER_PROF``, the CPU time
of all the child's threads, microsecond-precise) is armed with ``cpu_seconds`` before each file,
and the ``SIGPROF`` it raises becomes an error of that file. The function runs in this process and
could disarm it, so the worker also measures the CPU time of the child and everything it started,
and kills it once a file's budget is passed (``airflow_byo.runner.child_usage``). The number of
processes is capped from outside, by the sandbox. Wall-clock time is enforced by the worker, which
kills the child. The sandbox's seccomp filter answers the system
calls it refuses with ``EPERM``, which looks like any other "Operation not permitted", so
:func:`limit_hint` adds to every ``EPERM`` error that the sandbox may be why.
"""

from __future__ import annotations

import errno
import resource
import signal
from typing import Any

__all__ = ["CpuTimeExceeded", "limit_hint", "set_child_limits", "start_cpu_budget", "stop_cpu_budget"]


class CpuTimeExceeded(Exception):
    """Raised in the function when it used up the CPU time of one file."""


def _on_cpu_timer(signum: int, frame: Any) -> None:
    raise CpuTimeExceeded("the function used up its CPU time for this file")


def set_child_limits(job_config: dict[str, Any]) -> None:
    """Memory and output-size caps for the whole child; a handler for the per-file CPU budget."""
    if job_config.get("max_memory_mb"):
        limit = int(job_config["max_memory_mb"]) * 1024 * 1024
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    if job_config.get("max_output_mb"):
        limit = int(job_config["max_output_mb"]) * 1024 * 1024
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
    # Python ignores SIGXFSZ, so a too-large write fails with EFBIG ("File too large").
    signal.signal(signal.SIGPROF, _on_cpu_timer)


def start_cpu_budget(cpu_seconds: float | None) -> None:
    """Give the next file ``cpu_seconds`` of CPU time from now on (all threads of the child)."""
    if cpu_seconds:
        signal.setitimer(signal.ITIMER_PROF, float(cpu_seconds))


def stop_cpu_budget() -> None:
    """The file is done: what is left of its budget is not the next file's."""
    signal.setitimer(signal.ITIMER_PROF, 0)


def limit_hint(exc: BaseException, job_config: dict[str, Any]) -> str:
    """What to add to an error caused by a limit (the ``job_config`` key to change) or the sandbox."""
    if isinstance(exc, CpuTimeExceeded):
        return (
            f" (job_config.cpu_seconds={job_config.get('cpu_seconds')}: raise it or make the function faster)"
        )
    if isinstance(exc, OSError) and exc.errno == errno.EFBIG:
        return (
            f" (job_config.max_output_mb={job_config.get('max_output_mb')} caps every file the "
            "function writes)"
        )
    if isinstance(exc, BlockingIOError) or (isinstance(exc, OSError) and exc.errno == errno.EAGAIN):
        return (
            f" (the sandbox allows job_config.max_processes={job_config.get('max_processes')} "
            "processes and threads at once)"
        )
    if isinstance(exc, OSError) and exc.errno == errno.EPERM:
        return (
            " (the sandbox refuses some system calls with this error: ptrace, mounts, new "
            "namespaces, kernel keyrings, bpf, perf events, io_uring, kernel modules, reboot and a "
            'few more; this may be why. See the README, section "Sandbox")'
        )
    return ""
