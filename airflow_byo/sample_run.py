"""
Test mode, the one way: run a resolved flow's function on one sample file and write nothing.

Every test of a function takes this path -- ``airflow tasks test ... -t '{"test_file": ...}'``
(:class:`~airflow_byo.operators.byo_flow.ByoFlowOperator`), ``airflow byo test`` and the ``byo``
script (:mod:`airflow_byo.cli.sample_command`), and the BYO Flows page's Test
(:mod:`airflow_byo.plugins.testing`): the sample checked against the path policy, located (a local
path or a URL read with a connection), the flow's environment, one child in the flow's sandbox with
the flow's limits, previews of what it wrote. Callers differ only in how they show the result
(task log, terminal, JSON for the page) and in how they get a warm environment.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from airflow_byo.exceptions import ByoFilesFailedError
from airflow_byo.path_policy import check_sample
from airflow_byo.runner.flow_runner import FlowRunner
from airflow_byo.runner.preview import locate_test_file, preview_file

if TYPE_CHECKING:
    from collections.abc import Callable
    from pathlib import Path

    from airflow_byo.flow import FlowEnvironment, ResolvedFlow
    from airflow_byo.results import FileResult, RunSummary
    from airflow_byo.runner.child_process import TaskLog
    from airflow_byo.runner.preview import OutputPreview
    from airflow_byo.runtime.protocol import Notify

__all__ = ["SampleRun", "run_sample"]


@dataclass(frozen=True)
class SampleRun:
    """What a test of a flow on one sample gave: the summary, the output previews, the flow."""

    summary: RunSummary
    previews: list[OutputPreview]
    flow: ResolvedFlow

    @property
    def failure(self) -> FileResult | None:
        """The sample's result when the function failed on it."""
        return self.summary.failed[0] if self.summary.failed else None

    def as_dict(self) -> dict[str, Any]:
        """The run summary, the previews (``preview``) and what the run got (``flow``), as JSON."""
        return self.summary.as_dict() | {
            "preview": [preview.as_dict() for preview in self.previews],
            "flow": self.flow.describe(),
        }

    def raise_for_failure(self, hint: str = "") -> None:
        """:class:`ByoFilesFailedError` naming the sample and the function's error, if it failed."""
        if (failure := self.failure) is not None:
            raise ByoFilesFailedError(
                f"test run failed on {failure.url}: {failure.error_type}: {failure.error}{hint}"
            )


def run_sample(
    flow: ResolvedFlow,
    sample: str,
    *,
    log: TaskLog,
    conn_id: str | None = None,
    environment: FlowEnvironment | None = None,
    build: Callable[[list[str], Path | None], str] | None = None,
    on_notify: Callable[[str, Notify], None] | None = None,
    key: str = "sample",
) -> SampleRun:
    """
    Run ``flow`` on ``sample`` in its sandbox; write nothing.

    :param sample: a local path (``~``, relative, ``file://``) or a URL read with ``conn_id``.
    :param environment: the flow's interpreter when the caller has it already (the page keeps
        environments warm); else :meth:`ResolvedFlow.environment` finds or builds it with ``build``.
    :param on_notify: also called with each ``ctx.notify()`` event (they are logged anyway).
    :param key: how the caller names the sample in errors (``sample``, ``params.test_file``).
    :raises ByoError: the sample is refused or unreadable, the environment cannot be built.
    """
    check_sample(sample, key)  # the sandbox sees the sample's folder: not a platform folder
    location, file = locate_test_file(sample, conn_id)
    log.info("Test mode: running the processor on %s; nothing is written to the destination", file.url)
    runner = FlowRunner(
        flow=flow, environment=environment or flow.environment(log, build), log=log, on_notify=on_notify
    )
    summary, previews = preview_file(runner, location, file)
    return SampleRun(summary, previews, flow)
