"""
The OCI (and Docker v2) JSON an image is made of, read and verified: index -> manifest -> config
and layers, every one checked against the digest that names it.

The pinned digest names the top document (a manifest, or a multi-platform index whose entry for
this machine's platform is taken); the manifest names the config and the layers by digest; so
once each blob hashes to its name, the root file system is exactly what the pin says.

Standard library only.
"""

from __future__ import annotations

import hashlib
import json
import platform
from dataclasses import dataclass
from typing import IO, Any

__all__ = [
    "Descriptor",
    "DigestMismatch",
    "ImageConfig",
    "UnsupportedPlatform",
    "VerifiedReader",
    "host_platform",
    "is_index",
    "parse_config",
    "parse_document",
    "parse_manifest",
    "select_platform",
    "sha256_of",
    "verify_bytes",
]

MAX_DOCUMENT_BYTES = 4 << 20
_INDEX_TYPES = (
    "application/vnd.oci.image.index.v1+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
)
#: ``uname -m`` -> the OCI architecture name (and the variant an index may give it).
_ARCHITECTURES = {
    "x86_64": ("amd64", None),
    "amd64": ("amd64", None),
    "aarch64": ("arm64", "v8"),
    "arm64": ("arm64", "v8"),
    "armv7l": ("arm", "v7"),
    "ppc64le": ("ppc64le", None),
    "s390x": ("s390x", None),
    "riscv64": ("riscv64", None),
    "i686": ("386", None),
}


class DigestMismatch(ValueError):
    """A document or blob does not hash to the digest that names it."""


class UnsupportedPlatform(ValueError):
    """The image (or every entry of its index) is for another OS/architecture than this worker's."""


