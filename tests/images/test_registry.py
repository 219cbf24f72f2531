"""
Images from a registry (issue 25), fetched with Debian's skopeo from a real registry server on
127.0.0.1 (tests/images/registry.py): a private registry through an Airflow connection, and the
errors a user can act on -- refused credentials (naming the connection, never its secret), no
credentials, an unknown image, a registry that sends other bytes than the digest pins.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from airflow_byo.exceptions import ByoConfigError
from airflow_byo.flow import ResolvedFlow
from airflow_byo.runner import sandbox_mode
from tests.images.helpers import ImageSet, outputs, run_on_image
from tests.images.registry import Registry

pytest_plugins = ["tests.images.fixtures"]  # shared fixtures

pytestmark = [
    pytest.mark.skipif(shutil.which("skopeo") is None, reason="needs Debian's skopeo"),
    pytest.mark.skipif(not sandbox_mode.bubblewrap_status()[0], reason="needs a working bubblewrap"),
]

SECRET = "s3cret-registry-password-4711"
UPPER = "def process(file, ctx):\n    return file.open().read().upper()\n"


@pytest.fixture
def registry(test_images: ImageSet, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Registry]:
    server = Registry(test_images.layout, login="byo-puller", password=SECRET)
    monkeypatch.setenv("CONTAINERS_REGISTRIES_CONF", str(server.registries_conf(tmp_path)))
    monkeypatch.setenv("AIRFLOW__BYO__IMAGE_CACHE_PATH", str(tmp_path / "image-cache"))
    yield server
    server.stop()


@pytest.fixture
def runtime_on(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Callable[..., str]:
    """Defines the runtime ``remote`` on an image reference (and a registry connection); its name."""

    def define(image: str, conn_id: str | None = None) -> str:
        runtime: dict[str, Any] = {"image": image}
        if conn_id:
            runtime["registry_conn_id"] = conn_id
        path = tmp_path / "runtimes.json"
        path.write_text(json.dumps({"runtimes": {"remote": runtime}}))
        monkeypatch.setenv("AIRFLOW__BYO__RUNTIMES", str(path))
        return "remote"

    return define


def prepare_error(runtime: str) -> str:
    with pytest.raises(ByoConfigError) as caught:
        ResolvedFlow.resolve(UPPER, runtime=runtime).interpreter()
    return str(caught.value)


def test_a_flow_runs_on_an_image_from_a_private_registry(
    tmp_path: Path, registry: Registry, test_images: ImageSet, runtime_on: Any, connections: Any
) -> None:
    connections("byo_registry", {"conn_type": "docker", "login": "byo-puller", "password": SECRET})
    runtime = runtime_on(registry.reference(test_images.digests["py312"], "3.12"), "byo_registry")
    result, out, log = run_on_image(tmp_path, UPPER, runtime)
    assert result["files_processed"] == 1, result
    assert outputs(out) == {"a.txt": "HELLO"}
    assert any("/blobs/sha256:" in request for request in registry.requests)
    assert SECRET not in log.text


def test_refused_credentials_name_the_connection_never_its_secret(
    registry: Registry, test_images: ImageSet, runtime_on: Any, connections: Any
) -> None:
    wrong = "wrong-password-" + SECRET[::-1]
    connections("byo_registry", {"conn_type": "docker", "login": "byo-puller", "password": wrong})
    message = prepare_error(runtime_on(registry.reference(test_images.digests["py312"]), "byo_registry"))
    assert f"the registry {registry.host} refused the credentials of connection 'byo_registry'" in message
    assert "Fix: correct that connection's login and password (or token)" in message
    assert wrong not in message
    assert SECRET not in message


def test_a_registry_asking_for_credentials_says_how_to_give_them(
    registry: Registry, test_images: ImageSet, runtime_on: Any
) -> None:
    message = prepare_error(runtime_on(registry.reference(test_images.digests["py312"])))
    assert f"the registry {registry.host} asks for credentials" in message
    assert "Fix: set the runtime's registry_conn_id to an Airflow connection" in message


def test_an_unknown_image_names_the_repository_and_digest(
    registry: Registry, runtime_on: Any, connections: Any
) -> None:
    connections("byo_registry", {"conn_type": "docker", "login": "byo-puller", "password": SECRET})
    unknown = "sha256:" + "1" * 64
    message = prepare_error(runtime_on(registry.reference(unknown), "byo_registry"))
    assert f"unknown image: {registry.host} has no {registry.host}/team/tools@{unknown}" in message
    assert "Fix: check the repository and the digest" in message


def test_a_registry_sending_other_bytes_is_a_digest_mismatch(
    registry: Registry, test_images: ImageSet, runtime_on: Any, connections: Any
) -> None:
    connections("byo_registry", {"conn_type": "docker", "login": "byo-puller", "password": SECRET})
    digest = test_images.digests["py312"]
    registry.tamper.add(digest)
    message = prepare_error(runtime_on(registry.reference(digest), "byo_registry"))
    assert "digest mismatch" in message
    assert "Fix: check where the image comes from, and pin the digest you mean to run" in message
