"""
ByoFlowOperator between local, S3 (moto server) and SFTP (sshd) locations, through Airflow
connections; and every connection error, named clearly and without leaking a secret.
"""

from __future__ import annotations

import json
import sys
import uuid
from typing import Any

import pytest

from airflow_byo.exceptions import ByoFilesFailedError, ByoStorageError
from airflow_byo.operators.byo_flow import ByoFlowOperator
from tests.backends import Backend, LocalBackend, S3Backend, SftpBackend
from tests.conftest import UPPER, context
from tests.servers import free_port


def flow(source: Backend, destination: Backend, **kwargs: Any) -> ByoFlowOperator:
    return ByoFlowOperator(
        task_id="flow",
        source=source.url("in"),
        source_conn_id=source.conn_id,
        destination=destination.url("out"),
        destination_conn_id=destination.conn_id,
        processor=kwargs.pop("processor", UPPER),
        python_interpreter=sys.executable,
        runtime_config={"job_config": {"output_format": "text", "transfer_concurrency": 2}},
        flow_id=f"test-{uuid.uuid4().hex}",
        **kwargs,
    )


def make(kind: str, request: pytest.FixtureRequest, connections: Any, conn_id: str) -> Backend:
    if kind == "local":
        return LocalBackend(request.getfixturevalue("tmp_path"))
    if kind == "s3":
        server = request.getfixturevalue("s3_server")
        return S3Backend(server, connections(conn_id, server.connection()))
    server = request.getfixturevalue("sftp_server")
    return SftpBackend(server, connections(conn_id, server.connection(auth="key")))


@pytest.mark.parametrize(
    ("source_kind", "destination_kind"),
    [("s3", "sftp"), ("sftp", "local"), ("local", "s3"), ("s3", "s3"), ("sftp", "sftp")],
)
def test_flow_between_backends(
    source_kind: str, destination_kind: str, request: pytest.FixtureRequest, connections: Any
) -> None:
    source = make(source_kind, request, connections, "byo_source")
    destination = make(destination_kind, request, connections, "byo_destination")  # a second connection
    for index in range(7):
        source.put(f"in/part-{index}.txt", f"row {index}".encode())
    source.put("in/skip.csv", b"not me")

    result = flow(source, destination, include=["*.txt"]).execute(context())

    assert result["files_processed"] == 7
    assert destination.names("out") == [f"part-{index}.txt" for index in range(7)]
    assert destination.get("out/part-3.txt") == b"ROW 3"
    assert result["files"][0]["url"] == source.url("in/part-0.txt")


def test_remote_test_mode_reads_the_sample_through_the_source_connection(
    request: pytest.FixtureRequest, connections: Any
) -> None:
    source = make("s3", request, connections, "byo_source")
    source.put("in/sample.txt", b"hello")
    destination = make("sftp", request, connections, "byo_destination")
    result = flow(source, destination).execute(context(test_file=source.url("in/sample.txt")))
    assert result["preview"][0]["lines"] == ["HELLO"]
    assert destination.names("out") == []


# -- errors: clear, named, and without secrets -----------------------------------------------------


def assert_no_secret(secret: str, *texts: str) -> None:
    for text in texts:
        assert secret not in text


@pytest.fixture
def captured(capfd: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture) -> Any:
    """Everything the run logged: captured output plus log records."""

    def text() -> str:
        out, err = capfd.readouterr()
        return out + err + caplog.text

    return text


def test_wrong_s3_credentials(request: pytest.FixtureRequest, connections: Any, captured: Any) -> None:
    server = request.getfixturevalue("s3_server")
    good = make("s3", request, connections, "byo_good")
    good.put("in/a.txt", b"a")
    secret = "wrong-secret-" + "x" * 20
    bad = connections("byo_bad_keys", server.connection(login="AKIAWRONGWRONGWRONG", password=secret))
    with pytest.raises(ByoStorageError) as raised:
        ByoFlowOperator(
            task_id="t", source=good.url("in"), source_conn_id=bad, destination="/tmp/unused", processor=UPPER
        ).execute(context())
    message = str(raised.value)
    assert f"cannot list source '{good.url('in')}' with connection 'byo_bad_keys'" in message
    assert "the credentials were rejected" in message
    assert_no_secret(secret, message, captured())


def test_wrong_sftp_password(request: pytest.FixtureRequest, connections: Any, captured: Any) -> None:
    server = request.getfixturevalue("sftp_server")
    secret = "not-the-password-123"
    conn = connections("byo_bad_password", server.connection() | {"password": secret})
    with pytest.raises(ByoStorageError) as raised:
        ByoFlowOperator(
            task_id="t",
            source="sftp:///data/in",
            source_conn_id=conn,
            destination="/tmp/unused",
            processor=UPPER,
        ).execute(context())
    message = str(raised.value)
    assert "source 'sftp:///data/in' with connection 'byo_bad_password'" in message
    assert "the credentials were rejected" in message
    assert_no_secret(secret, message, captured())
    assert_no_secret(server.password, message, captured())


def test_unknown_connection_id() -> None:
    with pytest.raises(ByoStorageError) as raised:
        ByoFlowOperator(
            task_id="t",
            source="s3://bucket/in",
            source_conn_id="no_such_conn",
            destination="/tmp/x",
            processor=UPPER,
        ).execute(context())
    assert str(raised.value) == (
        "connection 'no_such_conn' for source 's3://bucket/in' is not defined: create it in "
        "Admin -> Connections or set the environment variable AIRFLOW_CONN_NO_SUCH_CONN"
    )


