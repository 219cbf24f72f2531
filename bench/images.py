"""
B10 -- image runtimes (issue 25), on an image built here from this machine's files (CPython 3.12,
~90 MB unpacked, one gzip layer; ``tests/images/image_builder.py``), kept in ``bench/.work/images``.

* B10a -- a child started and its function loaded, sandboxed, on the image runtime (the image's
  root file system at ``/``, its Python) against the same on a venv runtime (the worker's Python
  in a virtualenv): ``FlowRunner.children`` entered and left, warm (the image unpacked before).
  Target: at most 100 ms more.
* B10b -- an image's first use: ``ensure_image`` into an empty cache (read, verify every digest,
  unpack safely by descriptor), from an OCI layout directory and from a registry on 127.0.0.1
  (``tests/images/registry.py``; skopeo inspect + copy, then the unpack), against ``skopeo copy``
  of the same image to a ``dir:`` folder and GNU ``tar -xzf`` of its layers. Target: <= 1.3x.

("B9" is the pasta network figure of ``bench/network.py``.)
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from bench.timing import medians

if TYPE_CHECKING:
    from bench.timing import Row

__all__ = ["run"]

CODE = "def process(file, ctx):\n    return file.open().read()\n"
TAG = "py312"


def _image(work: Path) -> tuple[Path, str]:
    """The benchmark's OCI layout and the image's digest (built once, kept between runs)."""
    from tests.images.image_builder import assemble_rootfs, python_prefix, tag_digest, umoci_image

    layout = work / "images" / "layout"
    if (layout / "index.json").exists():
        return layout, tag_digest(layout, TAG)
    shutil.rmtree(work / "images", ignore_errors=True)
    rootfs = work / "images" / "rootfs"
    assemble_rootfs(rootfs, "3.12" if python_prefix("3.12") else "3.11")
    digest = umoci_image(layout, TAG, rootfs, {"env": {"PATH": "/usr/local/bin:/usr/bin:/bin"}})
    shutil.rmtree(rootfs)
    return layout, digest


def _missing() -> str | None:
    from airflow_byo.runner import sandbox_mode

    if not sandbox_mode.bubblewrap_status()[0]:
        return f"bubblewrap cannot work here: {sandbox_mode.bubblewrap_status()[1]}"
    missing = [tool for tool in ("skopeo", "umoci", "tar") if shutil.which(tool) is None]
    return f"missing {', '.join(missing)}" if missing else None


def run(work: Path, *, repeat: int) -> list[Row]:
    if why := _missing():
        return [("B10a image runtime: cannot run here", 0.0, None, why)] + [
            (f"B10b first use (from {kind}): cannot run here", 0.0, None, why)
            for kind in ("an OCI layout", "a registry")
        ]
    layout, digest = _image(work)
    return [_child_start(work, layout, digest, repeat), *_first_use(work, layout, digest, repeat)]


def _child_start(work: Path, layout: Path, digest: str, repeat: int) -> Row:
    from airflow_byo.flow import FlowEnvironment, ResolvedFlow
    from airflow_byo.runner.flow_runner import FlowRunner
    from airflow_byo.runner.output_handoff import OutputStaging

    runtimes = work / "images" / "runtimes.json"
    runtimes.write_text(json.dumps({"runtimes": {"image": {"image": f"oci:{layout}:{TAG}@{digest}"}}}))
    os.environ["AIRFLOW__BYO__RUNTIMES"] = str(runtimes)
    os.environ["AIRFLOW__BYO__IMAGE_CACHE_PATH"] = str(work / "images" / "cache")
    log = logging.getLogger("bench.b10")
    on_image = ResolvedFlow.resolve(CODE, runtime="image")
    image = FlowRunner(flow=on_image, environment=on_image.environment(log), log=log, sandbox="bubblewrap")
    on_venv = ResolvedFlow.resolve(CODE)
    venv = FlowRunner(
        flow=on_venv, environment=FlowEnvironment(sys.executable), log=log, sandbox="bubblewrap"
    )

    def start(runner: FlowRunner) -> object:
        def child(scratch: Path) -> None:
            inputs = scratch / "inputs"
            inputs.mkdir()
            with runner.children(inputs=str(inputs), staging=OutputStaging(str(scratch))):
                pass  # a child started and its function loaded, then stopped

        return child

    starts = medians(max(repeat, 5) * 2, work, image=start(image), venv=start(venv))  # type: ignore[arg-type]
    return (
        "B10a child start + function load, image runtime vs venv runtime, warm (ms)",
        starts["image"] * 1e3,
        starts["venv"] * 1e3,
        "<= venv + 100 ms",
    )


def _first_use(work: Path, layout: Path, digest: str, repeat: int) -> list[Row]:
    from airflow_byo.images.cache import ensure_image
    from airflow_byo.images.reference import parse_reference
    from tests.images.registry import Registry

    registry = Registry(layout)
    conf = registry.registries_conf(work / "images")
    os.environ["CONTAINERS_REGISTRIES_CONF"] = str(conf)
    sources = {
        "an OCI layout": (f"oci:{layout}:{TAG}@{digest}", f"oci:{layout}:{TAG}"),
        "a registry": (registry.reference(digest), f"docker://{registry.reference(digest)}"),
    }
    rows: list[Row] = []
    try:
        for kind, (reference, skopeo_name) in sources.items():

            def ours(scratch: Path, reference: str = reference) -> None:
                ensure_image(parse_reference(reference), lambda: None, cache=scratch)

            def plain(scratch: Path, skopeo_name: str = skopeo_name) -> None:
                _skopeo_and_tar(skopeo_name, scratch, conf)

            times = medians(repeat, work, ensure_image=ours, skopeo_tar=plain)
            rows.append(
                (
                    f"B10b first use of a ~90 MB image from {kind}: unpack vs skopeo copy + tar (s)",
                    times["ensure_image"],
                    times["skopeo_tar"],
                    "<= 1.3x",
                )
            )
    finally:
        registry.stop()
    return rows


def _skopeo_and_tar(name: str, scratch: Path, conf: Path) -> None:
    """The plain way: skopeo copy to a dir: folder, then GNU tar over each layer."""
    copied, root = scratch / "copy", scratch / "root"
    subprocess.run(
        ["skopeo", "--registries-conf", str(conf), "copy", "--quiet", name, f"dir:{copied}"],
        check=True,
        capture_output=True,
    )
    root.mkdir()
    manifest = json.loads((copied / "manifest.json").read_text())
    for layer in manifest["layers"]:
        blob = copied / layer["digest"].removeprefix("sha256:")
        subprocess.run(["tar", "--no-same-owner", "-xzf", str(blob), "-C", str(root)], check=True)
