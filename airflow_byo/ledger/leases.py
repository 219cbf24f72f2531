"""Leases: a run's claims are renewed in the background while it works, so live runs keep them."""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from airflow_byo.ledger.state import Ledger

__all__ = ["LeaseKeeper"]


class LeaseKeeper:
    """Renews a run's claims in the background while it works, so live runs never lose them."""

    def __init__(self, ledger: Ledger, token: str, lease_seconds: float) -> None:
        self._ledger, self._token, self._lease = ledger, token, lease_seconds
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="byo-lease", daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(self._lease / 3):
            self._ledger.renew(self._token, self._lease)

    def __enter__(self) -> LeaseKeeper:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