def test_unreachable_sftp_host(request: pytest.FixtureRequest, connections: Any) -> None:
    server = request.getfixturevalue("sftp_server")
    conn = connections("byo_nowhere", server.connection() | {"port": free_port()})
    with pytest.raises(ByoStorageError) as raised:
        ByoFlowOperator(
            task_id="t", source="sftp:///in", source_conn_id=conn, destination="/tmp/x", processor=UPPER
        ).execute(context())
    assert "with connection 'byo_nowhere': the server cannot be reached" in str(raised.value)
    assert_no_secret(server.password, str(raised.value))


def test_unreachable_s3_endpoint(request: pytest.FixtureRequest, connections: Any) -> None:
    server = request.getfixturevalue("s3_server")
    endpoint = f"http://127.0.0.1:{free_port()}"
    conn = connections(
        "byo_no_endpoint",
        server.connection(
            extra={
                "endpoint_url": endpoint,
                "region_name": "us-east-1",
                "config_kwargs": {"retries": {"max_attempts": 1}, "connect_timeout": 2},
            }
        ),
    )
    with pytest.raises(ByoStorageError) as raised:
        ByoFlowOperator(
            task_id="t", source="s3://bucket/in", source_conn_id=conn, destination="/tmp/x", processor=UPPER
        ).execute(context())
    assert "with connection 'byo_no_endpoint': the server cannot be reached" in str(raised.value)


def test_missing_bucket(request: pytest.FixtureRequest, connections: Any) -> None:
    server = request.getfixturevalue("s3_server")
    conn = connections("byo_s3_ok", server.connection())
    with pytest.raises(ByoStorageError) as raised:
        ByoFlowOperator(
            task_id="t",
            source="s3://byo-no-such-bucket/in",
            source_conn_id=conn,
            destination="/tmp/x",
            processor=UPPER,
        ).execute(context())
    message = str(raised.value)
    assert "source 's3://byo-no-such-bucket/in' with connection 'byo_s3_ok'" in message
    assert "does not exist" in message


def test_sftp_host_key_is_checked_by_default(request: pytest.FixtureRequest, connections: Any) -> None:
    server = request.getfixturevalue("sftp_server")
    backend = make("sftp", request, connections, "byo_checked")
    backend.put("in/a.txt", b"a")
    unknown = server.connection()
    del unknown["extra"]["host_key"]
    conn = connections("byo_unknown_host", unknown)
    with pytest.raises(ByoStorageError, match="the server's host key is not trusted"):
        ByoFlowOperator(
            task_id="t", source=backend.url("in"), source_conn_id=conn, destination="/tmp/x", processor=UPPER
        ).execute(context())
    wrong = server.connection()
    wrong["extra"]["host_key"] = (
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIBnFwlqkOJHVVAd/DHd5NsqDpzZ2vD5r0FCpnNKsxsmG"
    )
    conn = connections("byo_wrong_host_key", wrong)
    with pytest.raises(ByoStorageError, match="the server's host key is not trusted"):
        ByoFlowOperator(
            task_id="t", source=backend.url("in"), source_conn_id=conn, destination="/tmp/x", processor=UPPER
        ).execute(context())
    # The SSH connection's documented extra relaxes it (for tests and throwaway servers only).
    relaxed = server.connection(no_host_key_check=True)
    del relaxed["extra"]["host_key"]
    conn = connections("byo_relaxed", relaxed)
    listed = ByoFlowOperator(
        task_id="t",
        source=backend.url("in"),
        source_conn_id=conn,
        destination=str(backend.root / "o"),
        processor=UPPER,
        python_interpreter=sys.executable,
    ).execute(context())
    assert listed["files_processed"] == 1


def test_bad_private_key_is_named_without_showing_it(
    request: pytest.FixtureRequest, connections: Any
) -> None:
    server = request.getfixturevalue("sftp_server")
    broken = server.connection(auth="key")
    broken["extra"]["private_key"] = "-----BEGIN OPENSSH PRIVATE KEY-----\nnot-a-key-at-all\n"
    conn = connections("byo_broken_key", broken)
    with pytest.raises(ByoStorageError) as raised:
        ByoFlowOperator(
            task_id="t", source="sftp:///in", source_conn_id=conn, destination="/tmp/x", processor=UPPER
        ).execute(context())
    assert "connection 'byo_broken_key': extra 'private_key' is not a usable private key" in str(raised.value)
    assert "not-a-key-at-all" not in str(raised.value)


def test_write_denied_fails_the_files_and_keeps_secrets_out_of_xcom_and_logs(
    request: pytest.FixtureRequest, connections: Any, captured: Any, tmp_path: Any
) -> None:
    server = request.getfixturevalue("s3_server")
    source = LocalBackend(tmp_path)
    source.put("in/a.txt", b"a")
    destination = make("s3", request, connections, "byo_admin")
    destination.conn_id = connections("byo_reader", server.connection("reader"))
    ctx = context()
    with pytest.raises(ByoFilesFailedError, match=r"1 of 1 file\(s\) failed"):
        flow(source, destination).execute(ctx)
    summary = ctx["ti"].xcom["return_value"]
    [failed] = summary["files"]
    assert "cannot write destination" in failed["error"]
    assert "with connection 'byo_reader': permission denied" in failed["error"]
    _, reader_secret = server.keys["reader"]
    assert_no_secret(reader_secret, json.dumps(summary), captured())
