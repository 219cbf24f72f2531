"""
The image cache: each pinned image unpacked once per worker, the way flow environments are built.

Layout, under ``[byo] image_cache_path`` (default ``$AIRFLOW_HOME/byo/images``)::

    sha256-<hex>/                 one image, by the digest its runtime pins
        rootfs/                   its root file system (read-only to every sandbox)
        image.json                what the sandbox and the CLI need: Env, WorkingDir, Python, size
        install_complete_marker.json
        venvs/venv-<hash>/        flow virtualenvs built with the image's Python (:mod:`.venv`)
    sha256-<hex>.lock             the build lock (flock)
    sha256-<hex>.inuse            held shared by every sandbox on the image (prune skips those)

The discipline is the flow environments' (:func:`airflow_byo.venv_builder.ensure_built`): one
builder at a time per image, a folder without its marker -- an unpack killed midway -- is
removed and unpacked again, never used. Everything unpacked counts against
``[byo] image_cache_max_mb``.
"""

from __future__ import annotations

import errno
import fcntl
import json
import logging
import tarfile
import time
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO

from airflow_byo.faults import crash_point
from airflow_byo.images.errors import ByoImageError
from airflow_byo.images.fetch import fetch_image
from airflow_byo.images.layers import CacheFull, LayerRefused, RootWriter, SizeBudget
from airflow_byo.images.manifests import DigestMismatch, UnsupportedPlatform, VerifiedReader, parse_config
from airflow_byo.images.model import ImageRoot
from airflow_byo.images.python import ImagePython, find_python
from airflow_byo.venv_builder import MARKER, ensure_built, remove_tree

if TYPE_CHECKING:
    from collections.abc import Callable

    from airflow_byo.images.fetch import RegistryCredentials
    from airflow_byo.images.reference import ImageReference

__all__ = ["CachedImage", "cached_images", "ensure_image", "image_cache_path", "read_cached", "remove_image"]

log = logging.getLogger(__name__)

_FORMAT = 1  # of the cache's folders: a change makes every image unpack again


def image_cache_path() -> Path:
    """``[byo] image_cache_path``, else ``$AIRFLOW_HOME/byo/images`` (absolute)."""
    from airflow_byo.provider_config import byo_home, setting

    configured = setting("image_cache_path").strip()
    return (Path(configured).expanduser() if configured else byo_home("images")).absolute()


def _cap_bytes() -> int | None:
    from airflow_byo.provider_config import setting

    text = setting("image_cache_max_mb").strip() or "20480"
    try:
        megabytes = int(text)
    except ValueError:
        raise ByoImageError(
            f"[byo] image_cache_max_mb = {text!r} is not a whole number of megabytes. "
            "Fix: e.g. 20480, or 0 for no cap"
        ) from None
    return megabytes * 1024 * 1024 if megabytes > 0 else None


@dataclass(frozen=True)
class CachedImage:
    """A complete image in the cache (what ``image.json`` says)."""

    path: Path
    digest: str
    reference: str
    manifest_digest: str
    config_digest: str
    env: tuple[tuple[str, str], ...]
    workdir: str
    architecture: str
    python: ImagePython | None
    size: int
    unpacked_at: float

    @property
    def root(self) -> str:
        return str(self.path / "rootfs")

    @property
    def in_use(self) -> str:
        return f"{self.path}.inuse"

    def image_root(self, venv: str | None = None) -> ImageRoot:
        """The image as a sandbox shows it, with the flow's ``venv`` (if any)."""
        return ImageRoot(self.reference, self.digest, self.root, self.env, self.workdir, venv, self.in_use)

    def as_dict(self) -> dict[str, Any]:
        return {
            "digest": self.digest,
            "reference": self.reference,
            "manifest_digest": self.manifest_digest,
            "config_digest": self.config_digest,
            "env": [list(pair) for pair in self.env],
            "workdir": self.workdir,
            "architecture": self.architecture,
            "python": self.python.path if self.python else None,
            "python_version": list(self.python.version) if self.python and self.python.version else None,
            "size": self.size,
            "unpacked_at": self.unpacked_at,
        }


def _marker_text(digest: str) -> str:
    return json.dumps({"image": digest, "format": _FORMAT}, sort_keys=True)


def read_cached(path: Path) -> CachedImage | None:
    """The complete image in ``path`` (its marker written), or ``None``."""
    try:
        data = json.loads((path / "image.json").read_text(encoding="utf-8"))
        if (path / MARKER).read_text(encoding="utf8") != _marker_text(data["digest"]):
            return None
        python = data.get("python")
        version = data.get("python_version")
        return CachedImage(
            path=path,
            digest=data["digest"],
            reference=data["reference"],
            manifest_digest=data["manifest_digest"],
            config_digest=data["config_digest"],
            env=tuple((str(k), str(v)) for k, v in data["env"]),
            workdir=data["workdir"],
            architecture=data["architecture"],
            python=ImagePython(python, tuple(version) if version else None) if python else None,
            size=int(data["size"]),
            unpacked_at=float(data["unpacked_at"]),
        )
    except (OSError, ValueError, KeyError, TypeError):
        return None


def cached_images(cache: Path | None = None) -> list[CachedImage]:
    """Every complete image in the cache, largest first."""
    cache = cache or image_cache_path()
    try:
        folders = [p for p in cache.iterdir() if p.name.startswith("sha256-") and p.is_dir()]
    except OSError:
        return []
    images = [image for image in map(read_cached, folders) if image is not None]
    return sorted(images, key=lambda image: -image.size)


