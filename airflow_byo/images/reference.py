"""
An image reference as a runtime writes it, parsed and checked (issue 25).

Three sources, each pinned by a digest::

    image: registry.example.com/team/tools:1.4@sha256:<64 hex>   # a registry (docker:// optional)
    image: python:3.12-slim@sha256:<64 hex>                       # Docker Hub: docker.io/library/python
    image: oci:/srv/images/tools:1.4@sha256:<64 hex>              # an OCI layout directory (tag optional)
    image: docker-archive:/srv/images/tools.tar@sha256:<64 hex>   # a `docker save` tarball

For a registry and an OCI layout the digest is the manifest's (or the multi-platform index's, as
``docker pull name@sha256:...`` takes it); a ``docker save`` tarball carries no manifest digest, so
there it is the image ID (``docker inspect --format '{{.Id}}'``, the digest of the image's config).

Standard library only.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from typing import Literal

__all__ = ["ImageReference", "parse_reference"]

Transport = Literal["docker", "oci", "docker-archive"]

_DIGEST = re.compile(r"^sha256:[a-f0-9]{64}$")
_COMPONENT = re.compile(r"^[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*$")
_HOST = re.compile(
    r"^(?:[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?(?:\.[A-Za-z0-9-]+)*|\[[0-9a-fA-F:]+\])(?::\d+)?$"
)
_TAG = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$")
_PIN_HINT = {
    "docker": "skopeo inspect --format '{{.Digest}}' docker://{name}",
    "oci": "the digest of the tag's entry in the layout's index.json",
    "docker-archive": "docker inspect --format '{{.Id}}' <image>, the image ID",
}


@dataclass(frozen=True)
class ImageReference:
    """
    A pinned image reference.

    :param transport: ``docker`` (a registry), ``oci`` (a layout directory) or ``docker-archive``.
    :param location: ``registry/repository`` (Docker Hub names expanded), or the local path.
    :param tag: the tag, if written (a registry reference is fetched by digest; a layout's tag must
        point at the digest).
    :param digest: ``sha256:<hex>``.
    :param text: the reference as written.
    """

    transport: Transport
    location: str
    tag: str | None
    digest: str
    text: str

    @property
    def registry(self) -> str | None:
        """The registry's host (and port) of a registry reference."""
        return self.location.split("/", 1)[0] if self.transport == "docker" else None

    @property
    def cache_key(self) -> str:
        """The image's folder name in the cache: one per pinned digest."""
        return self.digest.replace(":", "-")

    def skopeo_name(self, digest: str | None = None) -> str:
        """The reference in skopeo's syntax, by ``digest`` (default: the pinned one)."""
        if self.transport == "docker":
            return f"docker://{self.location}@{digest or self.digest}"
        return f"{self.transport}:{self.location}"

    def __str__(self) -> str:
        return self.text


def parse_reference(text: str) -> ImageReference:
    """
    Parse and check an image reference.

    :raises ValueError: ``<problem>. Fix: <how>`` (the runtimes file reports it at its line).
    """
    written = text.strip()
    if not written:
        raise ValueError("the image reference is empty. Fix: write registry/repository:tag@sha256:<digest>")
    transport: Transport = "docker"
    rest = written
    for prefix, kind in (("docker://", "docker"), ("oci:", "oci"), ("docker-archive:", "docker-archive")):
        if written.startswith(prefix):
            transport, rest = kind, written[len(prefix) :]  # type: ignore[assignment]
            break
    name, at, digest = rest.rpartition("@")
    if not at:
        hint = _PIN_HINT[transport].replace("{name}", rest)
        raise ValueError(
            f"image {written!r} is not pinned by a digest: a tag can move, so workers could run "
            f"different images. Fix: append @sha256:<digest> ({hint})"
        )
    if not _DIGEST.match(digest):
        raise ValueError(
            f"image {written!r}: {digest!r} is not a sha256 digest. Fix: write @sha256: and the 64 "
            "lowercase hex digits of the digest"
        )
    if transport == "docker":
        location, tag = _registry_name(name, written)
    else:
        location, tag = _local_path(name, transport, written)
    return ImageReference(transport, location, tag, digest, written)


def _registry_name(name: str, written: str) -> tuple[str, str | None]:
    """``registry/repository`` (Docker Hub's short names expanded) and the tag."""
    tag = None
    last = name.rsplit("/", 1)[-1]
    if ":" in last:
        name, _, tag = name.rpartition(":")
        if not _TAG.match(tag):
            raise ValueError(
                f"image {written!r}: {tag!r} is not a valid tag. Fix: use letters, digits, _ . -"
            )
    parts = name.split("/")
    host = None
    if len(parts) > 1 and ("." in parts[0] or ":" in parts[0] or parts[0] == "localhost"):
        host = parts.pop(0)
        if not _HOST.match(host):
            raise ValueError(
                f"image {written!r}: {host!r} is not a registry host. Fix: write host[:port]/path"
            )
    if not parts or not all(_COMPONENT.match(part) for part in parts):
        raise ValueError(
            f"image {written!r}: {'/'.join(parts)!r} is not a repository name. Fix: use lowercase "
            "letters, digits and . _ - between slashes (e.g. team/tools)"
        )
    if host is None:  # Docker Hub, as docker pull reads a short name
        host = "docker.io"
        if len(parts) == 1:
            parts.insert(0, "library")
    return f"{host}/{'/'.join(parts)}", tag


def _local_path(name: str, transport: Transport, written: str) -> tuple[str, str | None]:
    """The layout directory or tarball (absolute, normalised) and, for a layout, the tag."""
    tag = None
    if transport == "oci":
        path, colon, maybe_tag = name.rpartition(":")
        if colon and "/" not in maybe_tag and path:
            name, tag = path, maybe_tag
            if not _TAG.match(tag):
                raise ValueError(
                    f"image {written!r}: {tag!r} is not a valid tag. Fix: use letters, digits, _ . -"
                )
    if not os.path.isabs(name) or os.path.normpath(name) != name:
        kind = "layout directory" if transport == "oci" else "tarball"
        raise ValueError(
            f"image {written!r}: {name!r} is not an absolute, normalised path. Fix: write the {kind}'s "
            f"absolute path, e.g. {transport}:/srv/images/tools" + (".tar" if transport != "oci" else "")
        )
    return name, tag
