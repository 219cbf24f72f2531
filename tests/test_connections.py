"""Airflow connections (airflow_byo.connections): one lookup, one error naming the fix, and secrets."""

from __future__ import annotations

from typing import Any

import pytest

from airflow_byo.connections import get_connection, secrets_of
from airflow_byo.exceptions import ByoStorageError


def test_a_defined_connection_is_returned(connections: Any) -> None:
    connections("byo_conn_ok", {"conn_type": "sftp", "host": "files.example", "login": "me"})
    connection = get_connection("byo_conn_ok", "source 'sftp:///in'")
    assert (connection.conn_type, connection.host, connection.login) == ("sftp", "files.example", "me")


def test_a_missing_connection_names_what_needed_it_and_how_to_define_it() -> None:
    with pytest.raises(ByoStorageError) as raised:
        get_connection("byo_no_such_conn", "the ledger")
    assert str(raised.value) == (
        "connection 'byo_no_such_conn' for the ledger is not defined: create it in Admin -> Connections "
        "or set the environment variable AIRFLOW_CONN_BYO_NO_SUCH_CONN"
    )
    assert raised.value.__cause__ is None
    assert raised.value.__suppress_context__


def test_secrets_are_the_password_and_secret_looking_extras(connections: Any) -> None:
    connections(
        "byo_conn_secrets",
        {
            "conn_type": "aws",
            "login": "AKIAEXAMPLE",
            "password": "the-password",
            "extra": {
                "aws_session_token": "session-token-value",
                "private_key": "-----BEGIN KEY-----",
                "Private_Key_Passphrase": "passphrase-value",
                "client_secret": "abc",  # too short to scrub safely
                "region_name": "eu-west-1",
                "endpoint_url": "http://127.0.0.1:9000",
            },
        },
    )
    secrets = secrets_of(get_connection("byo_conn_secrets", "a test"))
    assert sorted(secrets) == sorted(
        ["the-password", "session-token-value", "-----BEGIN KEY-----", "passphrase-value"]
    )


def test_a_connection_without_secrets_has_none(connections: Any) -> None:
    connections("byo_conn_plain", {"conn_type": "sftp", "host": "h"})
    assert secrets_of(get_connection("byo_conn_plain", "a test")) == []
