"""
The image cache (issue 25): one unpack per digest under the flow environments' lock-and-marker
discipline, verified digests, and the errors a user can act on, each asserted by its message.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from airflow_byo.images.cache import cached_images, ensure_image, read_cached, remove_image
from airflow_byo.images.errors import ByoImageError
from airflow_byo.images.reference import parse_reference
from tests.conftest import ROOT
from tests.images.helpers import ImageSet
from tests.images.image_builder import add_to_index, layer, member, write_image

#: Unpacks one image in a process of its own and says so (the log line of an unpack, or of a reuse).
ENSURE = """
import logging, sys
sys.path.insert(0, sys.argv[3])
logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stdout, force=True)
from pathlib import Path
from airflow_byo.images.cache import ensure_image
from airflow_byo.images.reference import parse_reference
image = ensure_image(parse_reference(sys.argv[1]), lambda: None, cache=Path(sys.argv[2]))
print("python:", image.python.path)
"""
pytest_plugins = ["tests.images.fixtures"]  # shared fixtures


def ensure_in_process(reference: str, cache: Path, **env: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-c", ENSURE, reference, str(cache), str(ROOT)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, **env},
    )


def error_of(reference: str, cache: Path) -> str:
    with pytest.raises(ByoImageError) as caught:
        ensure_image(parse_reference(reference), lambda: None, cache=cache)
    return str(caught.value)


def test_a_concurrent_first_use_unpacks_once(tmp_path: Path, test_images: ImageSet) -> None:
    reference = test_images.reference("py312")
    processes = [ensure_in_process(reference, tmp_path) for _ in range(3)]
    said = [process.communicate(timeout=300)[0] for process in processes]
    assert [process.returncode for process in processes] == [0, 0, 0], said
    assert sum(text.count("Unpacked image") for text in said) == 1, said
    assert sum(text.count("Reusing cached image") for text in said) == 2, said
    assert all("python: /usr/local/bin/python3" in text for text in said)


def test_a_killed_unpack_is_redone_never_used(tmp_path: Path, test_images: ImageSet) -> None:
    reference = test_images.reference("py312")
    killed = ensure_in_process(reference, tmp_path, BYO_CRASH_AT="image_layer_unpacked:1")
    killed.communicate(timeout=300)
    assert killed.returncode == -signal.SIGKILL
    folder = tmp_path / parse_reference(reference).cache_key
    assert (folder / "rootfs/usr/local/bin").is_dir()  # unpacked, but never marked complete
    assert read_cached(folder) is None
    again = ensure_in_process(reference, tmp_path)
    out = again.communicate(timeout=300)[0]
    assert again.returncode == 0, out
    assert "Found a previous (probably partially installed) image" in out
    assert "Unpacked image" in out
    assert read_cached(folder) is not None


def test_whiteouts_written_by_umoci_remove_a_lower_layers_file(tmp_path: Path, test_images: ImageSet) -> None:
    layout = tmp_path / "layout"
    shutil.copytree(test_images.layout, layout)
    image = f"{layout}:no-rev"
    subprocess.run(["umoci", "tag", "--image", f"{layout}:py312", "no-rev"], check=True)
    subprocess.run(["umoci", "insert", "--image", image, "--whiteout", "/opt/tools/bin/byo-rev"], check=True)
    digest = json.loads((layout / "index.json").read_text())["manifests"][-1]["digest"]
    cached = ensure_image(
        parse_reference(f"oci:{layout}:no-rev@{digest}"), lambda: None, cache=tmp_path / "c"
    )
    assert os.listdir(Path(cached.root) / "opt/tools/bin") == []


def test_a_tampered_layer_is_a_digest_mismatch_and_nothing_stays(tmp_path: Path) -> None:
    layout = tmp_path / "layout"
    digest = write_image(layout, "v1", [layer([(member("hello.txt"), b"hello")])], {})
    blob = next(p for p in (layout / "blobs/sha256").iterdir() if p.read_bytes()[:2] == b"\x1f\x8b")
    blob.write_bytes(layer([(member("hello.txt"), b"HELLO")]))
    message = error_of(f"oci:{layout}:v1@{digest}", tmp_path / "cache")
    assert f"image oci:{layout}:v1@{digest}: digest mismatch: layer 1/1" in message
    assert "Fix: check where the image comes from, and pin the digest you mean to run" in message
    assert list((tmp_path / "cache").glob("sha256-*/")) == []


def test_a_tag_pointing_at_another_digest_is_a_digest_mismatch(tmp_path: Path, test_images: ImageSet) -> None:
    other = test_images.digests["nopython"]
    message = error_of(f"oci:{test_images.layout}:py312@{other}", tmp_path)
    assert (
        f"digest mismatch: tag 'py312' of {test_images.layout} is {test_images.digests['py312']}" in message
    )


def test_an_unknown_tag_or_digest_names_what_the_layout_has(tmp_path: Path, test_images: ImageSet) -> None:
    digest = test_images.digests["py312"]
    message = error_of(f"oci:{test_images.layout}:nope@{digest}", tmp_path)
    assert f"unknown tag 'nope' in {test_images.layout} (its tags: " in message
    assert "Fix: correct the tag, or drop it and keep the digest" in message
    unknown = "sha256:" + "0" * 64
    message = error_of(f"oci:{test_images.layout}@{unknown}", tmp_path)
    assert f"{test_images.layout} has no image with digest {unknown}" in message
    message = error_of(f"oci:{tmp_path}/missing@{unknown}", tmp_path)
    assert "is not an OCI layout directory (no readable index.json)" in message


def test_an_image_for_another_architecture_is_refused_before_unpacking(tmp_path: Path) -> None:
    layout = tmp_path / "layout"
    digest = write_image(layout, "arm", [layer([(member("x"), b"x")])], {"architecture": "arm64"})
    message = error_of(f"oci:{layout}:arm@{digest}", tmp_path / "cache")
    assert "unsupported architecture: image" in message
    assert "is for linux/arm64, but this worker is linux/amd64" in message
    assert "Fix: pin the image built for this worker's platform" in message
    index = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.index.v1+json",
            "manifests": [
                {
                    "mediaType": "application/vnd.oci.image.manifest.v1+json",
                    "digest": digest,
                    "size": 1,
                    "platform": {"os": "linux", "architecture": "arm64"},
                }
            ],
        }
    ).encode()
    from tests.images.image_builder import _blob

    descriptor = _blob(layout, index)
    add_to_index(layout, "multi", {"mediaType": "application/vnd.oci.image.index.v1+json", **descriptor})
    message = error_of(f"oci:{layout}:multi@{descriptor['digest']}", tmp_path / "cache")
    assert "has no image for this worker's platform linux/amd64 (it has: linux/arm64)" in message


def test_an_image_over_the_cache_cap_says_the_cache_is_out_of_space(
    tmp_path: Path, test_images: ImageSet, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AIRFLOW__BYO__IMAGE_CACHE_MAX_MB", "5")
    message = error_of(test_images.reference("py312"), tmp_path)
    assert "the image cache is out of space: unpacked, the images would take more than" in message
    assert f"[byo] image_cache_max_mb = 5 MB ({tmp_path})" in message
    assert (
        "Fix: remove images no runtime uses (airflow byo runtimes prune), or raise image_cache_max_mb"
        in message
    )
    assert list(tmp_path.glob("sha256-*/")) == []


@pytest.mark.skipif(os.geteuid() != 0, reason="mounts a small tmpfs as a full disk (root only)")
def test_a_full_disk_says_the_cache_is_out_of_space(tmp_path: Path, test_images: ImageSet) -> None:
    disk = tmp_path / "disk"
    disk.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=8m", "tmpfs", str(disk)], check=True)
    try:
        message = error_of(test_images.reference("py312"), disk)
        assert (
            f"the image cache is out of space: the disk of {disk} is full (No space left on device)"
            in message
        )
        assert "Fix: free space there (airflow byo runtimes prune), or move [byo] image_cache_path" in message
    finally:
        subprocess.run(["umount", str(disk)], check=True)


def test_prune_leaves_an_image_in_use(tmp_path: Path, test_images: ImageSet) -> None:
    import fcntl

    cached = ensure_image(parse_reference(test_images.reference("nopython")), lambda: None, cache=tmp_path)
    with open(cached.in_use, "a") as held:
        fcntl.flock(held, fcntl.LOCK_SH)  # as a running sandbox holds it
        assert remove_image(cached) is False
        assert read_cached(cached.path) is not None
    assert remove_image(cached) is True
    assert not cached.path.exists()
    assert cached_images(tmp_path) == []


@pytest.mark.skipif(shutil.which("skopeo") is None, reason="needs Debian's skopeo")
def test_a_docker_save_tarball_is_pinned_by_its_image_id(tmp_path: Path, test_images: ImageSet) -> None:
    tarball = tmp_path / "tools.tar"
    source = f"oci:{test_images.layout}:nopython"
    subprocess.run(["skopeo", "copy", "--quiet", source, f"docker-archive:{tarball}"], check=True)
    manifest = json.loads(
        subprocess.run(["tar", "-xOf", str(tarball), "manifest.json"], capture_output=True).stdout
    )
    image_id = "sha256:" + manifest[0]["Config"].removeprefix("blobs/sha256/").removesuffix(".json")
    cached = ensure_image(
        parse_reference(f"docker-archive:{tarball}@{image_id}"), lambda: None, cache=tmp_path
    )
    assert (Path(cached.root) / "opt/tools/bin/byo-rev").is_file()
    other = "sha256:" + "2" * 64
    message = error_of(f"docker-archive:{tarball}@{other}", tmp_path)
    assert f"digest mismatch: the tarball's image ID (its config digest) is {image_id}" in message
