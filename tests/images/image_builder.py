"""
Small OCI images for the tests, built on this machine: no registry, no download (issue 25).

A root file system is assembled from files the machine has -- a CPython (a pyenv build other than
the worker's 3.11 when there is one, else Debian's), its standard library and the shared libraries
it and its extension modules load, ``dash`` as ``/bin/sh``, and a system tool the worker does not
have on its PATH (util-linux's ``rev`` as ``/opt/tools/bin/byo-rev``) -- and turned into an OCI
layout with Debian's ``umoci``. Hostile layers are written by hand (:func:`write_image`).
"""

from __future__ import annotations

import contextlib
import fcntl
import gzip
import hashlib
import io
import json
import os
import re
import shutil
import subprocess
import tarfile
from pathlib import Path
from typing import Any

#: Where this machine keeps CPythons other than the worker's.
_PYENV = Path("/root/.pyenv/versions")
_LIBS = "usr/lib/x86_64-linux-gnu"
#: Parts of the standard library no test needs (size only).
_SKIP = {
    "test", "idlelib", "tkinter", "turtledemo", "ensurepip", "lib2to3", "pydoc_data", "site-packages",
    "unittest", "__phello__", "distutils", "venv",
}  # fmt: skip
TOOL = "byo-rev"


def python_prefix(minor: str) -> Path | None:
    """A CPython ``3.<minor>`` on this machine (its prefix), or ``None``."""
    if _PYENV.is_dir():
        for prefix in sorted(_PYENV.glob(f"{minor}.*"), reverse=True):
            if (prefix / "bin" / f"python{minor}").is_file():
                return prefix
    if Path(f"/usr/bin/python{minor}").is_file() and Path(f"/usr/lib/python{minor}/os.py").is_file():
        return Path("/usr")
    return None


def _libraries(binaries: list[Path]) -> dict[str, str]:
    """soname -> file of every shared library the binaries load (as ldd resolves them here)."""
    found: dict[str, str] = {}
    for chunk in range(0, len(binaries), 200):
        out = subprocess.run(
            ["ldd", *map(str, binaries[chunk : chunk + 200])], capture_output=True, text=True
        ).stdout
        for name, path in re.findall(r"^\s+(\S+) => (/\S+)", out, re.M):
            found[name] = os.path.realpath(path)
    return found


def _copy(source: Path | str, target: Path, mode: int | None = None) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(source, target)
    os.chmod(target, mode if mode is not None else os.stat(source).st_mode & 0o777)


def _stdlib_filter(directory: str, names: list[str]) -> set[str]:
    skipped = {name for name in names if name in _SKIP or name.startswith("config-")}
    skipped |= {name for name in names if ".opt-" in name or name.endswith((".exe", ".a"))}
    return skipped


def assemble_rootfs(target: Path, minor: str, *, with_python: bool = True) -> None:
    """A small Linux root file system with CPython 3.<minor> in /usr/local (or none), sh and byo-rev."""
    binaries = [Path("/bin/dash"), Path("/usr/bin/rev")]
    for folder in ("usr/bin", "usr/lib64", _LIBS, "etc", "opt/tools/bin", "tmp"):
        (target / folder).mkdir(parents=True, exist_ok=True)
    for link, to in (("bin", "usr/bin"), ("lib", "usr/lib"), ("lib64", "usr/lib64")):
        (target / link).symlink_to(to)
    _copy("/bin/dash", target / "usr/bin/sh", 0o755)
    _copy("/usr/bin/rev", target / "opt/tools/bin" / TOOL, 0o755)
    _copy(os.path.realpath("/lib64/ld-linux-x86-64.so.2"), target / "usr/lib64/ld-linux-x86-64.so.2", 0o755)
    (target / "etc/passwd").write_text(
        "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/sh\n"
    )
    (target / "etc/group").write_text("root:x:0:\nnogroup:x:65534:\n")
    if with_python:
        prefix = python_prefix(minor)
        assert prefix is not None, f"no CPython 3.{minor} on this machine"
        binaries += _install_python(target, prefix, minor)
    for soname, path in _libraries(binaries).items():
        if not (target / _LIBS / soname).exists():
            _copy(path, target / _LIBS / soname, 0o755)


def _install_python(target: Path, prefix: Path, minor: str) -> list[Path]:
    """CPython into /usr/local; returns the binaries whose libraries the image needs."""
    local = target / "usr/local"
    _copy(prefix / "bin" / f"python{minor}", local / "bin" / f"python{minor}", 0o755)
    (local / "bin" / "python3").symlink_to(f"python{minor}")
    stdlib = prefix / "lib" / f"python{minor}"
    shutil.copytree(stdlib, local / "lib" / f"python{minor}", ignore=_stdlib_filter, symlinks=True)
    (local / "lib" / f"python{minor}" / "site-packages").mkdir()
    shared = prefix / "lib" / f"libpython{minor}.so.1.0"
    if shared.is_file():
        _copy(shared, target / _LIBS / shared.name, 0o755)
    dynload = sorted((local / "lib" / f"python{minor}" / "lib-dynload").glob("*.so"))
    return [local / "bin" / f"python{minor}", *dynload]


