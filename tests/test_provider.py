"""The provider registers with Airflow and its metadata passes Airflow's own schema."""

from __future__ import annotations

import importlib.metadata
import json
import os
import subprocess
import sys
from pathlib import Path

import airflow
import jsonschema

from airflow_byo.get_provider_info import get_provider_info


def test_provider_info_validates_against_airflows_schema() -> None:
    schema = json.loads((Path(airflow.__file__).parent / "provider_info.schema.json").read_text())
    info = get_provider_info()
    jsonschema.validate(info, schema)
    assert info["package-name"] == "airflow-byo"


def test_entry_point_points_at_get_provider_info() -> None:
    [entry_point] = [
        ep
        for ep in importlib.metadata.entry_points(group="apache_airflow_provider")
        if ep.value.startswith("airflow_byo")
    ]
    assert entry_point.load() is get_provider_info
    assert entry_point.dist is not None
    assert entry_point.dist.name == "airflow-byo"


def test_every_module_named_in_provider_info_imports() -> None:
    for group in get_provider_info()["operators"]:
        for module in group["python-modules"]:
            __import__(module)


def test_airflow_providers_list_shows_the_provider(airflow_home: Path) -> None:
    result = subprocess.run(
        [Path(sys.executable).parent / "airflow", "providers", "list", "--output", "json"],
        capture_output=True,
        text=True,
        check=True,
        env=os.environ.copy(),
    )
    providers = {p["package_name"]: p for p in json.loads(result.stdout)}
    assert providers["airflow-byo"]["version"] == get_provider_info()["versions"][0]
