"""
The one place that turns a URL scheme and an Airflow connection into an fsspec file system.

File systems come from the registry that providers fill for ``ObjectStoragePath``
(``airflow.sdk.io.get_fs``): ``s3://`` from the amazon provider (s3fs), ``sftp://`` from the sftp
provider (sshfs). This module only adds what a production flow needs on top:

* a clear error when the connection does not exist (the amazon provider silently falls back to
  the environment's credentials, which hides typos in a conn id);
* SFTP host-key checking **on** by default -- sshfs turns it off unless told otherwise -- with the
  SSH connection's documented extras to configure it (``host_key``, ``no_host_key_check``), and
  ``private_key`` given as key text (sshfs would take it for a file name); AES-GCM ciphers
  preferred (faster than asyncssh's default) unless the connection's ``ciphers`` extra says;
* translation of every backend's exceptions into one :class:`ByoStorageError` that names the
  connection and the URL, with the connection's secrets scrubbed from the message (a
  :class:`ByoNotFoundError` when what was asked for does not exist, so callers test the type,
  not the text);
* retries with backoff for transient failures (connection resets, 5xx, throttling).
"""

from __future__ import annotations

import errno
import logging
import socket
import time
from typing import TYPE_CHECKING, Any, TypeVar

from airflow_byo.connections import get_connection, secrets_of
from airflow_byo.exceptions import ByoNotFoundError, ByoStorageError

if TYPE_CHECKING:
    from collections.abc import Callable

    from fsspec import AbstractFileSystem

__all__ = ["LOCAL_PROTOCOLS", "S3_PROTOCOLS", "SFTP_PROTOCOLS", "StorageErrors", "filesystem", "with_retries"]

log = logging.getLogger(__name__)

LOCAL_PROTOCOLS: tuple[str, ...] = ("file", "local")
SFTP_PROTOCOLS: tuple[str, ...] = ("sftp", "ssh")
S3_PROTOCOLS: tuple[str, ...] = ("s3", "s3a", "s3n")

_INSTALL_HINTS = {
    **dict.fromkeys(S3_PROTOCOLS, "pip install 'apache-airflow-providers-amazon[s3fs]'"),
    **dict.fromkeys(SFTP_PROTOCOLS, "pip install 'apache-airflow-providers-sftp[sshfs]'"),
}

T = TypeVar("T")


def _known_hosts(connection: Any, extras: dict[str, Any]) -> Any:
    """The ``known_hosts`` option of asyncssh for an SSH connection (checking on by default)."""
    if str(extras.get("no_host_key_check", "false")).lower() == "true":
        return None
    host_key = extras.get("host_key")
    if host_key:
        import asyncssh

        key = str(host_key).strip()
        if " " not in key:  # the SSH hook's documented form is the base64 part alone
            key = f"ssh-rsa {key}"
        port = connection.port or 22
        host = connection.host if port == 22 else f"[{connection.host}]:{port}"
        return asyncssh.import_known_hosts(f"{host} {key}\n")
    return ()  # asyncssh's default: ~/.ssh/known_hosts, and unknown hosts are refused


def _sftp_options(conn_id: str, where: str) -> tuple[dict[str, Any], list[str]]:
    # asyncssh logs every connection and channel at INFO: noise in a task log.
    logging.getLogger("asyncssh").setLevel(logging.WARNING)
    connection = get_connection(conn_id, where)
    extras = connection.extra_dejson or {}
    options: dict[str, Any] = {"known_hosts": _known_hosts(connection, extras)}
    if private_key := extras.get("private_key"):
        import asyncssh

        try:
            key = asyncssh.import_private_key(private_key, extras.get("private_key_passphrase"))
        except (asyncssh.KeyImportError, ValueError) as exc:
            raise ByoStorageError(
                f"connection {conn_id!r}: extra 'private_key' is not a usable private key ({exc}); paste "
                "the whole key including its BEGIN/END lines, and set 'private_key_passphrase' if it has one"
            ) from None
        options["client_keys"] = [key]
    if timeout := extras.get("conn_timeout"):
        options["connect_timeout"] = float(timeout)
    options["encryption_algs"] = _ciphers(extras.get("ciphers"))
    return options, secrets_of(connection)


#: AES-GCM first: asyncssh's default, chacha20-poly1305, runs its MAC and cipher as separate calls
#: per packet and moved a 200 MB file at about half the speed on loopback (issue 17 item 4).
_CIPHERS = (
    "aes256-gcm@openssh.com",
    "aes128-gcm@openssh.com",
    "chacha20-poly1305@openssh.com",
    "aes256-ctr",
    "aes192-ctr",
    "aes128-ctr",
)


def _ciphers(configured: Any) -> list[str]:
    """The connection's ``ciphers`` extra (the SSH hook's, a list or a comma list) or ours."""
    if isinstance(configured, str):
        configured = [name.strip() for name in configured.split(",") if name.strip()]
    if isinstance(configured, (list, tuple)) and configured:
        return [str(name) for name in configured]
    return list(_CIPHERS)


