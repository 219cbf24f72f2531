"""Which files of a spec folder are flow specs: hidden files and folders never are (issue 23)."""

from __future__ import annotations

from pathlib import Path

from airflow_byo.specs.loader import find_specs


def test_hidden_files_and_folders_are_not_specs(tmp_path: Path) -> None:
    folder = tmp_path / ".dags" / "flows"  # a hidden folder *above* the spec folder does not matter
    for name in (
        "a.yaml",
        "team/b.yml",
        "team/c.json",
        ".byo-history/a/v1.json",  # the flow editor's history
        ".byo-0a1b2c.tmp.yaml",  # a temporary of an atomic write
        ".hidden.yaml",
        "team/.draft.yaml",
        ".git/config.json",
        "notes.txt",
    ):
        path = folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("name: x\n")
    assert [p.relative_to(folder).as_posix() for p in find_specs(folder)] == [
        "a.yaml",
        "team/b.yml",
        "team/c.json",
    ]
