"""
A run's start-up, before its first child: the flow's environment and the sandbox mode in effect.

A task process's first :func:`~airflow_byo.runner.sandbox_mode.sandbox_mode` starts one trivial
sandbox (~45-80 ms), and the first sandboxed child asks its interpreter where it lives (a ~20 ms
subprocess); both are once per process, so every task paid them in series before its first child
(issue 24). Here they run beside the task's listing and the environment's lookup or build.
"""

from __future__ import annotations

import threading
from concurrent.futures import Future
from typing import TYPE_CHECKING, Any

from airflow_byo.runner.sandbox_command import interpreter_paths
from airflow_byo.runner.sandbox_mode import configured_off, sandbox_mode

if TYPE_CHECKING:
    from collections.abc import Callable

    from airflow_byo.flow import FlowEnvironment, ResolvedFlow
    from airflow_byo.runner.child_process import TaskLog
    from airflow_byo.runner.sandbox_mode import InEffect

    SandboxMode = tuple[InEffect, str | None]  # the mode in effect, and a warning to log once

__all__ = ["environment_and_sandbox", "sandbox_probe"]


def _in_background(name: str, work: Callable[[], Any]) -> Future[Any]:
    """``work()`` in a daemon thread of its own; its result (or error) in the future."""
    done: Future[Any] = Future()

    def run() -> None:
        try:
            done.set_result(work())
        except BaseException as exc:  # noqa: BLE001 -- raised by whoever asks for the result
            done.set_exception(exc)

    threading.Thread(target=run, name=name, daemon=True).start()
    return done


def sandbox_probe() -> Future[SandboxMode]:
    """
    :func:`~airflow_byo.runner.sandbox_mode.sandbox_mode` started now, in a thread of its own, for
    :func:`environment_and_sandbox`: a task process's first probe starts one trivial sandbox
    (~45-80 ms), which then runs while the task lists its files instead of before its first child
    (issue 24). Nothing waits for it when the task finds nothing to do.
    """
    return _in_background("byo-sandbox-probe", sandbox_mode)


def environment_and_sandbox(
    flow: ResolvedFlow, log: TaskLog, probe: Future[SandboxMode] | None = None
) -> tuple[FlowEnvironment, InEffect]:
    """
    The flow's environment and the sandbox mode in effect (its warning logged), found side by
    side: the sandbox probe (``probe``, or one started now) runs while the environment is looked
    up or built, and what the first sandboxed child's start asks of the interpreter
    (:func:`~airflow_byo.runner.sandbox_command.interpreter_paths`, a ~20 ms subprocess, once per
    process) is asked meanwhile too. Pass both to :class:`FlowRunner`.
    """
    probe = probe or sandbox_probe()
    environment = flow.environment(log)
    if flow.sandbox.image is None and not configured_off():
        _in_background("byo-interpreter-paths", lambda: interpreter_paths(environment.python))
    sandbox, warning = probe.result()
    if warning:
        log.warning("%s", warning)
    return environment, sandbox
