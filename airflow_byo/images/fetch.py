"""
Getting an image's manifest, config and layers onto the worker, each verified by its digest.

- **A registry**: Debian's ``skopeo`` -- no daemon. ``skopeo inspect --raw`` fetches the pinned
  document (its digest is checked here again); a multi-platform index gives the entry for this
  worker's platform; the config is fetched and its platform checked before any layer moves; then
  ``skopeo copy`` to a ``dir:`` folder keeps the manifest and blobs exactly as the registry has
  them. A private registry's credentials come from an Airflow connection, through an auth file
  only the worker can read (never on a command line, never in a message). The deployment's
  ``registries.conf``, ``policy.json`` and proxies apply as for any skopeo.
- **An OCI layout directory** (``oci:``): read in place.
- **A ``docker save`` tarball** (``docker-archive:``): ``skopeo copy`` to a ``dir:`` folder; pinned
  by the image ID, the digest of its config.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import re
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from airflow_byo.images.errors import ByoImageError
from airflow_byo.images.manifests import (
    Descriptor,
    DigestMismatch,
    is_index,
    parse_document,
    parse_manifest,
    select_platform,
    sha256_of,
    verify_bytes,
)

if TYPE_CHECKING:
    from collections.abc import Iterator

    from airflow_byo.images.reference import ImageReference

__all__ = ["Fetched", "RegistryCredentials", "fetch_image"]

INSTALL_SKOPEO = "install the Debian package skopeo (apt-get install -y skopeo)"
_TIMEOUT_SECONDS = 3600
_POLICIES = ("/etc/containers/policy.json", "~/.config/containers/policy.json")


@dataclass(frozen=True)
class RegistryCredentials:
    """A registry login from an Airflow connection (``conn_id`` is named in errors, never ``password``)."""

    conn_id: str
    login: str
    password: str = ""


@dataclass(frozen=True)
class Fetched:
    """An image's verified manifest and config, and where its layer blobs are on this machine."""

    manifest_digest: str
    config_digest: str
    config_raw: bytes
    layers: tuple[Descriptor, ...]
    blobs: str  # a folder: <blobs>/<hex> (dir:) or <blobs>/sha256/<hex> (OCI layout)
    layout: bool = False

    def blob_path(self, digest: str) -> str:
        hex_digest = digest.removeprefix("sha256:")
        return (
            os.path.join(self.blobs, "sha256", hex_digest)
            if self.layout
            else os.path.join(self.blobs, hex_digest)
        )


def fetch_image(reference: ImageReference, work: str, credentials: RegistryCredentials | None) -> Fetched:
    """
    The image ``reference`` pins, verified, with its blobs under ``work`` (or in its layout).

    :raises ByoImageError: unknown image or tag, refused credentials, an unreachable registry --
        each naming the image and the fix.
    :raises DigestMismatch: a document or blob is not what its digest says.
    :raises UnsupportedPlatform: the image is for another platform than this worker's.
    """
    if reference.transport == "oci":
        return _from_layout(reference)
    if reference.transport == "docker-archive":
        return _from_archive(reference, work)
    return _from_registry(reference, work, credentials)


def _finish(
    reference: ImageReference, manifest_raw: bytes, manifest_digest: str, blobs: str, layout: bool
) -> Fetched:
    """The manifest's config (read and verified) and layers."""
    config, layers = parse_manifest(parse_document(manifest_raw, f"image {reference}"), f"image {reference}")
    fetched = Fetched(manifest_digest, config.digest, b"", tuple(layers), blobs, layout)
    try:
        config_raw = Path(fetched.blob_path(config.digest)).read_bytes()
    except OSError:
        raise ByoImageError(f"image {reference}: its config {config.digest} is missing") from None
    verify_bytes(config_raw, config.digest, f"the config of image {reference}")
    return Fetched(manifest_digest, config.digest, config_raw, tuple(layers), blobs, layout)