def umoci_image(layout: Path, tag: str, rootfs: Path, config: dict[str, Any]) -> str:
    """An image of one layer holding ``rootfs``, with ``config`` (env, workingdir, user); its digest."""
    if not layout.exists():
        subprocess.run(["umoci", "init", "--layout", str(layout)], check=True)
    image = f"{layout}:{tag}"
    subprocess.run(["umoci", "new", "--image", image], check=True)
    bundle = layout.parent / f".bundle-{tag}"
    subprocess.run(["umoci", "unpack", "--image", image, str(bundle)], check=True, capture_output=True)
    shutil.copytree(rootfs, bundle / "rootfs", symlinks=True, dirs_exist_ok=True)
    subprocess.run(["umoci", "repack", "--image", image, str(bundle)], check=True, capture_output=True)
    shutil.rmtree(bundle)
    options = [f"--config.env={key}={value}" for key, value in config.get("env", {}).items()]
    if "workdir" in config:
        options.append(f"--config.workingdir={config['workdir']}")
    if "user" in config:
        options.append(f"--config.user={config['user']}")
    options += ["--architecture", config.get("architecture", "amd64"), "--os", "linux"]
    subprocess.run(["umoci", "config", "--image", image, *options], check=True, capture_output=True)
    return tag_digest(layout, tag)


def tag_digest(layout: Path, tag: str) -> str:
    """The digest ``tag`` of an OCI layout points at."""
    index = json.loads((layout / "index.json").read_text())
    for entry in index["manifests"]:
        if (entry.get("annotations") or {}).get("org.opencontainers.image.ref.name") == tag:
            return str(entry["digest"])
    raise KeyError(tag)


# -- images written by hand (hostile layers, other platforms, tampering) ---------------------------
def _blob(layout: Path, data: bytes) -> dict[str, Any]:
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    path = layout / "blobs" / "sha256" / digest.removeprefix("sha256:")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return {"digest": digest, "size": len(data)}


def layer(members: list[tuple[tarfile.TarInfo, bytes | None]]) -> bytes:
    """A gzip-compressed tar layer of ``(member, data)`` pairs, exactly as given."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for info, data in members:
            if data is not None:
                info.size = len(data)
            tar.addfile(info, io.BytesIO(data) if data is not None else None)
    return gzip.compress(buffer.getvalue(), compresslevel=1)


def member(name: str, kind: bytes = tarfile.REGTYPE, *, mode: int = 0o644, link: str = "") -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type, info.mode, info.linkname, info.mtime = kind, mode, link, 1700000000
    return info


def write_image(
    layout: Path,
    tag: str,
    layers: list[bytes],
    config: dict[str, Any],
    *,
    base: tuple[Path, str] | None = None,
) -> str:
    """
    An image of ``base``'s layers (another layout's tag) plus ``layers``, with ``config`` (its
    ``config``/``architecture``/``os`` keys as in an OCI config); the manifest's digest.
    """
    descriptors: list[dict[str, Any]] = []
    if base is not None:
        base_layout, base_tag = base
        manifest = json.loads(
            (base_layout / "blobs/sha256" / tag_digest(base_layout, base_tag)[7:]).read_text()
        )
        for entry in manifest["layers"]:
            data = (base_layout / "blobs/sha256" / entry["digest"][7:]).read_bytes()
            descriptors.append({"mediaType": entry["mediaType"], **_blob(layout, data)})
    for data in layers:
        descriptors.append(
            {"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", **_blob(layout, data)}
        )
    document = {
        "architecture": "amd64",
        "os": "linux",
        "rootfs": {"type": "layers", "diff_ids": []},
        **config,
    }
    config_descriptor = _blob(layout, json.dumps(document).encode())
    manifest_bytes = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json", **config_descriptor},
            "layers": descriptors,
        }
    ).encode()
    manifest = _blob(layout, manifest_bytes)
    add_to_index(layout, tag, {"mediaType": "application/vnd.oci.image.manifest.v1+json", **manifest})
    return str(manifest["digest"])


def add_to_index(layout: Path, tag: str, descriptor: dict[str, Any]) -> None:
    """Tag ``descriptor`` in the layout's index.json (creating the layout)."""
    layout.mkdir(parents=True, exist_ok=True)
    (layout / "oci-layout").write_text('{"imageLayoutVersion": "1.0.0"}')
    index_path = layout / "index.json"
    index = (
        json.loads(index_path.read_text()) if index_path.exists() else {"schemaVersion": 2, "manifests": []}
    )
    annotation = "org.opencontainers.image.ref.name"
    index["manifests"] = [
        e for e in index["manifests"] if (e.get("annotations") or {}).get(annotation) != tag
    ]
    index["manifests"].append({**descriptor, "annotations": {annotation: tag}})
    index_path.write_text(json.dumps(index))


@contextlib.contextmanager
def locked(path: Path) -> Any:
    """An exclusive lock on ``path`` (test workers build a shared image once)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        yield
