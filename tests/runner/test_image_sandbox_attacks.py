"""
The sandbox's secrets-canary and hostile-processor checks, on an image runtime (issue 25): the
same hostile functions as tests/runner/test_sandboxed_flow.py, run by a ByoFlowOperator task on a
runtime whose root file system is an OCI image (and whose Python is another version than the
worker's). An image changes what ``/`` is, never what the child may reach.
"""

from __future__ import annotations

import json
import time
import uuid
from pathlib import Path
from typing import Any

import pytest

from airflow_byo.runner import sandbox_mode
from tests.images.helpers import run_on_image
from tests.runner.test_sandboxed_flow import (
    CANARY,
    CONNECT,
    DAEMON,
    FORGE,
    FORK_AND_DIE,
    SNOOP,
    _processes_with,
)

# The image fixtures, and the worker's secrets and loopback server of the sandbox's own checks.
pytest_plugins = ["tests.images.fixtures", "tests.runner.sandbox_fixtures"]

pytestmark = pytest.mark.skipif(
    not sandbox_mode.bubblewrap_status()[0],
    reason=f"bubblewrap cannot work here: {sandbox_mode.bubblewrap_status()[1]}",
)

#: Looks for the worker's files from inside the image: the runtimes file, the image cache, the
#: worker's own interpreter and site-packages, and what the host has under /etc and /root.
SEEK = """
import json, os

def process(file, ctx):
    found = {}
    for path in ctx.variables["paths"]:
        try:
            found[path] = sorted(os.listdir(path)) if os.path.isdir(path) else open(path).read(200)
        except OSError as exc:
            found[path] = type(exc).__name__
    return json.dumps(found)
"""


def everything(result: dict[str, Any], out: Path, log: Any) -> str:
    published = (
        "".join(p.read_text(errors="replace") for p in out.rglob("*") if p.is_file()) if out.exists() else ""
    )
    return json.dumps(result, default=str) + published + log.text


def test_a_snooping_function_on_an_image_finds_no_worker_secret(
    tmp_path: Path, image_runtimes: Path, worker_secrets: dict[str, str]
) -> None:
    result, out, log = run_on_image(tmp_path, SNOOP, "tools-bare", variables=worker_secrets)
    assert result["sandbox"] == "bubblewrap"
    assert result["files_processed"] == 1, result  # it ran, and found nothing
    assert CANARY not in everything(result, out, log)
    assert "FileNotFoundError" in (out / "a.txt").read_text()  # airflow.cfg is not even there


def test_the_workers_files_are_not_in_the_image(
    tmp_path: Path, image_runtimes: Path, session_image_cache: Path
) -> None:
    import sys

    paths = [
        str(image_runtimes),
        str(session_image_cache),
        sys.executable,
        "/root",
        "/etc/shadow",
        "/etc/hostname",
    ]
    result, out, _ = run_on_image(tmp_path, SEEK, "tools-bare", variables={"paths": paths})
    assert result["files_processed"] == 1, result
    found = json.loads((out / "a.txt").read_text())
    assert found == {path: "FileNotFoundError" for path in paths}


def test_a_forged_message_from_an_image_fails_the_file_and_writes_nothing_outside(
    tmp_path: Path, image_runtimes: Path
) -> None:
    result, _, _ = run_on_image(tmp_path, FORGE, "tools-bare")
    assert result["files_failed"] == 1
    assert "the processor sent an invalid message" in result["files"][0]["error"]
    assert [p for p in tmp_path.rglob("x.txt")] == []


def test_no_daemon_started_in_an_image_outlives_the_task(tmp_path: Path, image_runtimes: Path) -> None:
    marker = f"byo-image-daemon-{uuid.uuid4().hex}"
    result, _, _ = run_on_image(tmp_path, DAEMON, "tools-bare", variables={"marker": marker})
    assert result["files_processed"] == 1, result
    deadline = time.monotonic() + 5
    while _processes_with(marker) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert _processes_with(marker) == []


def test_a_crash_after_a_fork_in_an_image_is_a_crash(tmp_path: Path, image_runtimes: Path) -> None:
    result, _, _ = run_on_image(tmp_path, FORK_AND_DIE, "tools-bare", job={"timeout_seconds": 60})
    assert result["files_failed"] == 1
    assert "ChildDied" in result["files"][0]["error"]
    assert "exited with code 3" in result["files"][0]["error"]