# -- an OCI layout directory -----------------------------------------------------------------------
def _from_layout(reference: ImageReference) -> Fetched:
    layout = reference.location
    try:
        index = parse_document(Path(layout, "index.json").read_bytes(), f"{layout}/index.json")
    except OSError:
        raise ByoImageError(
            f"image {reference}: {layout} is not an OCI layout directory (no readable index.json). "
            "Fix: point oci: at a folder written by skopeo copy ... oci:<dir> or umoci"
        ) from None
    entries = index.get("manifests") or []
    tags = {str((e.get("annotations") or {}).get("org.opencontainers.image.ref.name")): e for e in entries}
    digest = reference.digest
    if reference.tag is not None:
        if reference.tag not in tags:
            known = ", ".join(sorted(t for t in tags if t != "None")) or "none"
            raise ByoImageError(
                f"image {reference}: unknown tag {reference.tag!r} in {layout} (its tags: {known}). "
                "Fix: correct the tag, or drop it and keep the digest"
            )
        if tags[reference.tag].get("digest") != digest:
            raise DigestMismatch(f"tag {reference.tag!r} of {layout} is {tags[reference.tag].get('digest')}")
    raw = _layout_blob(layout, digest)
    if raw is None:
        raise ByoImageError(
            f"image {reference}: {layout} has no image with digest {digest}. Fix: pin a digest the "
            "layout's index.json lists (or copy the image there: skopeo copy ... oci:<dir>:<tag>)"
        )
    verify_bytes(raw, digest, f"image {reference}")
    document = parse_document(raw, f"image {reference}")
    if is_index(document):
        entry = select_platform(document, f"image {reference}")
        raw = _layout_blob(layout, entry.digest) or b""
        verify_bytes(raw, entry.digest, f"the {entry.digest} entry of image {reference}")
        digest = entry.digest
    return _finish(reference, raw, digest, os.path.join(layout, "blobs"), layout=True)


def _layout_blob(layout: str, digest: str) -> bytes | None:
    try:
        with open(os.path.join(layout, "blobs", "sha256", digest.removeprefix("sha256:")), "rb") as handle:
            return handle.read(4 << 20)
    except OSError:
        return None


# -- a docker save tarball -------------------------------------------------------------------------
def _from_archive(reference: ImageReference, work: str) -> Fetched:
    if not os.path.isfile(reference.location):
        raise ByoImageError(
            f"image {reference}: the tarball {reference.location} does not exist on this worker. "
            "Fix: put it at that path on every worker (or use a registry)"
        )
    target = os.path.join(work, "image")
    _skopeo(["copy", "--quiet", reference.skopeo_name(), f"dir:{target}"], reference, None)
    raw = Path(target, "manifest.json").read_bytes()
    fetched = _finish(reference, raw, sha256_of(raw), target, layout=False)
    if fetched.config_digest != reference.digest:
        raise DigestMismatch(f"the tarball's image ID (its config digest) is {fetched.config_digest}")
    return fetched


# -- a registry ----------------------------------------------------------------------------------------
def _from_registry(reference: ImageReference, work: str, credentials: RegistryCredentials | None) -> Fetched:
    raw = _skopeo(["inspect", "--raw", reference.skopeo_name()], reference, credentials)
    verify_bytes(raw, reference.digest, f"the manifest the registry sent for image {reference}")
    digest = reference.digest
    document = parse_document(raw, f"image {reference}")
    if is_index(document):
        digest = select_platform(document, f"image {reference}").digest
        raw = _skopeo(["inspect", "--raw", reference.skopeo_name(digest)], reference, credentials)
        verify_bytes(raw, digest, f"the {digest} entry of image {reference}")
    config, _ = parse_manifest(parse_document(raw, f"image {reference}"), f"image {reference}")
    config_raw = _skopeo(
        ["inspect", "--raw", "--config", reference.skopeo_name(digest)], reference, credentials
    )
    verify_bytes(config_raw, config.digest, f"the config of image {reference}")
    from airflow_byo.images.manifests import parse_config

    parse_config(config_raw, f"image {reference}")  # another platform: said before any layer moves
    target = os.path.join(work, "image")
    _skopeo(["copy", "--quiet", reference.skopeo_name(digest), f"dir:{target}"], reference, credentials)
    copied = Path(target, "manifest.json").read_bytes()
    verify_bytes(copied, digest, f"the manifest skopeo copied for image {reference}")
    return _finish(reference, copied, digest, target, layout=False)


