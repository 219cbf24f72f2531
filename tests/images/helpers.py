"""
What the image tests share besides fixtures (tests/images/fixtures.py): the test images' settings,
runtimes on them, and a flow run through a ByoFlowOperator on one.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.images.image_builder import python_prefix

IMAGE_ENV = {
    "PATH": "/opt/tools/bin:/usr/local/bin:/usr/bin:/bin",
    "BYO_IMAGE_VAR": "from-the-image",
    "LANG": "C.UTF-8",
}
WORKDIR = "/work/data"
#: The newest CPython on this machine other than the worker's 3.11, and the oldest the child takes.
NEW_MINOR = "3.12" if python_prefix("3.12") else "3.11"
OLD_MINOR = "3.9"


@dataclass(frozen=True)
class ImageSet:
    layout: Path
    digests: dict[str, str]

    def reference(self, tag: str) -> str:
        return f"oci:{self.layout}:{tag}@{self.digests[tag]}"


def runtimes_yaml(images: ImageSet) -> str:
    """Runtimes on the test images: base packages, bare, no Python, a wrong python:, CPython 3.9."""
    runtimes = {
        "tools": {"description": f"CPython {NEW_MINOR} and byo-rev", "image": images.reference("py312"),
                  "packages": ["six==1.16.0"]},
        "tools-bare": {"image": images.reference("py312")},
        "nopython": {"image": images.reference("nopython")},
        "elsewhere": {"image": images.reference("nopython"), "python": "/opt/python/bin/python3"},
    }  # fmt: skip
    if "py39" in images.digests:
        runtimes["tools39"] = {"image": images.reference("py39")}
    return json.dumps({"runtimes": runtimes}, indent=2)


def run_on_image(
    tmp_path: Path,
    code: str,
    runtime: str = "tools",
    *,
    packages: list[str] | None = None,
    files: dict[str, str] | None = None,
    job: dict[str, Any] | None = None,
    variables: dict[str, Any] | None = None,
) -> tuple[dict[str, Any], Path, Any]:
    """Run ``code`` through a ByoFlowOperator on ``runtime``: (XCom summary, out folder, task log)."""
    from tests.runner.test_sandboxed_flow import run_flow

    return run_flow(
        tmp_path, code, variables, job, files=files, task_id="on_image", runtime=runtime, packages=packages
    )


def outputs(out: Path) -> dict[str, str]:
    return {p.name: p.read_text() for p in sorted(out.rglob("*")) if p.is_file()} if out.exists() else {}


def worker_has(tool: str) -> bool:
    return any(
        os.access(os.path.join(folder, tool), os.X_OK) for folder in os.environ.get("PATH", "").split(":")
    )
