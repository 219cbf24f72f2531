"""
The test images and runtimes on them, as fixtures (``pytest_plugins = ["tests.images.fixtures"]``).

The images are built once per test session -- by whichever pytest-xdist worker gets there first,
under a lock -- from files on this machine (:mod:`tests.images.image_builder`):

- ``py312``: CPython 3.12 (another version than the worker's 3.11), ``sh``, and ``byo-rev`` on
  the image's PATH only; Env, WorkingDir ``/work/data`` and User ``1000:1000`` set;
- ``py39``: the same with CPython 3.9, the oldest the child supports;
- ``nopython``: ``sh`` and ``byo-rev``, no Python.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

from tests.images.helpers import IMAGE_ENV, NEW_MINOR, OLD_MINOR, WORKDIR, ImageSet, runtimes_yaml
from tests.images.image_builder import assemble_rootfs, locked, python_prefix, umoci_image


def _build(base: Path) -> dict[str, str]:
    digests = {}
    config = {"env": IMAGE_ENV, "workdir": WORKDIR, "user": "1000:1000"}
    for tag, minor, with_python in (
        ("py312", NEW_MINOR, True),
        ("py39", OLD_MINOR, True),
        ("nopython", "", False),
    ):
        if with_python and python_prefix(minor) is None:
            continue
        rootfs = base / f"rootfs-{tag}"
        assemble_rootfs(rootfs, minor, with_python=with_python)
        digests[tag] = umoci_image(base / "layout", tag, rootfs, config)
        shutil.rmtree(rootfs)
    return digests


@pytest.fixture(scope="session")
def test_images(tmp_path_factory: pytest.TempPathFactory) -> ImageSet:
    """The session's OCI layout with the images above (built once for all test workers)."""
    # pytest-xdist's workers share their session's folder; a single process has its own.
    shared = tmp_path_factory.getbasetemp()
    base = (shared.parent if os.environ.get("PYTEST_XDIST_WORKER") else shared) / "byo-test-images"
    with locked(base.with_suffix(".lock")):
        done = base / "digests.json"
        if not done.exists():
            base.mkdir(exist_ok=True)
            done.write_text(json.dumps(_build(base)))
    return ImageSet(base / "layout", json.loads(done.read_text()))


@pytest.fixture(scope="session")
def session_image_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One image cache per test worker: each image is unpacked once per worker."""
    return tmp_path_factory.mktemp("image-cache")


@pytest.fixture
def image_runtimes(
    test_images: ImageSet, session_image_cache: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Path:
    """``[byo] runtimes`` with runtimes on the test images, and the worker's image cache."""
    path = tmp_path / "runtimes.json"
    path.write_text(runtimes_yaml(test_images))
    monkeypatch.setenv("AIRFLOW__BYO__RUNTIMES", str(path))
    monkeypatch.setenv("AIRFLOW__BYO__IMAGE_CACHE_PATH", str(session_image_cache))
    return path
