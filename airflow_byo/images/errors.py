"""The error of image runtimes: what to fix is in its message (the image, the runtime, the setting)."""

from __future__ import annotations

from airflow_byo.exceptions import ByoConfigError

__all__ = ["ByoImageError"]


class ByoImageError(ByoConfigError):
    """An image runtime's image cannot be fetched, verified, unpacked or run here."""