def sha256_of(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def verify_bytes(data: bytes, digest: str, what: str) -> None:
    """:raises DigestMismatch: naming ``what``, the expected and the actual digest."""
    actual = sha256_of(data)
    if actual != digest:
        raise DigestMismatch(f"{what} should have digest {digest} but hashes to {actual}")


@dataclass(frozen=True)
class Descriptor:
    """A reference to a blob: its media type, digest and size (and, in an index, its platform)."""

    media_type: str
    digest: str
    size: int
    platform: dict[str, Any] | None = None


def _descriptor(data: Any, where: str) -> Descriptor:
    try:
        digest, size = str(data["digest"]), int(data["size"])
    except (KeyError, TypeError, ValueError):
        raise ValueError(f"{where}: a descriptor without a digest and size") from None
    if not digest.startswith("sha256:") or len(digest) != 71:
        raise ValueError(f"{where}: {digest!r} is not a sha256 digest (only sha256 is supported)")
    return Descriptor(str(data.get("mediaType", "")), digest, size, data.get("platform"))


def parse_document(raw: bytes, what: str) -> dict[str, Any]:
    """A manifest, index or config as JSON (bounded in size)."""
    if len(raw) > MAX_DOCUMENT_BYTES:
        raise ValueError(f"{what} is larger than {MAX_DOCUMENT_BYTES} bytes")
    try:
        document = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise ValueError(f"{what} is not JSON: {exc}") from None
    if not isinstance(document, dict):
        raise ValueError(f"{what} is not a JSON object")
    return document


def is_index(document: dict[str, Any]) -> bool:
    """Whether a document is a multi-platform index (OCI) or manifest list (Docker)."""
    return document.get("mediaType") in _INDEX_TYPES or ("manifests" in document and "layers" not in document)


def host_platform() -> tuple[str, str, str | None]:
    """This worker's platform as an image names it: ``("linux", "amd64", None)``."""
    machine = platform.machine()
    architecture, variant = _ARCHITECTURES.get(machine, (machine, None))
    return "linux", architecture, variant


def _platform_name(os_name: Any, architecture: Any, variant: Any = None) -> str:
    return f"{os_name}/{architecture}" + (f"/{variant}" if variant else "")


def select_platform(index: dict[str, Any], where: str) -> Descriptor:
    """
    The entry of a multi-platform index for this worker's platform.

    :raises UnsupportedPlatform: listing the platforms the index has.
    """
    os_name, architecture, variant = host_platform()
    entries = [_descriptor(entry, where) for entry in index.get("manifests") or []]
    matching = [
        entry
        for entry in entries
        if (entry.platform or {}).get("os") == os_name
        and (entry.platform or {}).get("architecture") == architecture
    ]
    exact = [entry for entry in matching if (entry.platform or {}).get("variant") in (None, variant)]
    if exact or matching:
        return (exact or matching)[0]
    offered = sorted(
        {
            _platform_name((e.platform or {}).get("os"), (e.platform or {}).get("architecture"))
            for e in entries
        }
    )
    raise UnsupportedPlatform(
        f"{where} has no image for this worker's platform {_platform_name(os_name, architecture)} "
        f"(it has: {', '.join(offered) or 'none'})"
    )


def parse_manifest(document: dict[str, Any], where: str) -> tuple[Descriptor, list[Descriptor]]:
    """The config and the layers (bottom first) a manifest names."""
    if "config" not in document or not isinstance(document.get("layers"), list):
        raise ValueError(f"{where} is not an image manifest (no config and layers)")
    config = _descriptor(document["config"], f"{where} config")
    layers = [_descriptor(layer, f"{where} layer {n}") for n, layer in enumerate(document["layers"])]
    return config, layers


@dataclass(frozen=True)
class ImageConfig:
    """What of an image's config the sandbox applies (the ``User`` is not: the sandbox has its own)."""

    env: tuple[tuple[str, str], ...]
    workdir: str
    os: str
    architecture: str


def parse_config(raw: bytes, where: str) -> ImageConfig:
    """
    The image's Env, WorkingDir and platform.

    :raises UnsupportedPlatform: for another OS or architecture than this worker's.
    """
    document = parse_document(raw, where)
    config = document.get("config") or {}
    env = []
    for entry in config.get("Env") or []:
        key, equals, value = str(entry).partition("=")
        if equals and key:
            env.append((key, value))
    workdir = str(config.get("WorkingDir") or "/")
    if not workdir.startswith("/"):
        workdir = "/" + workdir
    image_os, architecture = str(document.get("os", "")), str(document.get("architecture", ""))
    os_name, mine, _ = host_platform()
    if (image_os, architecture) != (os_name, mine):
        raise UnsupportedPlatform(
            f"{where} is for {_platform_name(image_os or '?', architecture or '?')}, but this worker is "
            f"{_platform_name(os_name, mine)}"
        )
    return ImageConfig(tuple(env), workdir, image_os, architecture)


class VerifiedReader:
    """
    A blob read once, hashed as it goes: :meth:`finish` reads what is left and checks the digest
    and size (a layer is unpacked while it is read; a mismatch makes the whole image fail).
    """

    def __init__(self, stream: IO[bytes], descriptor: Descriptor, what: str) -> None:
        self._stream = stream
        self._descriptor = descriptor
        self._what = what
        self._hash = hashlib.sha256()
        self._size = 0

    def read(self, size: int = -1) -> bytes:
        data = self._stream.read(size)
        self._hash.update(data)
        self._size += len(data)
        return data

    def peek(self, size: int = 0) -> bytes:
        peek = getattr(self._stream, "peek", None)
        return peek(size) if peek is not None else b""

    def finish(self) -> None:
        while self.read(1 << 20):
            pass
        actual = "sha256:" + self._hash.hexdigest()
        if actual != self._descriptor.digest:
            raise DigestMismatch(
                f"{self._what} should have digest {self._descriptor.digest} but hashes to {actual}"
            )
        if self._size != self._descriptor.size:
            raise DigestMismatch(
                f"{self._what} is {self._size} bytes, its manifest says {self._descriptor.size}"
            )
