"""
Direct access to each backend for the tests: arrange and inspect files *without* airflow-byo
(plain files, boto3, the SFTP root on this machine), so tests check our code against what really
is on the server. The ``backend`` fixture in conftest binds one per test.
"""

from __future__ import annotations

import os
import uuid
from pathlib import Path
from typing import Any

from airflow_byo.storage import Location


class Backend:
    """How a test reaches one file system directly. ``path`` arguments are relative to a test root."""

    name = ""
    conn_id: str | None = None

    def url(self, path: str) -> str:
        raise NotImplementedError

    def put(self, path: str, data: bytes) -> None:
        raise NotImplementedError

    def get(self, path: str) -> bytes | None:
        raise NotImplementedError

    def delete(self, path: str) -> None:
        raise NotImplementedError

    def names(self, path: str) -> list[str]:
        """Every object name under ``path`` (temporaries included), relative to it."""
        raise NotImplementedError

    def location(self, path: str, role: str = "location", conn_id: str | None = None) -> Location:
        return Location(self.url(path), conn_id or self.conn_id, role=role)

    def put_large(self, path: str, size: int) -> None:
        self.put(path, os.urandom(1024) * (size // 1024))


class LocalBackend(Backend):
    name = "local"

    def __init__(self, root: Path) -> None:
        self.root = root

    def url(self, path: str) -> str:
        return str(self.root / path)

    def put(self, path: str, data: bytes) -> None:
        target = self.root / path
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)

    def get(self, path: str) -> bytes | None:
        target = self.root / path
        return target.read_bytes() if target.exists() else None

    def delete(self, path: str) -> None:
        (self.root / path).unlink()

    def names(self, path: str) -> list[str]:
        base = self.root / path
        return (
            sorted(str(p.relative_to(base)) for p in base.rglob("*") if p.is_file()) if base.exists() else []
        )

    def put_large(self, path: str, size: int) -> None:
        target = self.root / path
        target.parent.mkdir(parents=True, exist_ok=True)
        with open(target, "wb") as handle:
            chunk = os.urandom(1024 * 1024)
            for _ in range(size // len(chunk)):
                handle.write(chunk)


class S3Backend(Backend):
    name = "s3"

    def __init__(self, server: Any, conn_id: str) -> None:
        self.server = server
        self.client = server.client()
        self.bucket = f"byo-{uuid.uuid4().hex[:12]}"
        self.client.create_bucket(Bucket=self.bucket)
        self.conn_id = conn_id

    def url(self, path: str) -> str:
        return f"s3://{self.bucket}/{path}"

    def put(self, path: str, data: bytes) -> None:
        self.client.put_object(Bucket=self.bucket, Key=path, Body=data)

    def put_large(self, path: str, size: int) -> None:
        local = Path(f"/tmp/byo-large-{uuid.uuid4().hex}")
        LocalBackend(local.parent).put_large(local.name, size)
        try:
            self.client.upload_file(str(local), self.bucket, path)
        finally:
            local.unlink()

    def get(self, path: str) -> bytes | None:
        try:
            return bytes(self.client.get_object(Bucket=self.bucket, Key=path)["Body"].read())
        except self.client.exceptions.NoSuchKey:
            return None

    def delete(self, path: str) -> None:
        self.client.delete_object(Bucket=self.bucket, Key=path)

    def names(self, path: str) -> list[str]:
        prefix = path.rstrip("/") + "/"
        pages = self.client.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=prefix)
        return sorted(o["Key"][len(prefix) :] for page in pages for o in page.get("Contents", []))


class SftpBackend(LocalBackend):
    """The SFTP server serves this machine's files: arrange them as files, read them through sshd."""

    name = "sftp"

    def __init__(self, server: Any, conn_id: str) -> None:
        self.server = server
        super().__init__(server.root / f"t-{uuid.uuid4().hex[:12]}")
        self.root.mkdir()
        server.give(self.root)
        self.conn_id = conn_id

    def url(self, path: str) -> str:
        return f"sftp://{self.root}/{path}"

    def put(self, path: str, data: bytes) -> None:
        super().put(path, data)
        self.server.give(self.root)

    def put_large(self, path: str, size: int) -> None:
        super().put_large(path, size)
        self.server.give(self.root)