def test_an_image_has_no_network_by_default(tmp_path: Path, image_runtimes: Path, tcp_server: int) -> None:
    result, _, _ = run_on_image(tmp_path, CONNECT, "tools-bare", variables={"port": tcp_server})
    assert result["files_failed"] == 1
    assert "no connection" in result["files"][0]["error"]


# -- a hostile image --------------------------------------------------------------------------------
#: What a function sees of the hostile layer's leftovers, inside the sandbox.
INSPECT = """
import json, os, stat

def process(file, ctx):
    seen = {}
    for path in ("/usr/local/bin/su-root", "/etc/host-link", "/opt/dev-node"):
        try:
            info = os.lstat(path)
            seen[path] = {"mode": oct(stat.S_IMODE(info.st_mode)), "link": stat.S_ISLNK(info.st_mode)}
        except OSError as exc:
            seen[path] = type(exc).__name__
    seen["through_link"] = open("/etc/opt-link/planted.txt").read()
    seen["where"] = open("/opt/elsewhere/planted.txt").read()
    return json.dumps(seen)
"""


def _hostile_runtime(
    tmp_path: Path, test_images: Any, monkeypatch: pytest.MonkeyPatch, members: list[Any]
) -> str:
    from tests.images.image_builder import layer, write_image

    layout = tmp_path / "hostile-layout"
    config = {"config": {"Env": ["PATH=/usr/local/bin:/usr/bin"]}}
    digest = write_image(layout, "hostile", [layer(members)], config, base=(test_images.layout, "py312"))
    path = tmp_path / "hostile-runtimes.json"
    path.write_text(json.dumps({"runtimes": {"hostile": {"image": f"oci:{layout}:hostile@{digest}"}}}))
    monkeypatch.setenv("AIRFLOW__BYO__RUNTIMES", str(path))
    return "hostile"


def test_a_hostile_images_links_devices_and_setuid_bits_are_neutralised(
    tmp_path: Path, image_runtimes: Path, test_images: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    import tarfile

    from tests.images.image_builder import member

    host = tmp_path / "host-folder"
    host.mkdir()
    runtime = _hostile_runtime(
        tmp_path,
        test_images,
        monkeypatch,
        [
            (member("usr/local/bin/su-root", mode=0o4755), b"#!/bin/sh\n"),
            (member("etc/host-link", tarfile.SYMTYPE, link=str(host)), None),  # absolute, to a host folder
            (member("etc/host-link/planted.txt"), b"written through the link"),
            (member("etc/opt-link", tarfile.SYMTYPE, link="/opt/elsewhere"), None),
            (member("etc/opt-link/planted.txt"), b"written through the link"),
            (member("opt/dev-node", tarfile.CHRTYPE), None),
        ],
    )
    result, out, log = run_on_image(tmp_path / "run", INSPECT, runtime)
    assert result["files_processed"] == 1, (result["files"], log.text)
    seen = json.loads((out / "a.txt").read_text())
    assert seen["/usr/local/bin/su-root"] == {"mode": "0o755", "link": False}  # no setuid bit
    assert seen["/etc/host-link"]["link"] is True  # kept, resolving inside the image
    assert seen["/opt/dev-node"] == "FileNotFoundError"  # dropped
    # A write through an absolute link lands inside the image, at the link's target there.
    assert seen["through_link"] == seen["where"] == "written through the link"
    assert list(host.iterdir()) == []  # never on the host


def test_a_hostile_image_leaving_its_root_is_refused(
    tmp_path: Path, image_runtimes: Path, test_images: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from airflow_byo.exceptions import ByoConfigError
    from tests.images.image_builder import member

    runtime = _hostile_runtime(tmp_path, test_images, monkeypatch, [(member("../../escaped.txt"), b"x")])
    with pytest.raises(ByoConfigError) as caught:
        run_on_image(tmp_path / "run", INSPECT, runtime)
    message = str(caught.value)
    assert "is refused: layer 2/2" in message
    assert "member '../../escaped.txt': a path with '..': it would leave the image's root" in message
    assert "nothing of it was used" in message
    assert not list(tmp_path.parent.glob("escaped.txt"))
