"""
What happened to each file and to the whole run, as the runner, the publisher, the ledger and the
summary pass it between them: below all of them (and below the module that checks the child's
messages), so none imports upward. Standard library only.

- :class:`StagedOutput`, :class:`FileOutcome`: a file's outputs and what happened in the child.
- :func:`file_result`: the one place a file's status is decided, from its outcome and publishing.
- :class:`FileTally` (from :mod:`airflow_byo.tally`): what a run adds up as it goes, in memory that
  does not grow with the run: counts, sums, its first results, a sample of durations, insights.
- :class:`RunSummary`: a finished run's report, built once from its tally and what the run knows
  around it (listing, claims, environment); compact enough for XCom, readable in the log.
"""

from __future__ import annotations

import errno
import os
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Literal

from airflow_byo.tally import FileTally

if TYPE_CHECKING:
    from airflow_byo.runtime.protocol import DecodedPreview, Notify

__all__ = [
    "MAX_FILES_IN_SUMMARY",
    "ClaimsReport",
    "FileOutcome",
    "FileResult",
    "FileStatus",
    "FileTally",
    "OutcomeStatus",
    "RunSummary",
    "StagedOutput",
    "file_result",
]

OutcomeStatus = Literal["done", "error", "timeout", "crashed"]
FileStatus = Literal["processed", "failed", "quarantined", "skipped"]

#: Per-file statuses kept in the summary; the rest are only counted (XCom must stay small).
MAX_FILES_IN_SUMMARY = 100
_MAX_ERROR_CHARS = 500


@dataclass(frozen=True)
class StagedOutput:
    """
    One output of a file, taken out of the child's reach and checked by the worker
    (:mod:`airflow_byo.runner.output_handoff`): a regular file of ``size`` bytes at
    ``local_path``, in a folder no child can see, with a fixed mode. Every later read opens it
    again with :meth:`open`, which checks that it is still this inode (``device``, ``inode``)
    and this size.
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
    """What happened to one file inside the child (``quarantined_to``: where the input was copied)."""

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
    quarantined_to: str | None = None

    @property
    def ok(self) -> bool:
        return self.status == "done"


@dataclass
class FileResult:
    """The outcome of one input file, as the ledger records it and the summary reports it."""

    url: str
    status: FileStatus
    size: int = 0
    seconds: float = 0.0
    outputs: list[str] = field(default_factory=list)
    output_urls: list[str] = field(default_factory=list)
    bytes_out: int = 0
    records_out: int | None = None
    error_type: str = ""
    error: str = ""

    def add_output(self, output: StagedOutput, url: str | None) -> None:
        """Count one output; ``url`` is where it was published (``None`` in test mode)."""
        self.outputs.append(output.name)
        if url is not None:
            self.output_urls.append(url)
        self.bytes_out += output.size
        if output.records is not None:
            self.records_out = (self.records_out or 0) + output.records

    def as_dict(self) -> dict[str, Any]:
        entry: dict[str, Any] = {"url": self.url, "status": self.status, "seconds": round(self.seconds, 4)}
        if self.outputs:
            entry["outputs"] = self.outputs
        if self.error:
            entry["error"] = f"{self.error_type}: {self.error}"[:_MAX_ERROR_CHARS]
        return entry


def file_result(
    url: str,
    size: int,
    outcome: FileOutcome | None,
    *,
    published: list[str] | None = None,
    refused: tuple[str, str] | None = None,
) -> FileResult:
    """
    A file's result: the one place its status is decided.

    - no ``outcome`` (a ``fail_fast`` run stopped before the file): skipped;
    - the function failed: quarantined when the input was copied to quarantine, else failed;
    - its outputs were ``refused`` (error type and message: a name clash, a failed publish): failed;
    - else processed, with its outputs at their ``published`` URLs (none in test mode).
    """
    if outcome is None:
        return FileResult(url=url, status="skipped", size=size)
    result = FileResult(url=url, status="processed", size=size, seconds=outcome.seconds)
    if not outcome.ok:
        result.status = "quarantined" if outcome.quarantined_to else "failed"
        result.error_type, result.error = outcome.error_type, outcome.error
    elif refused is not None:
        result.status = "failed"
        result.error_type, result.error = refused
    else:
        urls: list[str | None] = list(published) if published is not None else [None] * len(outcome.outputs)
        for output, output_url in zip(outcome.outputs, urls, strict=True):
            result.add_output(output, output_url)
    return result


@dataclass(frozen=True)
class ClaimsReport:
    """How a run's files stood in the ledger: listed, taken by other runs, held, taken over from dead runs."""

    files_listed: int | None = None
    files_taken_elsewhere: int = 0
    #: Files held by live claims of other (possibly dead) runs when this run started.
    files_claimed_elsewhere: int = 0
    claims_elsewhere_expire: float | None = None  # earliest expiry of those claims (epoch seconds)
    #: Per holding run: ``{"run": token, "holder": "run 1a2b3c4d (host ..., pid ..., dag ...)",
    #: "files": n, "until": iso}``.
    claim_holders: list[dict[str, Any]] = field(default_factory=list)
    #: Files whose claims this run took over from provably dead runs, and from which runs (why).
    files_taken_over: int = 0
    claims_taken_over: list[dict[str, Any]] = field(default_factory=list)


