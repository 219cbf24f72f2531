"""Flow environments: real virtualenvs built by the standard provider's machinery, with uv."""

from __future__ import annotations

import importlib.util
import json
import os
import textwrap
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from airflow_byo.environment import ensure_environment
from airflow_byo.exceptions import ByoPackageError
from airflow_byo.flow_config import parse_runtime_config
from airflow_byo.packages import parse_packages
from airflow_byo.processor import resolve_processor
from airflow_byo.runner.flow_runner import FlowRunner
from airflow_byo.storage import Location
from tests.conftest import RecordingLogger

pytestmark = pytest.mark.venv

# Not a dependency of anything the worker has (humanize is: Celery's flower pulls it in).
PINNED = "pyfiglet==1.0.2"


def test_pinned_package_is_imported_in_the_child_and_absent_from_the_worker(
    venv_cache: Path, tmp_path: Path
) -> None:
    assert importlib.util.find_spec("pyfiglet") is None, "the worker must not have the flow's package"
    python = ensure_environment(parse_packages(PINNED), venv_cache)
    code = textwrap.dedent(
        """
        import importlib.metadata, importlib.util, sys
        import pyfiglet
        def process(file, ctx):
            return {
                "pyfiglet": importlib.metadata.version("pyfiglet"),
                "airflow_importable": importlib.util.find_spec("airflow") is not None,
                "executable": sys.executable,
            }
        """
    )
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "a.txt").write_text("x")
    source = Location(str(tmp_path / "in"))
    summary = FlowRunner(
        processor=resolve_processor(code),
        config=parse_runtime_config(None),
        python=str(python),
        log=RecordingLogger(),
    ).run(source, Location(str(tmp_path / "out")), source.list_files())
    assert summary.failed == []
    record = json.loads((tmp_path / "out" / "a.jsonl").read_text())
    assert record == {"pyfiglet": "1.0.2", "airflow_importable": False, "executable": str(python)}


def test_same_packages_share_one_environment_whatever_their_order(venv_cache: Path) -> None:
    first = ensure_environment(parse_packages(f"{PINNED},unidecode==1.3.8"), venv_cache)
    second = ensure_environment(parse_packages(["unidecode==1.3.8", PINNED]), venv_cache)
    assert first == second
    assert first.exists()


def test_concurrent_builds_of_one_environment_are_safe(tmp_path: Path) -> None:
    cache = tmp_path / "venvs"
    requirements = parse_packages("unidecode==1.3.8")
    with ThreadPoolExecutor(max_workers=3) as pool:
        pythons = list(pool.map(lambda _: ensure_environment(requirements, cache), range(3)))
    assert len(set(pythons)) == 1
    assert [p.name for p in cache.iterdir() if p.is_dir()] == [pythons[0].parent.parent.name]
    assert os.access(pythons[0], os.X_OK)


def test_unknown_package_names_the_requirement(tmp_path: Path) -> None:
    missing = "airflow-byo-no-such-package-xyz==1.0.0"
    with pytest.raises(
        ByoPackageError, match=r"could not build the environment for packages \['airflow-byo-no-such"
    ):
        ensure_environment([missing], tmp_path / "venvs")