def filesystem(protocol: str, conn_id: str | None, where: str) -> tuple[AbstractFileSystem, StorageErrors]:
    """
    Return the file system for ``protocol`` with ``conn_id``'s credentials, and its error translator.

    :param where: what the file system is for, as users know it (e.g. ``source 's3://b/in'``).
    """
    if protocol in LOCAL_PROTOCOLS:
        # What Airflow's get_fs() builds for file:// (its built-in), without importing Airflow:
        # ``byo test`` of a local sample stays free of Airflow's start-up.
        from fsspec.implementations.local import LocalFileSystem

        return LocalFileSystem(), StorageErrors(where, None, [])
    from airflow.sdk.io import get_fs

    options: dict[str, Any] = {}
    secrets: list[str] = []
    if conn_id and protocol in SFTP_PROTOCOLS:
        options, secrets = _sftp_options(conn_id, where)
    elif conn_id and protocol not in LOCAL_PROTOCOLS:
        secrets = secrets_of(get_connection(conn_id, where))
    errors = StorageErrors(where, conn_id, secrets)
    try:
        fs = get_fs(protocol, conn_id, options or None)
    except ValueError as exc:
        if "No filesystem registered" in str(exc):
            hint = _INSTALL_HINTS.get(protocol, "install the provider that registers it")
            raise ByoStorageError(
                f"{where}: no file system is installed for '{protocol}://'; {hint}"
            ) from None
        raise errors.translate(exc) from None
    except ImportError as exc:
        raise ByoStorageError(f"{where}: {exc}") from None
    except Exception as exc:  # noqa: BLE001 - SFTP connects here: auth, host key, network errors
        raise errors.translate(exc) from None
    return fs, errors


class StorageErrors:
    """Turns any backend exception into a :class:`ByoStorageError` naming the location, secrets removed."""

    def __init__(self, where: str, conn_id: str | None, secrets: list[str]) -> None:
        self.where = where
        self.conn_id = conn_id
        self._secrets = secrets

    def scrub(self, text: str) -> str:
        for secret in self._secrets:
            text = text.replace(secret, "***")
        return text

    def translate(self, exc: BaseException, action: str = "access") -> ByoStorageError:
        if isinstance(exc, ByoStorageError):
            return exc
        via = f" with connection {self.conn_id!r}" if self.conn_id else ""
        kind, fix = _classify(exc)
        detail = self.scrub(f"{type(exc).__name__}: {exc}")[:500]
        error = ByoNotFoundError if kind == _NOT_FOUND else ByoStorageError
        return error(f"cannot {action} {self.where}{via}: {kind} ({detail}). {fix}")


def _error_code(exc: BaseException) -> str:
    """The S3 error code of ``exc`` or of its cause (s3fs re-raises ClientErrors as OSErrors)."""
    seen: BaseException | None = exc
    for _ in range(5):
        if seen is None:
            break
        response = getattr(seen, "response", None)
        if isinstance(response, dict):
            return str(response.get("Error", {}).get("Code", ""))
        seen = seen.__cause__ or seen.__context__
    return ""


def _status(exc: BaseException) -> int:
    response = getattr(exc, "response", None)
    if isinstance(response, dict):
        return int(response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0) or 0)
    return 0


_NOT_FOUND = "it does not exist"


def _classify(exc: BaseException) -> tuple[str, str]:
    """A short cause and a fix for an exception of any backend."""
    name = type(exc).__name__
    code = _error_code(exc)
    text = str(exc)
    if name == "HostKeyNotVerifiable" or "Host key is not trusted" in text:
        return (
            "the server's host key is not trusted",
            "Add the host to ~/.ssh/known_hosts of the workers or set the connection extra "
            "'host_key'; only for tests, set 'no_host_key_check': true",
        )
    # sshfs turns asyncssh's PermissionDenied (authentication failed) into a PermissionError.
    if (
        name == "PermissionDenied"
        or "Permission denied for user" in text
        or code
        in (
            "InvalidAccessKeyId",
            "SignatureDoesNotMatch",
            "InvalidClientTokenId",
            "ExpiredToken",
        )
    ):
        return "the credentials were rejected", "Check the login/password or keys of the connection"
    if isinstance(exc, PermissionError) or code in ("AccessDenied", "403") or name == "SFTPPermissionDenied":
        return "permission denied", "Grant the connection's user access to this path"
    if isinstance(exc, FileNotFoundError) or code in ("NoSuchBucket", "NoSuchKey", "404"):
        return _NOT_FOUND, "Create it or fix the URL"
    if (
        isinstance(exc, (ConnectionError, socket.gaierror, TimeoutError))
        or name in ("EndpointConnectionError", "ConnectTimeoutError", "ConnectionLost", "DisconnectError")
        or (
            isinstance(exc, OSError)
            and exc.errno in (errno.ECONNREFUSED, errno.EHOSTUNREACH, errno.ENETUNREACH)
        )
    ):
        return (
            "the server cannot be reached",
            "Check the connection's host, port or endpoint_url and the network",
        )
    return "unexpected error", "See the task log for details"


def is_transient(exc: BaseException) -> bool:
    """Worth retrying: connection resets and timeouts, S3 5xx and throttling."""
    if isinstance(exc, (ConnectionResetError, ConnectionAbortedError, TimeoutError, BrokenPipeError)):
        return True
    if type(exc).__name__ in ("ConnectionLost", "ReadTimeoutError", "ResponseStreamingError"):
        return True
    code = _error_code(exc)
    return _status(exc) >= 500 or code in ("SlowDown", "Throttling", "ThrottlingException", "RequestTimeout")


def with_retries(
    operation: Callable[[], T],
    errors: StorageErrors,
    action: str,
    *,
    attempts: int = 4,
    base_delay: float = 0.5,
) -> T:
    """Run ``operation``, retrying transient failures with exponential backoff, then translate."""
    for attempt in range(1, attempts + 1):
        try:
            return operation()
        except ByoStorageError:
            raise
        except Exception as exc:  # noqa: BLE001 - classified below, re-raised translated
            if attempt < attempts and is_transient(exc):
                delay = base_delay * 2 ** (attempt - 1)
                log.warning(
                    "Transient error during %s of %s (attempt %d/%d), retrying in %.1fs: %s",
                    action,
                    errors.where,
                    attempt,
                    attempts,
                    delay,
                    errors.scrub(str(exc)),
                )
                time.sleep(delay)
                continue
            raise errors.translate(exc, action) from None
    raise AssertionError("unreachable")
