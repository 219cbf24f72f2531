"""The spec's ``source.follow_symlinks`` (issue 13): off by default, strict, carried to every task."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest
import yaml

from airflow_byo.exceptions import ByoFlowSpecError
from airflow_byo.specs.factory import build_dags
from airflow_byo.specs.loader import load_spec

SPEC = """\
name: linked
source:
  type: local
  path: {source}
  {extra}
sensor: {{}}
processing:
  code: |
    def process(file, ctx):
        return "x"
destination:
  type: local
  path: {destination}
"""


def write_spec(tmp_path: Path, extra: str) -> Path:
    folder = tmp_path / "flows"
    folder.mkdir(exist_ok=True)
    path = folder / "linked.yaml"
    path.write_text(
        textwrap.dedent(SPEC.format(source=tmp_path / "in", destination=tmp_path / "out", extra=extra))
    )
    return path


def test_follow_symlinks_is_off_by_default_and_reaches_the_sensor_and_the_flow(tmp_path: Path) -> None:
    assert load_spec(write_spec(tmp_path, "")).source.follow_symlinks is False
    write_spec(tmp_path, "follow_symlinks: true")
    [dag] = build_dags(tmp_path / "flows").values()
    for task in dag.tasks:
        assert task.follow_symlinks is True, task.task_id
        assert task.file_filter().follow_symlinks is True


def test_follow_symlinks_must_be_a_boolean(tmp_path: Path) -> None:
    path = write_spec(tmp_path, "follow_symlinks: 'yes'")
    assert yaml.safe_load(path.read_text())["source"]["follow_symlinks"] == "yes"
    with pytest.raises(ByoFlowSpecError, match="follow_symlinks"):
        load_spec(path)
