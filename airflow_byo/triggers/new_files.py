"""A trigger that waits, in the triggerer, until a flow's source holds files it has not processed."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

from airflow.triggers.base import BaseTrigger, TriggerEvent

from airflow_byo.new_files import NewFiles

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

__all__ = ["ByoNewFilesTrigger"]


class ByoNewFilesTrigger(BaseTrigger):
    """
    Poll a source until it holds unprocessed files, then fire once with a snapshot pointer.

    Listing and the ledger query are blocking calls: they run in a thread so the triggerer's
    event loop stays free for its other triggers.

    :param new_files: :meth:`NewFiles.to_kwargs` of the flow's source, filters and ledger.
    :param poke_interval: seconds between two checks.
    """

    def __init__(self, new_files: dict[str, Any], poke_interval: float = 60.0) -> None:
        super().__init__()
        self.new_files = new_files
        self.poke_interval = poke_interval

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return (
            "airflow_byo.triggers.new_files.ByoNewFilesTrigger",
            {"new_files": self.new_files, "poke_interval": self.poke_interval},
        )

    async def run(self) -> AsyncIterator[TriggerEvent]:
        spec = NewFiles.from_kwargs(self.new_files)
        while True:
            try:
                listed, new = await asyncio.to_thread(spec.find)
                if new:
                    pointer = await asyncio.to_thread(spec.snapshot, new)
                    yield TriggerEvent({"status": "found", "listed": listed, **pointer})
                    return
            except Exception as exc:  # noqa: BLE001 - reported to the task, which fails with it
                yield TriggerEvent({"status": "error", "message": str(exc)})
                return
            self.log.info(
                "No new files in %s yet (%d listed); next check in %ss",
                spec.source,
                listed,
                self.poke_interval,
            )
            await asyncio.sleep(self.poke_interval)
