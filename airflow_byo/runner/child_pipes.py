"""
Reading a child's pipes: its messages (stdout) with a deadline and a size limit, and its stderr
line by line with a cap on each line, so the worker never holds more than one bounded line.
"""

from __future__ import annotations

import os
import selectors
import time
from typing import Any

from airflow_byo.runner.child_messages import MAX_MESSAGE_BYTES, ProtocolViolation

__all__ = ["MAX_STDERR_LINE_BYTES", "LineReader", "relay_lines"]

#: A longer line of the child's stderr is cut (and marked): the worker holds one line at a time.
MAX_STDERR_LINE_BYTES = 64 * 1024


class LineReader:
    """Read newline-terminated messages from a pipe with a deadline and a size limit."""

    def __init__(self, fd: int) -> None:
        self._fd = fd
        self._buffer = bytearray()
        self._selector = selectors.DefaultSelector()
        self._selector.register(fd, selectors.EVENT_READ)

    def readline(self, deadline: float | None) -> bytes | None:
        """Return one line, ``b""`` at EOF, or ``None`` when the deadline passes."""
        scanned = 0  # only new bytes are searched for the newline: no quadratic rescans
        while (end := self._buffer.find(b"\n", scanned)) < 0:
            if len(self._buffer) > MAX_MESSAGE_BYTES:
                raise ProtocolViolation(f"a message longer than {MAX_MESSAGE_BYTES} bytes")
            scanned = len(self._buffer)
            timeout = None if deadline is None else deadline - time.monotonic()
            if timeout is not None and timeout <= 0:
                return None
            if not self._selector.select(timeout):
                return None
            chunk = os.read(self._fd, 1 << 16)
            if not chunk:
                return b""
            self._buffer += chunk
        if end > MAX_MESSAGE_BYTES:  # its newline came in the same read as its excess
            raise ProtocolViolation(f"a message longer than {MAX_MESSAGE_BYTES} bytes")
        line = bytes(self._buffer[:end])
        del self._buffer[: end + 1]
        return line

    def close(self) -> None:
        self._selector.close()


def relay_lines(fd: int, emit: Any, limit: int = MAX_STDERR_LINE_BYTES) -> None:
    """
    Hand each line read from ``fd`` to ``emit`` until EOF, holding at most ``limit`` bytes: a
    longer line is emitted cut, with a note of how much was dropped, and its rest is skipped.
    """
    pending = bytearray()
    dropped = 0  # bytes of the current (over-long) line thrown away so far
    while chunk := os.read(fd, 1 << 16):
        start = 0
        while (end := chunk.find(b"\n", start)) >= 0:
            if dropped:
                dropped += end - start
                emit(bytes(pending), dropped)
            else:
                line = pending + chunk[start:end]
                emit(bytes(line[:limit]), max(0, len(line) - limit))
            pending.clear()
            dropped, start = 0, end + 1
        rest = chunk[start:]
        if dropped:
            dropped += len(rest)
        elif len(pending) + len(rest) > limit:
            room = limit - len(pending)
            pending += rest[:room]
            dropped = len(rest) - room
        else:
            pending += rest
    if pending or dropped:
        emit(bytes(pending), dropped)