@contextlib.contextmanager
def _auth_options(reference: ImageReference, credentials: RegistryCredentials | None) -> Iterator[list[str]]:
    """``--authfile`` with the connection's login in a file only this user can read."""
    if credentials is None:
        yield []
        return
    with tempfile.TemporaryDirectory(prefix="byo-registry-auth-") as folder:
        path = os.path.join(folder, "auth.json")
        token = base64.b64encode(f"{credentials.login}:{credentials.password}".encode()).decode()
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
        with os.fdopen(fd, "w") as handle:
            json.dump({"auths": {reference.registry: {"auth": token}}}, handle)
        yield ["--authfile", path]


def _skopeo(args: list[str], reference: ImageReference, credentials: RegistryCredentials | None) -> bytes:
    skopeo = shutil.which("skopeo")
    if skopeo is None:
        raise ByoImageError(f"image {reference}: skopeo is needed to fetch it: {INSTALL_SKOPEO}")
    # No policy.json at all: skopeo would refuse to copy; the digests are verified here anyway.
    found = [] if any(os.path.exists(os.path.expanduser(p)) for p in _POLICIES) else ["--insecure-policy"]
    if conf := os.environ.get("CONTAINERS_REGISTRIES_CONF"):  # as podman reads it (skopeo 1.9 does not)
        found += ["--registries-conf", conf]
    command, options = args[0], args[1:]
    with _auth_options(reference, credentials) as auth:
        try:
            result = subprocess.run(
                [skopeo, *found, command, *auth, *options],
                capture_output=True,
                stdin=subprocess.DEVNULL,
                timeout=_TIMEOUT_SECONDS,
            )
        except subprocess.TimeoutExpired:
            raise ByoImageError(
                f"image {reference}: skopeo {command} took over {_TIMEOUT_SECONDS} s"
            ) from None
    if result.returncode != 0:
        raise explain_skopeo(result.stderr.decode("utf-8", "replace"), reference, credentials)
    return result.stdout


_MSG = re.compile(r'msg="((?:[^"\\]|\\.)*)"')


def explain_skopeo(
    stderr: str, reference: ImageReference, credentials: RegistryCredentials | None
) -> Exception:
    """skopeo's failure as an error that says what to fix, without the connection's secret."""
    lines = [line for line in stderr.strip().splitlines() if line.strip()]
    found = _MSG.search(lines[-1]) if lines else None
    detail = (found.group(1).replace('\\"', '"') if found else (lines[-1] if lines else "no output"))[:600]
    if credentials is not None and credentials.password:
        detail = detail.replace(credentials.password, "***")
    lowered = detail.lower()
    host = reference.registry or reference.location
    if "does not match" in lowered or "digest mismatch" in lowered:
        return DigestMismatch(detail)
    if any(
        word in lowered for word in ("unauthorized", "authentication required", "401", "denied", "username")
    ):
        if credentials is not None:
            return ByoImageError(
                f"image {reference}: the registry {host} refused the credentials of connection "
                f"{credentials.conn_id!r} ({detail}). Fix: correct that connection's login and password "
                "(or token), and check that they may pull this repository"
            )
        return ByoImageError(
            f"image {reference}: the registry {host} asks for credentials ({detail}). Fix: set the "
            "runtime's registry_conn_id to an Airflow connection with the registry's login and password"
        )
    if any(
        word in lowered for word in ("manifest unknown", "name unknown", "not found", "404", "no such image")
    ):
        return ByoImageError(
            f"image {reference}: unknown image: {host} has no {reference.location}@{reference.digest} "
            f"({detail}). Fix: check the repository and the digest (skopeo inspect {reference.skopeo_name()})"
        )
    if any(word in lowered for word in ("connection refused", "no such host", "i/o timeout", "dial tcp")):
        return ByoImageError(
            f"image {reference}: cannot reach the registry {host} ({detail}). Fix: check the registry's "
            "address, the worker's network and proxy settings, and registries.conf"
        )
    return ByoImageError(f"image {reference}: skopeo failed: {detail}")
