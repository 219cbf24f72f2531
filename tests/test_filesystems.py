"""Retries and error translation shared by every backend."""

from __future__ import annotations

import pytest
from botocore.exceptions import ClientError

from airflow_byo.exceptions import ByoNotFoundError, ByoStorageError
from airflow_byo.filesystems import StorageErrors, is_transient, with_retries

ERRORS = StorageErrors("source 's3://b/in'", "my_conn", ["hunter2-secret"])


def client_error(code: str, status: int) -> ClientError:
    return ClientError(
        {"Error": {"Code": code, "Message": code}, "ResponseMetadata": {"HTTPStatusCode": status}}, "Op"
    )


@pytest.mark.parametrize(
    ("exc", "transient"),
    [
        (ConnectionResetError("reset"), True),
        (TimeoutError("slow"), True),
        (client_error("InternalError", 500), True),
        (client_error("SlowDown", 503), True),
        (client_error("AccessDenied", 403), False),
        (FileNotFoundError("gone"), False),
    ],
)
def test_transient_errors(exc: BaseException, transient: bool) -> None:
    assert is_transient(exc) is transient


def test_transient_failures_are_retried_then_succeed() -> None:
    attempts = []

    def flaky() -> str:
        attempts.append(1)
        if len(attempts) < 3:
            raise ConnectionResetError("connection reset by peer")
        return "listed"

    assert with_retries(flaky, ERRORS, "list", base_delay=0) == "listed"
    assert len(attempts) == 3


def test_retries_give_up_with_a_clear_error() -> None:
    attempts = []

    def down() -> None:
        attempts.append(1)
        raise client_error("ServiceUnavailable", 503)

    with pytest.raises(ByoStorageError, match=r"cannot list source 's3://b/in' with connection 'my_conn'"):
        with_retries(down, ERRORS, "list", attempts=3, base_delay=0)
    assert len(attempts) == 3


def test_permanent_errors_are_not_retried_and_secrets_are_scrubbed() -> None:
    attempts = []

    def denied() -> None:
        attempts.append(1)
        raise PermissionError("denied for user:hunter2-secret")

    with pytest.raises(ByoStorageError) as raised:
        with_retries(denied, ERRORS, "write", base_delay=0)
    assert len(attempts) == 1
    assert "permission denied" in str(raised.value)
    assert "hunter2-secret" not in str(raised.value)
    assert "***" in str(raised.value)


@pytest.mark.parametrize(
    ("exc", "not_found"),
    [
        (FileNotFoundError("gone"), True),
        (client_error("NoSuchKey", 404), True),
        (client_error("NoSuchBucket", 404), True),
        (PermissionError("denied"), False),
        (client_error("InternalError", 500), False),
    ],
)
def test_what_does_not_exist_is_typed(exc: BaseException, not_found: bool) -> None:
    error = ERRORS.translate(exc, "read")
    assert isinstance(error, ByoNotFoundError) is not_found
    assert isinstance(error, ByoStorageError)
    if not_found:  # the message is the one it always was
        assert str(error).startswith(
            "cannot read source 's3://b/in' with connection 'my_conn': it does not exist ("
        )
        assert str(error).endswith(". Create it or fix the URL")
