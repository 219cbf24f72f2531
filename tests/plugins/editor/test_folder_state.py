"""
The spec folder's state, said up front: unset, no factory reads it (with the one-line DAG file to
add), read-only (a real read-only mount, which root cannot write either), in git; and no write
while it is not ``ok``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from airflow_byo.plugins.editor.settings import folder_state
from tests.plugins.editor.conftest import Editor, git_work_tree


def test_ok_with_the_factorys_marker(editor: Editor) -> None:
    state = folder_state()
    assert (state.state, state.in_git, state.dag_files) == ("ok", False, [str(editor.dag_file)])


def test_unset_means_a_read_only_page(editor: Editor, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AIRFLOW__BYO__SPEC_FOLDER", "")
    state = folder_state()
    assert state.state == "unset"
    assert "[byo] spec_folder is not set" in state.message
    answer = editor.request("POST", "/api/specs", json={"spec": editor.spec("orders")})
    assert answer.status_code == 409
    assert answer.json()["spec_folder"]["state"] == "unset"
    monkeypatch.setenv("AIRFLOW__BYO__SPEC_FOLDER", "relative/flows")
    assert "not an absolute path" in folder_state().message


def test_a_folder_no_factory_reads_says_how_to_add_one(
    editor: Editor, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    other = tmp_path / "dags" / "other_flows"
    other.mkdir()
    monkeypatch.setenv("AIRFLOW__BYO__SPEC_FOLDER", str(other))
    state = folder_state()
    assert state.state == "no_factory"
    assert 'globals().update(build_dags(Path(__file__).parent / "other_flows"))' in state.message
    answer = editor.request("POST", "/api/specs", json={"spec": editor.spec("orders")})
    assert answer.status_code == 409
    assert "no DAG file reads" in answer.json()["detail"]
    assert not list(other.iterdir())
    editor.dag_file.unlink()  # a marker whose DAG file is gone is no factory either
    monkeypatch.setenv("AIRFLOW__BYO__SPEC_FOLDER", str(editor.folder))
    assert folder_state().state == "no_factory"


def test_in_git(editor: Editor) -> None:
    git_work_tree(editor.root, editor.folder)
    assert folder_state().in_git is True


@pytest.mark.skipif(os.geteuid() != 0, reason="a read-only bind mount in a mount namespace needs root")
def test_a_read_only_mount_is_said_up_front_even_to_root(editor: Editor) -> None:
    """
    Root ignores file modes (a chmod 555 folder is writable to it), so the check is a real write:
    here in a private mount namespace (``unshare -m``) where the spec folder is a read-only bind
    mount, as a read-only volume or git-sync checkout would be.
    """
    script = textwrap.dedent(
        """
        import json
        from airflow_byo.plugins.editor.saving import FolderUnavailable, writable_store
        from airflow_byo.plugins.editor.settings import folder_state
        state = folder_state()
        try:
            writable_store()
            refused = False
        except FolderUnavailable:
            refused = True
        print(json.dumps([state.state, state.message, refused]))
        """
    )
    folder = str(editor.folder)
    mount = f"mount --bind {folder} {folder} && mount -o remount,ro,bind {folder}"
    done = subprocess.run(
        ["unshare", "-m", "sh", "-c", f'{mount} && exec "$0" -c "$1"', sys.executable, script],
        capture_output=True,
        text=True,
        timeout=120,
        env=os.environ.copy(),
        check=False,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    state, message, refused = json.loads(done.stdout.strip().splitlines()[-1])
    assert state == "read_only"
    assert refused is True
    assert "read-only file system" in message
    assert "commit it" in message
    assert not [p for p in editor.folder.iterdir() if p.name.startswith(".byo-write-check")]
