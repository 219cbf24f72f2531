"""
The run summary: what a flow run did, compact enough for XCom and readable in the task log.

It holds counts, sizes and durations, a capped list of per-file statuses, and the insights and
counters the processor published with ``ctx.insight()``/``ctx.count()`` -- never file contents.
"""

from __future__ import annotations

import json
import statistics
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:
    from airflow_byo.outcomes import StagedOutput

__all__ = ["MAX_FILES_IN_SUMMARY", "FileResult", "FileStatus", "RunSummary"]

#: Per-file statuses kept in the summary; the rest are only counted (XCom must stay small).
MAX_FILES_IN_SUMMARY = 100
#: The run's insights as JSON (the summary is an XCom): values that would pass it are dropped.
MAX_RUN_INSIGHT_BYTES = 1024 * 1024
_MAX_ERROR_CHARS = 500

FileStatus = Literal["processed", "failed", "quarantined", "skipped"]


@dataclass
class FileResult:
    """The outcome of one input file."""

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


@dataclass
class RunSummary:
    """Everything a run reports; built incrementally by the flow runner."""

    source: str
    destination: str | None
    test_mode: bool = False
    sandbox: str = "off"  # the mode in effect: "bubblewrap" or "off"
    runtime: str = "default"  # the named runtime the flow ran on
    requirements: list[str] = field(default_factory=list)  # of its environment, the runtime's included
    files_seen: int = 0
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
    #: What killed runs left in the destination and this run removed (S3 uploads, SFTP temporaries).
    leftovers_removed: list[str] = field(default_factory=list)
    files: list[FileResult] = field(default_factory=list)
    insights: dict[str, Any] = field(default_factory=dict)
    counters: dict[str, float] = field(default_factory=dict)
    #: Distinct insight and counter names kept (``job_config.max_insight_keys``); values of new
    #: names beyond it, or that would take the insights past MAX_RUN_INSIGHT_BYTES, are dropped.
    max_insight_keys: int = 1000
    insights_dropped: int = 0
    notifications: int = 0
    #: Children run side by side (``job_config.workers``), and the files each one handled.
    workers: int = 1
    files_per_worker: list[int] = field(default_factory=list)
    seconds: float = 0.0
    environment_seconds: float = 0.0
    _failed: list[FileResult] = field(default_factory=list, repr=False)
    _insight_bytes: dict[str, int] = field(default_factory=dict, repr=False)
    _insight_total: int = field(default=0, repr=False)

    def add(self, result: FileResult, insights: dict[str, Any], counters: dict[str, float]) -> None:
        """Record one file; insights of later files overwrite earlier ones, counters add up."""
        self.files.append(result)
        if result.status == "failed":
            self._failed.append(result)
        for name, value in insights.items():
            size = len(json.dumps(value, default=str))
            total = self._insight_total - self._insight_bytes.get(name, 0) + size
            if (name not in self.insights and not self._room_for_a_name()) or total > MAX_RUN_INSIGHT_BYTES:
                self.insights_dropped += 1
                continue
            self.insights[name] = value
            self._insight_bytes[name], self._insight_total = size, total
        for name, value in counters.items():
            if name not in self.counters and not self._room_for_a_name():
                self.insights_dropped += 1
                continue
            self.counters[name] = self.counters.get(name, 0) + value

    def _room_for_a_name(self) -> bool:
        return len(self.insights) + len(self.counters) < self.max_insight_keys

    def _with_status(self, status: FileStatus) -> list[FileResult]:
        return [f for f in self.files if f.status == status]

    @property
    def failed(self) -> list[FileResult]:
        # Kept as files are added (a result's status is final by then): fail_fast asks per file.
        return self._failed

    def as_dict(self) -> dict[str, Any]:
        """The compact, JSON-serialisable form pushed to XCom."""
        processed = self._with_status("processed")
        durations = [f.seconds for f in self.files if f.status != "skipped"]
        records = [f.records_out for f in processed if f.records_out is not None]
        return {
            "source": self.source,
            "destination": self.destination,
            "test_mode": self.test_mode,
            "sandbox": self.sandbox,
            "runtime": self.runtime,
            "requirements": self.requirements,
            "files_seen": self.files_seen,
            "files_processed": len(processed),
            "files_failed": len(self.failed),
            "files_skipped": len(self._with_status("skipped")),
            "files_quarantined": len(self._with_status("quarantined")),
            "files_listed": self.files_listed,
            "files_taken_elsewhere": self.files_taken_elsewhere,
            "files_claimed_elsewhere": self.files_claimed_elsewhere,
            "claims_elsewhere_expire": _iso(self.claims_elsewhere_expire),
            "claim_holders": self.claim_holders[:10],
            "files_taken_over": self.files_taken_over,
            "claims_taken_over": self.claims_taken_over[:10],
            "leftovers_removed": len(self.leftovers_removed),
            "leftovers_removed_sample": self.leftovers_removed[:5],
            "bytes_in": sum(f.size for f in self.files if f.status != "skipped"),
            "bytes_out": sum(f.bytes_out for f in processed),
            "records_in": self.counters.get("records_in"),
            "records_out": sum(records) if records else None,
            "outputs_written": sum(len(f.outputs) for f in processed),
            "seconds_total": round(self.seconds, 3),
            "seconds_environment": round(self.environment_seconds, 3),
            "seconds_per_file_p50": round(statistics.median(durations), 4) if durations else None,
            "seconds_per_file_max": round(max(durations), 4) if durations else None,
            "notifications": self.notifications,
            "workers": self.workers,
            "files_per_worker": self.files_per_worker,
            "insights": self.insights,
            "counters": self.counters,
            "insights_dropped": self.insights_dropped,
            "files": [f.as_dict() for f in self.files[:MAX_FILES_IN_SUMMARY]],
            "files_not_listed": max(0, len(self.files) - MAX_FILES_IN_SUMMARY),
        }

    def format_table(self) -> str:
        """A readable table of the summary for the end of the task log."""
        data = self.as_dict()
        rows = [
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
            *(
                [
                    (
                        "files claimed by other runs (until)",
                        f"{data['files_claimed_elsewhere']} ({data['claims_elsewhere_expire']})",
                    )
                ]
                if self.files_claimed_elsewhere
                else []
            ),
            *[
                (f"  held by {h['holder']}", f"{h['files']} until {h['until']}")
                for h in self.claim_holders[:5]
            ],
            *(
                [("files taken over from dead runs", data["files_taken_over"])]
                if self.files_taken_over
                else []
            ),
            *(
                [("leftovers of killed runs removed", _leftovers(self.leftovers_removed))]
                if self.leftovers_removed
                else []
            ),
            ("bytes in / out", f"{data['bytes_in']:,} / {data['bytes_out']:,}"),
            ("records in / out", f"{_or_dash(data['records_in'])} / {_or_dash(data['records_out'])}"),
            ("outputs written", data["outputs_written"]),
            ("workers (files each)", f"{self.workers} ({', '.join(map(str, self.files_per_worker)) or '-'})"),
            ("seconds total (environment)", f"{data['seconds_total']} ({data['seconds_environment']})"),
            (
                "seconds per file p50 / max",
                f"{_or_dash(data['seconds_per_file_p50'])} / {_or_dash(data['seconds_per_file_max'])}",
            ),
        ]
        rows += [(f"insight {key}", value) for key, value in sorted(self.insights.items())]
        rows += [(f"counter {key}", value) for key, value in sorted(self.counters.items())]
        rows += [(f"FAILED {f.url}", f"{f.error_type}: {f.error}"[:200]) for f in self.failed[:20]]
        width = max(len(label) for label, _ in rows)
        title = "BYO flow test run" if self.test_mode else "BYO flow run summary"
        return "\n".join([title, *(f"  {label.ljust(width)}  {value}" for label, value in rows)])


def _iso(epoch: float | None) -> str | None:
    return None if epoch is None else datetime.fromtimestamp(epoch, UTC).isoformat(timespec="seconds")


def _leftovers(names: list[str]) -> str:
    more = f", {len(names) - 3} more" if len(names) > 3 else ""
    return f"{len(names)} ({', '.join(names[:3])}{more})"


def _or_dash(value: Any) -> Any:
    return "-" if value is None else value
