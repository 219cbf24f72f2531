"""
Any other scheme an installed provider registers a file system for (``gs://``, ``abfs://``, ...):
the backend a :class:`~airflow_byo.storage.location.Location` falls back to when no module here is
registered for its scheme. A scheme with no file system at all is reported when first used, with
the provider to install (:func:`airflow_byo.filesystems.filesystem`).

It publishes as SFTP does -- an upload to a writer-named ``.byo-`` temporary in the target
directory, renamed over the final name, temporaries of killed workers swept -- because that needs
nothing of a file system but ``open``, ``ls`` and ``mv``.
"""

from __future__ import annotations

from typing import ClassVar

from airflow_byo.storage.backends.sftp import SftpBackend

__all__ = ["GenericBackend"]


class GenericBackend(SftpBackend):
    """A directory on any fsspec file system, written through temporaries and renames."""

    protocols: ClassVar[tuple[str, ...]] = ()  # registered for none: the fallback for all
