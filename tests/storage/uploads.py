"""A worker process SIGKILLed in the middle of publishing one large file (shared by the tests)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from typing import TYPE_CHECKING

from tests.backends import LocalBackend

if TYPE_CHECKING:
    from collections.abc import Callable
    from pathlib import Path

    from tests.backends import Backend

_UPLOAD = """
import sys
from airflow_byo.storage import Location
print("uploading", flush=True)
Location(sys.argv[1], sys.argv[2] or None).publish(sys.argv[3], "report.bin")
print("done", flush=True)
"""


def kill_mid_upload(
    backend: Backend, tmp_path: Path, size: int, in_progress: Callable[[Backend], bool]
) -> None:
    """
    Publish a ``size``-byte file as ``out/report.bin`` of ``backend`` in another process and
    SIGKILL it once ``in_progress(backend)`` says the upload is under way.
    """
    big = tmp_path / "big.bin"
    LocalBackend(tmp_path).put_large("big.bin", size)
    process = subprocess.Popen(
        [sys.executable, "-c", _UPLOAD, backend.url("out"), backend.conn_id or "", str(big)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=os.environ.copy(),
    )
    assert process.stdout is not None
    assert process.stdout.readline() == b"uploading\n"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and not in_progress(backend):
        assert process.poll() is None, process.stderr.read() if process.stderr else ""
        time.sleep(0.05)
    assert in_progress(backend), "the upload never started"
    process.send_signal(signal.SIGKILL)
    process.wait()
    big.unlink()