@dataclass(frozen=True)
class RunSummary:
    """
    Everything a finished run reports, built once: the runner's :class:`FileTally` and what the
    run knew around it. ``files_seen`` are the files it was given (claimed or not).
    """

    source: str
    destination: str | None
    tally: FileTally = field(default_factory=FileTally)
    files_seen: int = 0
    test_mode: bool = False
    sandbox: str = "off"  # the mode in effect: "bubblewrap" or "off"
    runtime: str = "default"  # the named runtime the flow ran on
    requirements: list[str] = field(default_factory=list)  # of its environment, the runtime's included
    environment_seconds: float = 0.0
    #: Children run side by side (``job_config.workers``), and the files each one handled.
    workers: int = 1
    files_per_worker: list[int] = field(default_factory=list)
    #: What killed runs left in the destination and this run removed (S3 uploads, SFTP temporaries).
    leftovers_removed: list[str] = field(default_factory=list)
    seconds: float = 0.0
    claims: ClaimsReport = field(default_factory=ClaimsReport)
    #: Notifications the flow's channels took and refused (``None``: the flow has no channels).
    delivered: tuple[int, int] | None = None

    @property
    def files(self) -> list[FileResult]:
        """The run's first results (see :attr:`FileTally.files`); ``tally.counts`` has them all."""
        return self.tally.files

    @property
    def failed(self) -> list[FileResult]:
        """The run's first failed results; :attr:`files_failed` counts them all."""
        return self.tally.failed

    @property
    def files_failed(self) -> int:
        return self.tally.count("failed")

    def as_dict(self) -> dict[str, Any]:
        """The compact, JSON-serialisable form pushed to XCom (its size does not grow with the run)."""
        tally, claims, durations = self.tally, self.claims, self.tally.durations
        counters = dict(tally.counters)
        if self.delivered is not None:
            counters["notifications_delivered"], counters["notifications_failed"] = self.delivered
        return {
            "source": self.source,
            "destination": self.destination,
            "test_mode": self.test_mode,
            "sandbox": self.sandbox,
            "runtime": self.runtime,
            "requirements": list(self.requirements),
            "files_seen": self.files_seen,
            "files_processed": tally.count("processed"),
            "files_failed": tally.count("failed"),
            "files_skipped": tally.count("skipped"),
            "files_quarantined": tally.count("quarantined"),
            "files_listed": claims.files_listed,
            "files_taken_elsewhere": claims.files_taken_elsewhere,
            "files_claimed_elsewhere": claims.files_claimed_elsewhere,
            "claims_elsewhere_expire": _iso(claims.claims_elsewhere_expire),
            "claim_holders": claims.claim_holders[:10],
            "files_taken_over": claims.files_taken_over,
            "claims_taken_over": claims.claims_taken_over[:10],
            "leftovers_removed": len(self.leftovers_removed),
            "leftovers_removed_sample": self.leftovers_removed[:5],
            "bytes_in": tally.bytes_in,
            "bytes_out": tally.bytes_out,
            "records_in": counters.get("records_in"),
            "records_out": tally.records_out,
            "outputs_written": tally.outputs_written,
            "seconds_total": round(self.seconds, 3),
            "seconds_environment": round(self.environment_seconds, 3),
            "seconds_per_file_p50": _rounded(durations.median),
            # False past DURATIONS_KEPT files: the p50 is then the median of a random sample of them
            "seconds_per_file_p50_exact": durations.exact,
            "seconds_per_file_max": _rounded(durations.max),
            "notifications": tally.notifications,
            "workers": self.workers,
            "files_per_worker": self.files_per_worker,
            "insights": tally.insights,
            "counters": counters,
            "insights_dropped": tally.insights_dropped,
            "files": [f.as_dict() for f in self.files[:MAX_FILES_IN_SUMMARY]],
            "files_not_listed": max(0, tally.total - MAX_FILES_IN_SUMMARY),
        }

    def format_table(self) -> str:
        """A readable table of the summary for the end of the task log."""
        data = self.as_dict()
        rows = [*self._head_rows(data), *self._claim_rows(data), *self._tail_rows(data)]
        rows += [(f"insight {key}", value) for key, value in sorted(data["insights"].items())]
        rows += [(f"counter {key}", value) for key, value in sorted(data["counters"].items())]
        rows += [(f"FAILED {f.url}", f"{f.error_type}: {f.error}"[:200]) for f in self.failed[:20]]
        width = max(len(label) for label, _ in rows)
        title = "BYO flow test run" if self.test_mode else "BYO flow run summary"
        return "\n".join([title, *(f"  {label.ljust(width)}  {value}" for label, value in rows)])

    @staticmethod
    def _head_rows(data: dict[str, Any]) -> list[tuple[str, Any]]:
        return [
            ("source", data["source"]),
            ("destination", data["destination"] or "-"),
            ("sandbox", data["sandbox"]),
            ("runtime (requirements)", f"{data['runtime']} ({', '.join(data['requirements']) or '-'})"),
            (
                "files seen / processed / failed / skipped",
                " / ".join(str(data[f"files_{k}"]) for k in ("seen", "processed", "failed", "skipped")),
            ),
            ("files quarantined", data["files_quarantined"]),
            (
                "files listed / taken by other runs",
                f"{_or_dash(data['files_listed'])} / {data['files_taken_elsewhere']}",
            ),
        ]

    def _claim_rows(self, data: dict[str, Any]) -> list[tuple[str, Any]]:
        claims, rows = self.claims, []
        if claims.files_claimed_elsewhere:
            held = f"{data['files_claimed_elsewhere']} ({data['claims_elsewhere_expire']})"
            rows.append(("files claimed by other runs (until)", held))
        rows += [
            (f"  held by {h['holder']}", f"{h['files']} until {h['until']}") for h in claims.claim_holders[:5]
        ]
        if claims.files_taken_over:
            rows.append(("files taken over from dead runs", data["files_taken_over"]))
        if self.leftovers_removed:
            rows.append(("leftovers of killed runs removed", _leftovers(self.leftovers_removed)))
        return rows

    def _tail_rows(self, data: dict[str, Any]) -> list[tuple[str, Any]]:
        return [
            ("bytes in / out", f"{data['bytes_in']:,} / {data['bytes_out']:,}"),
            ("records in / out", f"{_or_dash(data['records_in'])} / {_or_dash(data['records_out'])}"),
            ("outputs written", data["outputs_written"]),
            ("workers (files each)", f"{self.workers} ({', '.join(map(str, self.files_per_worker)) or '-'})"),
            ("seconds total (environment)", f"{data['seconds_total']} ({data['seconds_environment']})"),
            (
                "seconds per file p50 / max",
                ("" if data["seconds_per_file_p50_exact"] else "~")  # a sampled median
                + " / ".join(_or_dash(data[f"seconds_per_file_{k}"]) for k in ("p50", "max")),
            ),
        ]


def _rounded(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds, 4)


def _iso(epoch: float | None) -> str | None:
    return None if epoch is None else datetime.fromtimestamp(epoch, UTC).isoformat(timespec="seconds")


def _leftovers(names: list[str]) -> str:
    more = f", {len(names) - 3} more" if len(names) > 3 else ""
    return f"{len(names)} ({', '.join(names[:3])}{more})"


def _or_dash(value: Any) -> str:
    return "-" if value is None else str(value)
