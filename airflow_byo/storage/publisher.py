"""
What a run does with a file's outputs: stage them, check their names, publish them, or
quarantine the input instead.

The :class:`Publisher` owns the run's local output staging directory (the children's drop folders
and the taken folder of :class:`~airflow_byo.runner.output_handoff.OutputStaging`), keeps output
names unique within the run, publishes each output through
:meth:`Location.publish <airflow_byo.storage.location.Location.publish>` (atomic per backend)
and returns the final URLs, which the summary, the quarantine log line and lineage reuse.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import time
from typing import TYPE_CHECKING

from airflow_byo.exceptions import ByoConfigError
from airflow_byo.faults import crash_point
from airflow_byo.runner.output_handoff import OutputStaging, discard_outputs
from airflow_byo.scratch import scratch
from airflow_byo.storage.backends.base import stale_age

if TYPE_CHECKING:
    from collections.abc import Sequence
    from types import TracebackType

    from airflow_byo.results import FileOutcome, StagedOutput
    from airflow_byo.storage.backends.base import PendingOutput, SourceFile, StagedInput
    from airflow_byo.storage.location import Location

__all__ = ["Publisher"]

log = logging.getLogger(__name__)


class Publisher:
    """
    Publishes the outputs of one run to ``destination`` (use as a context manager: it creates
    and removes the output staging directory).

    :param destination: where outputs go.
    :param quarantine: where ``error_policy: quarantine`` copies failed inputs and their errors.
    :param lease_seconds: the flow's ``job_config.lease_seconds``: an incomplete upload in a
        remote destination (S3 multipart upload, SFTP ``.byo-`` temporary) whose writer cannot be
        told dead is removed when idle for longer than that, and never sooner than an hour
        (:func:`~airflow_byo.storage.backends.base.stale_age` says why).
    :param stale_after: that idle time itself, instead of the one derived from the lease.
    """

    def __init__(
        self,
        destination: Location,
        quarantine: Location | None = None,
        *,
        lease_seconds: float = 0.0,
        stale_after: float | None = None,
    ) -> None:
        self.destination = destination
        self.stale_after = stale_age(lease_seconds) if stale_after is None else stale_after
        self.quarantine_location = quarantine
        self._reserved: dict[str, str] = {}  # output name -> input url that produced it in this run
        self._staging = destination.output_staging()
        self.staging_dir = ""

    def __enter__(self) -> Publisher:
        self.staging_dir = self._staging.__enter__()
        self.staging = OutputStaging(self.staging_dir)
        removed = self.destination.sweep_stale_uploads(self.stale_after)
        if removed:
            log.warning(
                "Removed %d leftover(s) of killed runs from %s: %s",
                len(removed),
                self.destination.describe(),
                ", ".join(removed[:5]) + (f" and {len(removed) - 5} more" if len(removed) > 5 else ""),
            )
        return self

    @property
    def swept(self) -> list[str]:
        """What killed workers left in the destination and this run removed so far."""
        return list(self.destination.leftovers_removed)

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._staging.__exit__(kind, exc, tb)

    def reserve(self, input_url: str, outputs: Sequence[StagedOutput]) -> str | None:
        """
        Reserve the output names of one input; the error when another input wrote one already
        (its outputs are then discarded: they will never be published).
        """
        clashes = [o.name for o in outputs if o.name in self._reserved]
        if clashes:
            discard_outputs(outputs)
            return (
                f"output {clashes[0]!r} was already written by {self._reserved[clashes[0]]} in this run; "
                "make output names unique per input, e.g. job_config.output_name "
                "'{rel_dir}/{stem}.{ext}' or include the input's name in ctx.output() names"
            )
        for output in outputs:
            self._reserved[output.name] = input_url
        return None

    def publish(self, outputs: Sequence[StagedOutput]) -> list[str]:
        """
        Publish one file's outputs, all or nothing; return their final URLs.

        Every output is prepared first (names and links checked, directories made, SFTP uploads
        to temporaries), then each is committed in one atomic step; if one fails, those already
        committed are removed again before the error is raised. The staged files are removed.
        """
        pending: list[PendingOutput] = []
        try:
            for output in outputs:
                crash_point("uploading")
                pending.append(self.destination.prepare_publish(output, output.name))
            urls = [p.commit() for p in pending]
            crash_point("published")
            return urls
        except BaseException:
            self._retract(pending)
            raise
        finally:
            for p in pending:
                p.close()
            discard_outputs(outputs)

    def _retract(self, pending: Sequence[PendingOutput]) -> None:
        for output in pending:
            if not output.committed:
                continue
            try:
                output.retract()
            except Exception as exc:  # noqa: BLE001 -- the first error is the one to raise
                log.error(
                    "Could not remove output %s again after another output of the same file failed: %s; "
                    "delete it by hand (the file will be processed again)",
                    output.url,
                    exc,
                )

    def quarantine(self, file: SourceFile, staged: StagedInput, outcome: FileOutcome) -> str:
        """Copy a failed input and its error record to the quarantine location; return the input's new URL."""
        if self.quarantine_location is None:
            raise ByoConfigError("error_policy 'quarantine' needs a quarantine location")
        record = {
            "url": file.url,
            "size": file.size,
            "mtime": file.mtime,
            "etag": file.etag,
            "attempts": outcome.attempts,
            "status": outcome.status,
            "error_type": outcome.error_type,
            "error": outcome.error,
            "traceback": outcome.traceback,
            "quarantined_at": time.time(),
        }
        with scratch("quarantine") as work:
            error_file = os.path.join(work, "error.json")
            with open(error_file, "w", encoding="utf-8") as handle:
                json.dump(record, handle, indent=2, default=str)
            copy = os.path.join(work, "input")
            shutil.copyfile(staged.path, copy)  # publish() moves local files: never move the source
            url = self.quarantine_location.publish(copy, file.relative_path)
            self.quarantine_location.publish(error_file, f"{file.relative_path}.error.json")
        return url
