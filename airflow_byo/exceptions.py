"""The project's errors: one root, one subclass per kind of bad input or failure."""

from __future__ import annotations

from airflow_byo import provider_config

if provider_config.STANDALONE:  # the ``byo`` console script: no Airflow import for an error class
    AirflowException = Exception
else:
    from airflow.sdk.exceptions import AirflowException

__all__ = [
    "ByoConfigError",
    "ByoError",
    "ByoFilesFailedError",
    "ByoFilesHeldError",
    "ByoFlowSpecError",
    "ByoNotFoundError",
    "ByoPackageError",
    "ByoProcessorError",
    "ByoStorageError",
]


class ByoError(AirflowException):
    """Root of every airflow-byo error. Messages name the field/file/connection and the fix."""


class ByoConfigError(ByoError):
    """The runtime variables & configuration (or an operator argument) is invalid."""


class ByoPackageError(ByoError):
    """A custom package entry is not an acceptable requirement, or the environment failed to build."""


class ByoProcessorError(ByoError):
    """The processor function cannot be loaded or called (checked before any file is touched)."""


class ByoStorageError(ByoError):
    """A source or destination cannot be listed, read or written."""


class ByoNotFoundError(ByoStorageError):
    """The file, directory, bucket or key does not exist (raised where the backend's error says so)."""


class ByoFlowSpecError(ByoConfigError):
    """A flow spec file is invalid (the message names the file, line, field and fix)."""


class ByoFilesFailedError(ByoError):
    """One or more files failed to process; the run summary says which and why."""


class ByoFilesHeldError(ByoError):
    """Files are held by other runs that may be alive, and ``job_config.on_held`` is ``fail``."""
