"""
``[core] hostname_callable`` for the end-to-end deployment's Celery workers.

Both workers run on one machine, so the default (the FQDN) would give every task instance the same
``hostname``; each worker process sets ``BYO_E2E_HOSTNAME`` so tests can tell which worker ran what.
"""

from __future__ import annotations

import os
import socket


def hostname() -> str:
    return os.environ.get("BYO_E2E_HOSTNAME") or socket.getfqdn()
