"""
The project's errors for the sandbox modules, built only when there is something to raise.

They import Airflow; the sandbox modules are standard library only at import (the worker imports
them, and tests run them without Airflow). Stdlib only at import.
"""

from __future__ import annotations

__all__ = ["config_error", "processor_error"]


def config_error(message: str) -> Exception:
    """A ``ByoConfigError``: the worker's setup must change (a setting, a missing program)."""
    from airflow_byo.exceptions import ByoConfigError

    return ByoConfigError(message)


def processor_error(message: str) -> Exception:
    """A ``ByoProcessorError``: one child's sandbox (or its network) could not be set up or started."""
    from airflow_byo.exceptions import ByoProcessorError

    return ByoProcessorError(message)