def ensure_image(
    reference: ImageReference,
    credentials: Callable[[], RegistryCredentials | None],
    *,
    cache: Path | None = None,
) -> CachedImage:
    """
    The image ``reference`` pins, unpacked in the cache -- fetched and unpacked now unless a
    complete copy is there (concurrent callers on this machine wait for one unpack).

    :param credentials: called only when the image must be fetched from its registry.
    :raises ByoImageError: the image cannot be fetched, verified or unpacked (the message says why).
    """
    cache = cache or image_cache_path()
    path = cache / reference.cache_key

    def unpack(folder: Path, lock_fd: int) -> None:
        _unpack(folder, reference, credentials, cache)

    try:
        ensure_built(path, _marker_text(reference.digest), unpack, what=f"image {reference.digest}")
    except OSError as exc:
        raise _os_error(exc, cache, reference) from None
    image = read_cached(path)
    if image is None:  # removed again at once (prune): the caller may simply retry
        raise ByoImageError(
            f"image {reference}: its cache folder {path} vanished while it was read; try again"
        )
    return image


def _os_error(exc: OSError, cache: Path, reference: ImageReference) -> ByoImageError:
    if isinstance(exc, CacheFull):
        return ByoImageError(
            f"image {reference}: the image cache is out of space: unpacked, the images would take more "
            f"than [byo] image_cache_max_mb = {exc.limit // (1024 * 1024)} MB ({cache}). Fix: remove "
            "images no runtime uses (airflow byo runtimes prune), or raise image_cache_max_mb"
        )
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return ByoImageError(
            f"image {reference}: the image cache is out of space: the disk of {cache} is full "
            f"({exc.strerror}). Fix: free space there (airflow byo runtimes prune), or move "
            "[byo] image_cache_path to a larger disk"
        )
    return ByoImageError(f"image {reference}: cannot write the image cache {cache}: {exc}")


def _unpack(
    folder: Path,
    reference: ImageReference,
    credentials: Callable[[], RegistryCredentials | None],
    cache: Path,
) -> None:
    started = time.monotonic()
    work = folder / ".fetch"
    work.mkdir()
    used = sum(image.size for image in cached_images(cache) if image.path != folder)
    budget = SizeBudget(_cap_bytes(), used)
    try:
        fetched = fetch_image(
            reference, str(work), credentials() if reference.transport == "docker" else None
        )
        config = parse_config(fetched.config_raw, f"image {reference}")
        root = folder / "rootfs"
        root.mkdir(mode=0o755)
        with RootWriter(str(root), budget) as writer:
            for number, layer in enumerate(fetched.layers, 1):
                label = f"{number}/{len(fetched.layers)} ({layer.digest[:19]})"
                with _blob(fetched.blob_path(layer.digest), reference) as raw:
                    reader = VerifiedReader(raw, layer, f"layer {label} of image {reference}")
                    writer.apply(reader, label)  # type: ignore[arg-type]
                    reader.finish()
                crash_point("image_layer_unpacked")
            writer.ensure_dir(config.workdir)
            python = find_python(writer.root_fd, config.env)
            report = writer.report
    except (DigestMismatch, UnsupportedPlatform, LayerRefused, tarfile.TarError, zlib.error, EOFError) as exc:
        raise _refusal(exc, reference) from None
    finally:
        remove_tree(work)
    image = CachedImage(
        folder, reference.digest, reference.text, fetched.manifest_digest, fetched.config_digest,
        config.env, config.workdir, config.architecture, python, budget.used - used, time.time(),
    )  # fmt: skip
    (folder / "image.json").write_text(json.dumps(image.as_dict(), indent=1), encoding="utf-8")
    log.info("Unpacked image %s in %.1f s: %s", reference, time.monotonic() - started, report.describe())


def _blob(path: str, reference: ImageReference) -> BinaryIO:
    try:
        return open(path, "rb", buffering=1 << 20)
    except FileNotFoundError:
        raise ByoImageError(
            f"image {reference}: the layer blob {path} is missing. Fix: copy the image again"
        ) from None


def _refusal(exc: Exception, reference: ImageReference) -> ByoImageError:
    if isinstance(exc, DigestMismatch):
        return ByoImageError(
            f"image {reference}: digest mismatch: {exc}. Fix: check where the image comes from, and pin "
            "the digest you mean to run"
        )
    if isinstance(exc, UnsupportedPlatform):
        return ByoImageError(
            f"image {reference}: unsupported architecture: {exc}. Fix: pin the image built for this "
            "worker's platform, or a multi-platform index that has it"
        )
    if isinstance(exc, LayerRefused):
        return ByoImageError(
            f"image {reference} is refused: {exc}. Fix: rebuild the image with ordinary tools "
            "(docker build, buildah, umoci); nothing of it was used"
        )
    return ByoImageError(
        f"image {reference}: a layer is not a readable tar stream ({exc}). Fix: pull it again"
    )


def remove_image(image: CachedImage) -> bool:
    """
    Remove an image (and the virtualenvs built on it) unless a sandbox uses it now.

    :return: ``False`` when it is in use (nothing removed).
    """
    with open(f"{image.path}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # no unpack or venv build of it runs meanwhile
        with open(image.in_use, "a") as in_use:
            try:
                fcntl.flock(in_use, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                return False
            (image.path / MARKER).unlink(missing_ok=True)  # incomplete first: never half-used
            remove_tree(image.path)
    return True
