"""The factory's marker in the spec folder: which DAG files read it (issue 23)."""

from __future__ import annotations

import errno
import json
import os
from pathlib import Path

import pytest

from airflow_byo.specs import factory_marker
from airflow_byo.specs.factory import build_dags
from airflow_byo.specs.loader import find_specs
from tests.specs.test_hostile_specs import VALID


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    flows = tmp_path / "dags" / "flows"
    flows.mkdir(parents=True)
    (flows / "a.yaml").write_text(VALID.replace("name: good", "name: a"))
    return flows


def marker(folder: Path) -> dict[str, object]:
    return dict(json.loads((folder / factory_marker.MARKER).read_text()))


def test_each_parse_records_the_dag_file_and_rewrites_only_a_change(folder: Path) -> None:
    dag_file = folder.parent / "byo_flows.py"
    dag_file.write_text("# calls build_dags\n")
    assert list(build_dags(folder, dag_file=dag_file)) == ["byo_flow__a"]
    assert marker(folder) == {
        "dag_file": str(dag_file),
        "factories": [{"dag_file": str(dag_file), "folder": str(folder)}],
        "folder": str(folder),
    }
    path = folder / factory_marker.MARKER
    before = (path.stat().st_ino, path.stat().st_mtime_ns)
    build_dags(folder, dag_file=dag_file)
    assert (path.stat().st_ino, path.stat().st_mtime_ns) == before  # same content: not rewritten
    assert find_specs(folder) == [folder / "a.yaml"]  # a hidden .json: never a spec
    assert sorted(p.name for p in folder.iterdir()) == [factory_marker.MARKER, "a.yaml"]  # no temporaries


def test_several_factories_share_the_marker_and_a_gone_one_is_dropped(folder: Path) -> None:
    first, second = folder.parent / "b_flows.py", folder.parent / "a_flows.py"
    for dag_file in (first, second):
        dag_file.write_text("# calls build_dags\n")
        build_dags(folder, dag_file=dag_file)
    assert factory_marker.read(folder) == [
        {"dag_file": str(second), "folder": str(folder)},
        {"dag_file": str(first), "folder": str(folder)},
    ]
    assert marker(folder)["dag_file"] == str(second)  # the first in order, for readers that want one
    second.unlink()
    build_dags(folder, dag_file=first)
    assert factory_marker.read(folder) == [{"dag_file": str(first), "folder": str(folder)}]


@pytest.mark.parametrize(
    "content",
    [
        b"not json",
        b"[1, 2]",
        b'{"dag_file": "relative/path.py"}',
        b'{"factories": [3, {"dag_file": 4}]}',
        b" " * 70_000,
    ],
)
def test_a_broken_marker_names_no_factory_and_the_next_parse_replaces_it(
    folder: Path, content: bytes
) -> None:
    (folder / factory_marker.MARKER).write_bytes(content)
    assert factory_marker.read(folder) == []
    dag_file = folder.parent / "byo_flows.py"
    dag_file.write_text("# calls build_dags\n")
    build_dags(folder, dag_file=dag_file)
    assert factory_marker.read(folder) == [{"dag_file": str(dag_file), "folder": str(folder)}]


def test_a_marker_that_is_a_link_is_not_read_and_its_target_is_never_written(folder: Path) -> None:
    target = folder.parent / "elsewhere.json"
    target.write_text(json.dumps({"dag_file": "/etc/passwd"}))
    (folder / factory_marker.MARKER).symlink_to(target)
    assert factory_marker.read(folder) == []
    build_dags(folder, dag_file=folder.parent / "byo_flows.py")
    assert json.loads(target.read_text()) == {"dag_file": "/etc/passwd"}
    assert not (folder / factory_marker.MARKER).is_symlink()


def test_a_read_only_folder_keeps_no_marker_and_the_flows_still_load(
    folder: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    def read_only(*args: object, **kwargs: object) -> None:
        raise OSError(errno.EROFS, "Read-only file system")

    monkeypatch.setattr(os, "replace", read_only)
    caplog.set_level("INFO", logger="airflow_byo.specs.factory_marker")
    assert list(build_dags(folder, dag_file=folder.parent / "byo_flows.py")) == ["byo_flow__a"]
    assert not (folder / factory_marker.MARKER).exists()
    assert (
        f"cannot write the flows factory's marker {folder}/{factory_marker.MARKER} (Read-only file system): "
        "the flow editor cannot save flows here" in caplog.text
    )
    assert sorted(p.name for p in folder.iterdir()) == ["a.yaml"]  # its temporary is gone too
