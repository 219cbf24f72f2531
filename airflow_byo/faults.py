"""
Named crash points for fault-injection tests (the way Dagster's sensor tests inject crashes).

Off unless ``BYO_CRASH_AT`` is set, e.g. ``BYO_CRASH_AT=published:3`` kills the process with
SIGKILL the third time the run reaches the ``published`` point. Points, in the order a file meets
them: ``listed``, ``claimed``, ``downloaded``, ``processed``, ``uploading``, ``published``
(outputs written, ledger not yet committed), ``committed``.
"""

from __future__ import annotations

import os
import signal

__all__ = ["crash_point"]

_armed = os.environ.get("BYO_CRASH_AT", "")
_name, _, _nth = _armed.partition(":")
_remaining = int(_nth or 1)


def crash_point(name: str) -> None:
    """SIGKILL this process if the armed crash point is ``name`` (and its count is reached)."""
    global _remaining
    if not _armed or name != _name:
        return
    _remaining -= 1
    if _remaining <= 0:
        os.kill(os.getpid(), signal.SIGKILL)
