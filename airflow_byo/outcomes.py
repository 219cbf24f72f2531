"""
What happens to one file, as the runner, the publisher and the summary pass it between them.

These types sit below all three (and below the module that checks the child's messages), so none
of them imports upward. Standard library only.
"""

from __future__ import annotations

import errno
import os
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:
    from airflow_byo.runtime.protocol import DecodedPreview, Notify

__all__ = ["FileOutcome", "OutcomeStatus", "StagedOutput"]

OutcomeStatus = Literal["done", "error", "timeout", "crashed"]


@dataclass(frozen=True)
class StagedOutput:
    """
    One output of a file, taken out of the child's reach and checked by the worker
    (:mod:`airflow_byo.runner.output_handoff`): a regular file of ``size`` bytes at
    ``local_path``, in a folder no child can see, with a fixed mode. Every later read opens it
    again with :func:`~airflow_byo.runner.output_handoff.open_staged`, which checks that it is
    still this inode (``device``, ``inode``) and this size.
    """

    name: str
    local_path: str
    size: int
    records: int | None
    #: Test mode: the schema and first rows the child decoded (binary formats only).
    decoded: DecodedPreview | None = None
    device: int = 0
    inode: int = 0

    def open(self) -> int:
        """
        A read-only descriptor of the taken output, checked to be the very file that was taken.

        :raises OSError: it is gone or was replaced (only the worker itself can touch the taken folder).
        """
        fd = os.open(self.local_path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
        info = os.fstat(fd)
        if (info.st_dev, info.st_ino, info.st_size) != (self.device, self.inode, self.size):
            os.close(fd)
            raise OSError(errno.ESTALE, "the staged output was replaced", self.local_path)
        os.set_blocking(fd, True)
        return fd


@dataclass
class FileOutcome:
    """What happened to one file inside the child."""

    status: OutcomeStatus
    seconds: float = 0.0
    outputs: list[StagedOutput] = field(default_factory=list)
    insights: dict[str, Any] = field(default_factory=dict)
    counters: dict[str, float] = field(default_factory=dict)
    notifications: list[Notify] = field(default_factory=list)
    error_type: str = ""
    error: str = ""
    traceback: str = ""
    attempts: int = 1
    quarantined: bool = False

    @property
    def ok(self) -> bool:
        return self.status == "done"
