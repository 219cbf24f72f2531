"""
Airflow connections, looked up in one place: file systems, the ledger and notification channels
all get theirs here, with one error that names what needed the connection and how to define it.
"""

from __future__ import annotations

from typing import Any

from airflow_byo.exceptions import ByoStorageError

__all__ = ["get_connection", "secrets_of"]

#: Extras whose values are secrets (never printed, scrubbed from messages).
_SECRET_WORDS = ("secret", "password", "passphrase", "private_key", "token")


def get_connection(conn_id: str, where: str) -> Any:
    """The Airflow connection ``conn_id``, or an error naming what needed it and how to define it."""
    from airflow.sdk import BaseHook

    try:
        return BaseHook.get_connection(conn_id)
    except Exception as exc:  # AirflowNotFoundException lives in several modules
        if "isn't defined" in str(exc) or type(exc).__name__ == "AirflowNotFoundException":
            env = f"AIRFLOW_CONN_{conn_id.upper()}"
            raise ByoStorageError(
                f"connection {conn_id!r} for {where} is not defined: create it in Admin -> Connections "
                f"or set the environment variable {env}"
            ) from None
        raise


def secrets_of(connection: Any) -> list[str]:
    """Values that must never appear in a message: password and secret-looking extras."""
    values = [connection.password or ""]
    for key, value in (connection.extra_dejson or {}).items():
        if any(word in key.lower() for word in _SECRET_WORDS):
            values.append(str(value))
    return [v for v in values if len(v) >= 4]
