"""The child runtime's hints for errors caused by its limits: each names the job_config key."""

from __future__ import annotations

import errno

import pytest

from airflow_byo.runtime.limits import CpuTimeExceeded, limit_hint

JOB = {"cpu_seconds": 30, "max_output_mb": 5, "max_processes": 8}


@pytest.mark.parametrize(
    ("exc", "hint"),
    [
        (CpuTimeExceeded("cpu"), " (job_config.cpu_seconds=30: raise it or make the function faster)"),
        (
            OSError(errno.EFBIG, "File too large"),
            " (job_config.max_output_mb=5 caps every file the function writes)",
        ),
        (
            BlockingIOError(errno.EAGAIN, "Resource temporarily unavailable"),
            " (the sandbox allows job_config.max_processes=8 processes and threads at once)",
        ),
        (OSError(errno.EAGAIN, "Resource temporarily unavailable"), " (the sandbox allows job_config"),
        (PermissionError(errno.EPERM, "Operation not permitted"), " (the sandbox refuses some system calls"),
        (OSError(errno.EPERM, "Operation not permitted"), " (the sandbox refuses some system calls"),
        (ValueError("bad row"), ""),
        (OSError(errno.ENOENT, "No such file"), ""),
        (PermissionError(errno.EACCES, "Permission denied"), ""),  # file modes, not the filter
    ],
)
def test_a_limit_error_names_its_key(exc: BaseException, hint: str) -> None:
    got = limit_hint(exc, JOB)
    assert got.startswith(hint) if hint else got == ""


def test_an_eperm_names_the_refused_families_and_the_readme() -> None:
    assert limit_hint(PermissionError(errno.EPERM, "Operation not permitted"), JOB) == (
        " (the sandbox refuses some system calls with this error: ptrace, mounts, new namespaces, "
        "kernel keyrings, bpf, perf events, io_uring, kernel modules, reboot and a few more; this may "
        'be why. See the README, section "Sandbox")'
    )
