"""Memory of a process, read from ``/proc/<pid>/status`` (what B3 and W1/W2 report)."""

from __future__ import annotations

__all__ = ["status_kb"]


def status_kb(pid: int | str = "self", key: str = "VmHWM") -> int:
    """
    A ``/proc/<pid>/status`` figure in KiB: ``VmHWM`` (the peak resident set) by default, or
    ``VmRSS`` (the resident set now); 0 when the process is gone or has no memory left.

    Unlike ``getrusage``'s ``ru_maxrss``, ``VmHWM`` starts afresh at ``exec``: a fresh
    ``python`` forked from a big process does not inherit that process's peak.
    """
    try:
        with open(f"/proc/{pid}/status", encoding="ascii", errors="replace") as handle:
            for line in handle:
                if line.startswith(f"{key}:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0
