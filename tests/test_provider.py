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
    for role in ("operators", "sensors", "triggers"):
        for group in get_provider_info()[role]:
            for module in group["python-modules"]:
                __import__(module)


def test_every_trigger_serializes_to_a_classpath_of_a_listed_module() -> None:
    """Airflow stores these classpaths in its trigger table and imports them in the triggerer."""
    from airflow._shared.module_loading import import_string

    from airflow_byo.triggers.new_files import ByoNewFilesEventTrigger, ByoNewFilesTrigger

    modules = {m for group in get_provider_info()["triggers"] for m in group["python-modules"]}
    new_files = {"source": "/data/in", "flow_id": "dag.flow"}
    for trigger in (ByoNewFilesTrigger(new_files), ByoNewFilesEventTrigger(new_files)):
        classpath, kwargs = trigger.serialize()
        assert classpath.rpartition(".")[0] in modules
        assert import_string(classpath) is type(trigger)
        assert import_string(classpath)(**kwargs).serialize() == (classpath, kwargs)


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
