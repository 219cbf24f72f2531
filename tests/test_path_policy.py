"""
The path policy (issue 21, attack 3): no flow's local path may lie inside or contain a platform
folder, at every entry point -- operator, ``@task.byo``, flow spec (``airflow byo validate``),
``airflow byo test`` / ``byo test`` and the runtimes file.

Each test builds a platform of its own under ``tmp_path`` (AIRFLOW_HOME, DAGs and plugins
folders, venv cache, function library, a SQLite ledger, a runtimes file, an extra protected
folder), each in a parent folder of its own so that "contains" names exactly one of them.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import textwrap
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest

from airflow_byo import path_policy
from airflow_byo.exceptions import ByoConfigError, ByoFlowSpecError
from airflow_byo.operators.byo_flow import ByoFlowOperator
from tests.conftest import UPPER, context

#: kind -> (label in messages, the setting that names it)
KINDS: dict[str, tuple[str, str]] = {
    "home": ("AIRFLOW_HOME", ""),
    "dags": ("the DAGs folder", "[core] dags_folder"),
    "plugins": ("the plugins folder", "[core] plugins_folder"),
    "venvs": ("the venv cache", "[byo] venv_cache_path"),
    "library": ("the function library", "[byo] function_library"),
    "ledger": ("the ledger's file", "connection 'byo_pp_ledger'"),
    "runtimes": ("the runtimes file", "[byo] runtimes"),
    "extra": ("the protected folder", "[byo] protected_paths"),
}
FILES = ("ledger", "runtimes")  # protected files rather than folders
WHY = "a flow may not read or write the platform's own folders"


class Platform:
    """A platform's folders under one temporary directory, set as Airflow settings."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.safe = root / "data"  # where flows may read and write
        (self.safe / "in").mkdir(parents=True)
        self.paths: dict[str, Path] = {}
        for kind in KINDS:
            parent = root / f"p_{kind}"
            path = parent / {"ledger": "ledger.db", "runtimes": "runtimes.yaml"}.get(kind, kind)
            if kind in FILES:
                parent.mkdir(parents=True)
                path.write_text("runtimes: {}\n" if kind == "runtimes" else "")
            else:
                path.mkdir(parents=True)
            self.paths[kind] = path
        self.env = {
            "AIRFLOW_HOME": str(self.paths["home"]),
            "AIRFLOW__CORE__DAGS_FOLDER": str(self.paths["dags"]),
            "AIRFLOW__CORE__PLUGINS_FOLDER": str(self.paths["plugins"]),
            "AIRFLOW__BYO__VENV_CACHE_PATH": str(self.paths["venvs"]),
            "AIRFLOW__BYO__FUNCTION_LIBRARY": str(self.paths["library"]),
            "AIRFLOW__BYO__RUNTIMES": str(self.paths["runtimes"]),
            "AIRFLOW__BYO__LEDGER_CONN_ID": "byo_pp_ledger",
            "AIRFLOW_CONN_BYO_PP_LEDGER": json.dumps(
                {"conn_type": "sqlite", "host": str(self.paths["ledger"])}
            ),
            "AIRFLOW__BYO__PROTECTED_PATHS": str(self.paths["extra"]),
            "AIRFLOW__BYO__ALLOWED_LOCAL_ROOTS": "",
        }

    def inside(self, kind: str) -> Path:
        """A path inside the protected ``kind`` (the file itself for a protected file)."""
        return self.paths[kind] if kind in FILES else self.paths[kind] / "out"

    def container(self, kind: str) -> Path:
        """A folder that contains the protected ``kind`` and no other."""
        return self.paths[kind].parent

    def describe(self, kind: str) -> str:
        label, setting = KINDS[kind]
        return f"{label} {self.paths[kind]}" + (f" ({setting})" if setting else "")

    def refusal(self, key: str, path: Path | str, kind: str, relation: str) -> str:
        """The start of the message refusing ``key`` = ``path`` for ``kind``."""
        return f"{key} {str(path)!r} {relation} {self.describe(kind)}: {WHY}"

    def case(self, key: str, kind: str, relation: str) -> tuple[Path, str]:
        """A path ``relation`` (inside/contains) the protected ``kind``, and the whole refusal of it."""
        path = self.inside(kind) if relation == "inside" else self.container(kind)
        words = "contains" if relation == "contains" else ("is" if kind in FILES else "lies inside")
        fix = "a directory that does not contain it" if relation == "contains" else "a directory outside it"
        return path, f"{self.refusal(key, path, kind, words)}. Fix: choose {fix}"


@pytest.fixture
def platform(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Platform:
    platform = Platform(tmp_path)
    for name, value in platform.env.items():
        monkeypatch.setenv(name, value)
    return platform


def flow(**kwargs: Any) -> ByoFlowOperator:
    arguments: dict[str, Any] = {
        "task_id": "flow",
        "processor": UPPER,
        "python_interpreter": sys.executable,
        "track_files": False,
    }
    return ByoFlowOperator(**(arguments | kwargs))


def relation_cases() -> list[Any]:
    return [
        pytest.param(kind, relation, id=f"{kind}-{relation}")
        for kind in KINDS
        for relation in ("inside", "contains")
    ]


# -- the operator -----------------------------------------------------------------------------------


@pytest.mark.parametrize("key", ["source", "destination", "quarantine"])
@pytest.mark.parametrize(("kind", "relation"), relation_cases())
def test_operator_refuses_a_path_inside_or_containing_each_protected_folder(
    platform: Platform, key: str, kind: str, relation: str
) -> None:
    path, message = platform.case(key, kind, relation)
    paths = {"source": str(platform.safe / "in"), "destination": str(platform.safe / "out"), key: str(path)}
    with pytest.raises(ByoConfigError) as refused:
        flow(**paths)
    assert str(refused.value) == message


def test_operator_accepts_paths_outside_the_protected_folders(platform: Platform) -> None:
    operator = flow(
        source=str(platform.safe / "in"),
        destination=str(platform.safe / "out" / "not-there-yet"),
        quarantine=str(platform.safe / "quarantine"),
    )
    assert operator.destination.endswith("not-there-yet")


@pytest.mark.parametrize(
    ("path", "folder"),
    [
        ("/etc/byo-out", "/etc"),
        ("/sys/kernel", "/sys"),
        ("/dev/null", "/dev"),
        ("/boot/x", "/boot"),
        ("/proc/1", "/proc"),
    ],
)
def test_system_folders_are_protected(platform: Platform, path: str, folder: str) -> None:
    with pytest.raises(ByoConfigError) as refused:
        flow(source=path, destination=str(platform.safe / "out"))
    assert str(refused.value).startswith(f"source {path!r} lies inside the system folder {folder}: {WHY}")


def test_proc_self_is_refused_by_its_real_path(platform: Platform) -> None:
    with pytest.raises(ByoConfigError) as refused:
        flow(source="/proc/self", destination=str(platform.safe / "out"))
    assert str(refused.value).startswith(
        f"source '/proc/self' (real path /proc/{os.getpid()}) lies inside the system folder /proc: {WHY}"
    )


def test_the_root_folder_contains_everything(platform: Platform) -> None:
    with pytest.raises(ByoConfigError) as refused:
        flow(source=str(platform.safe / "in"), destination="/")
    assert str(refused.value).startswith(f"destination '/' contains {platform.describe('home')}: {WHY}")


def test_the_deepest_protected_folder_is_named(platform: Platform, monkeypatch: pytest.MonkeyPatch) -> None:
    cache = platform.paths["home"] / "byo" / "venvs"
    monkeypatch.setenv("AIRFLOW__BYO__VENV_CACHE_PATH", str(cache))
    with pytest.raises(ByoConfigError) as refused:
        flow(source=str(platform.safe / "in"), destination=str(cache / "venv-1" / "lib"))
    assert f"lies inside the venv cache {cache} ([byo] venv_cache_path)" in str(refused.value)


def test_a_symlink_into_a_protected_folder_is_refused(platform: Platform) -> None:
    link = platform.safe / "innocent"
    link.symlink_to(platform.paths["dags"])
    with pytest.raises(ByoConfigError) as refused:
        flow(source=str(platform.safe / "in"), destination=str(link / "out"))
    assert str(refused.value).startswith(
        f"destination '{link}/out' (real path {platform.paths['dags']}/out) lies inside "
        f"{platform.describe('dags')}: {WHY}"
    )


def test_a_protected_folder_reached_through_a_symlink_is_compared_by_its_real_path(
    platform: Platform, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_home = platform.root / "real-home"
    real_home.mkdir()
    (platform.root / "home-link").symlink_to(real_home)
    monkeypatch.setenv("AIRFLOW_HOME", str(platform.root / "home-link"))
    with pytest.raises(ByoConfigError, match=re.escape(f"lies inside AIRFLOW_HOME {real_home}: ")):
        flow(source=str(real_home / "logs"), destination=str(platform.safe / "out"))


def test_a_path_that_does_not_exist_yet_is_judged_by_its_nearest_existing_parent(platform: Platform) -> None:
    link = platform.safe / "to-plugins"
    link.symlink_to(platform.paths["plugins"])
    for missing in (platform.paths["plugins"] / "a" / "b", link / "new" / "deeper"):
        with pytest.raises(ByoConfigError, match=re.escape(f"lies inside {platform.describe('plugins')}")):
            flow(source=str(platform.safe / "in"), destination=str(missing))


def test_siblings_with_a_common_prefix_are_not_inside(platform: Platform) -> None:
    for kind in ("home", "dags", "plugins", "venvs", "library", "extra"):
        sibling = Path(f"{platform.paths[kind]}2")
        flow(source=str(platform.safe / "in"), destination=str(sibling / "out"))
    flow(source="/etcetera", destination="/procedures/out")
    flow(source=str(platform.safe / "in"), destination=f"{platform.paths['ledger']}.bak")


def test_remote_urls_are_not_checked_and_file_urls_are(platform: Platform) -> None:
    flow(source="s3://bucket/etc", destination=f"sftp://{platform.paths['dags']}", destination_conn_id="x")
    flow(source="s3://bucket/in", destination="s3:///proc/out")
    with pytest.raises(
        ByoConfigError, match=re.escape(f"source 'file://{platform.paths['home']}' ")
    ) as refused:
        flow(source=f"file://{platform.paths['home']}", destination=str(platform.safe / "out"))
    assert f"is {platform.describe('home')}" in str(refused.value)


def test_relative_and_home_relative_paths_are_made_absolute_first(
    platform: Platform, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(platform.paths["dags"])
    with pytest.raises(ByoConfigError, match=re.escape("source '.' ")) as refused:
        flow(source=".", destination=str(platform.safe / "out"))
    assert f"(real path {platform.paths['dags']}) is {platform.describe('dags')}" in str(refused.value)
    monkeypatch.setenv("HOME", str(platform.paths["home"].parent))
    with pytest.raises(
        ByoConfigError, match=re.escape(f"destination '~/home/out' (real path {platform.paths['home']}/out)")
    ):
        flow(source=str(platform.safe / "in"), destination="~/home/out")


def test_templated_paths_are_checked_once_rendered(platform: Platform) -> None:
    operator = flow(source=str(platform.safe / "in"), destination="{{ params.out }}", emit_asset_event=False)
    outside = context(out=str(platform.safe / "out"))
    operator.render_template_fields(outside)
    assert operator.destination == str(platform.safe / "out")

    operator = flow(source="{{ params.src }}", destination=str(platform.safe / "out"))
    ctx = context(src=str(platform.paths["home"]))
    operator.render_template_fields(ctx)
    with pytest.raises(ByoConfigError) as refused:
        operator.execute(ctx)  # type: ignore[arg-type]
    assert str(refused.value).startswith(platform.refusal("source", platform.paths["home"], "home", "is"))

    operator = flow(
        source=str(platform.safe / "in"), destination=str(platform.safe / "out"), quarantine="{{ params.q }}"
    )
    ctx = context(q=str(platform.container("library")))
    operator.render_template_fields(ctx)
    with pytest.raises(ByoConfigError) as refused:
        operator.execute(ctx)  # type: ignore[arg-type]
    assert str(refused.value).startswith(
        platform.refusal("quarantine", platform.container("library"), "library", "contains")
    )


def test_a_test_file_param_in_a_protected_folder_is_refused(platform: Platform) -> None:
    secret = platform.paths["home"] / "airflow.cfg"
    secret.write_text("[core]\nfernet_key = TOPSECRET\n")
    operator = flow(source=str(platform.safe / "in"), destination=str(platform.safe / "out"))
    with pytest.raises(ByoConfigError) as refused:
        operator.execute(context(test_file=str(secret)))  # type: ignore[arg-type]
    assert str(refused.value).startswith(platform.refusal("params.test_file", secret, "home", "lies inside"))


def test_the_flows_own_venv_cache_and_ledger_are_protected(
    platform: Platform, monkeypatch: pytest.MonkeyPatch
) -> None:
    own_cache = platform.root / "own-venvs"
    with pytest.raises(ByoConfigError) as refused:
        ByoFlowOperator(
            task_id="flow",
            processor=UPPER,
            source=str(platform.safe / "in"),
            destination=str(own_cache / "venv-x"),
            venv_cache_path=str(own_cache),
        )
    assert str(refused.value).startswith(
        f"destination '{own_cache}/venv-x' lies inside the flow's venv cache {own_cache} "
        f"(venv_cache_path): {WHY}"
    )
    own_ledger = platform.root / "own-ledger" / "flows.db"
    monkeypatch.setenv("AIRFLOW_CONN_OWN_LEDGER", f"sqlite://{quote(str(own_ledger), safe='')}")
    with pytest.raises(ByoConfigError) as refused:
        flow(
            source=str(platform.safe / "in"), destination=str(own_ledger.parent), ledger_conn_id="own_ledger"
        )
    assert str(refused.value).startswith(
        f"destination '{own_ledger.parent}' contains the ledger's file {own_ledger} "
        f"(connection 'own_ledger'): {WHY}"
    )


# -- the settings -----------------------------------------------------------------------------------


def test_protected_paths_takes_commas_and_new_lines(
    platform: Platform, monkeypatch: pytest.MonkeyPatch
) -> None:
    first, second = platform.root / "team-a", platform.root / "team-b"
    monkeypatch.setenv("AIRFLOW__BYO__PROTECTED_PATHS", f" {first} ,\n{second}\n")
    for folder in (first, second):
        with pytest.raises(
            ByoConfigError,
            match=re.escape(f"lies inside the protected folder {folder} ([byo] protected_paths)"),
        ):
            flow(source=str(folder / "in"), destination=str(platform.safe / "out"))
    flow(source=str(platform.paths["extra"]), destination=str(platform.safe / "out"))  # no longer listed


def test_a_relative_protected_path_is_a_configuration_error(
    platform: Platform, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AIRFLOW__BYO__PROTECTED_PATHS", "/srv/a,srv/b")
    with pytest.raises(ByoConfigError) as refused:
        flow(source=str(platform.safe / "in"), destination=str(platform.safe / "out"))
    assert str(refused.value) == (
        "[byo] protected_paths: 'srv/b' is not an absolute path. Fix: list absolute paths separated by "
        "commas or new lines (AIRFLOW__BYO__PROTECTED_PATHS)"
    )


def test_allowed_local_roots_confine_local_paths(platform: Platform, monkeypatch: pytest.MonkeyPatch) -> None:
    other = platform.root / "other-root"
    monkeypatch.setenv("AIRFLOW__BYO__ALLOWED_LOCAL_ROOTS", f"{platform.safe}\n{other}")
    flow(source=str(platform.safe / "in"), destination=str(other / "out"))
    flow(source=str(platform.safe / "in"), destination="s3://bucket/anywhere")  # remote: not a local path
    elsewhere = platform.root / "elsewhere"
    with pytest.raises(ByoConfigError) as refused:
        flow(source=str(platform.safe / "in"), destination=str(elsewhere))
    assert str(refused.value) == (
        f"destination '{elsewhere}' is outside the allowed local roots {platform.safe}, {other} "
        "([byo] allowed_local_roots). Fix: use a directory inside one of them, or add its root to "
        "[byo] allowed_local_roots"
    )
    sibling = Path(f"{platform.safe}2")
    with pytest.raises(ByoConfigError, match="is outside the allowed local roots"):
        flow(source=str(sibling), destination=str(platform.safe / "out"))
    # A protected folder inside an allowed root stays protected.
    monkeypatch.setenv("AIRFLOW__BYO__ALLOWED_LOCAL_ROOTS", str(platform.root))
    with pytest.raises(ByoConfigError, match=re.escape(f"lies inside {platform.describe('dags')}")):
        flow(source=str(platform.inside("dags")), destination=str(platform.safe / "out"))


def test_default_ledger_under_airflow_home(platform: Platform, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AIRFLOW__BYO__LEDGER_CONN_ID", "")
    ledger = platform.paths["home"] / "byo" / "ledger.db"
    assert path_policy.ledger_files()[0].path == str(ledger)
    with pytest.raises(
        ByoConfigError, match=re.escape(f"the ledger's file {ledger} ([byo] ledger_conn_id is empty)")
    ):
        flow(source=str(platform.safe / "in"), destination=str(ledger))


@pytest.mark.parametrize(
    ("connection", "expected"),
    [
        ('{"conn_type": "sqlite", "host": "/srv/ledger.db"}', "/srv/ledger.db"),
        ("sqlite://%2Fsrv%2Fledger.db", "/srv/ledger.db"),
        ('{"conn_type": "postgres", "host": "db.internal"}', None),  # a server: no file of ours
        ("{not json", None),  # reported when the ledger is opened
        ("", None),  # a connection of the metadata DB or a secrets backend: not looked up
    ],
)
def test_the_ledger_file_comes_from_the_connections_environment_variable_only(
    platform: Platform, monkeypatch: pytest.MonkeyPatch, connection: str, expected: str | None
) -> None:
    monkeypatch.setenv("AIRFLOW_CONN_BYO_PP_LEDGER", connection)
    files = path_policy.ledger_files()
    assert (files[0].path if files else None) == expected
    if expected:
        assert [f.path for f in files] == [expected + s for s in ("", "-wal", "-shm", "-journal")]


def test_settings_changes_are_seen_by_the_next_check(
    platform: Platform, monkeypatch: pytest.MonkeyPatch
) -> None:
    target = platform.safe / "later-protected"
    path_policy.check_local_path(target, "destination")
    monkeypatch.setenv("AIRFLOW__BYO__PROTECTED_PATHS", str(target))
    with pytest.raises(ByoConfigError, match="is the protected folder"):
        path_policy.check_local_path(target, "destination")


# -- @task.byo -------------------------------------------------------------------------------------


@pytest.mark.parametrize("key", ["source", "destination"])
@pytest.mark.parametrize(("kind", "relation"), relation_cases())
def test_decorator_refuses_a_path_for_each_protected_folder(
    platform: Platform, key: str, kind: str, relation: str
) -> None:
    from airflow.sdk import DAG, task

    path, message = platform.case(key, kind, relation)
    paths = {"source": str(platform.safe / "in"), "destination": str(platform.safe / "out"), key: str(path)}
    with DAG(f"decorated_{kind}_{relation}", schedule=None, start_date=datetime(2024, 1, 1)):

        @task.byo(**paths)
        def clean(file, ctx):
            return file.name

        with pytest.raises(ByoConfigError) as refused:
            clean()
    assert str(refused.value) == message


def test_decorator_refuses_protected_paths(platform: Platform) -> None:
    from airflow.sdk import DAG, task

    with DAG("decorated_paths", schedule=None, start_date=datetime(2024, 1, 1)):

        @task.byo(source=str(platform.safe / "in"), destination=str(platform.inside("dags")))
        def into_dags(file, ctx):
            return file.name

        with pytest.raises(ByoConfigError) as refused:
            into_dags()
        assert str(refused.value).startswith(
            platform.refusal("destination", platform.inside("dags"), "dags", "lies inside")
        )

        @task.byo(source=str(platform.container("venvs")), destination=str(platform.safe / "out"))
        def reads_venvs(file, ctx):
            return file.name

        with pytest.raises(ByoConfigError) as refused:
            reads_venvs()
        assert str(refused.value).startswith(
            platform.refusal("source", platform.container("venvs"), "venvs", "contains")
        )

        @task.byo(source=str(platform.safe / "in"), destination=str(platform.safe / "out"))
        def fine(file, ctx):
            return file.name

        assert fine().operator.destination == str(platform.safe / "out")


# -- flow specs ------------------------------------------------------------------------------------

SPEC = """\
name: {name}
source:
  type: local
  path: {source}
processing:
  code: |
    def process(file, ctx):
        return file.name
destination:
  type: local
  path: {destination}
"""


def spec_file(folder: Path, name: str, source: str, destination: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.yaml"
    path.write_text(SPEC.format(name=name, source=source, destination=destination))
    return path


@pytest.mark.parametrize(("kind", "relation"), relation_cases())
def test_spec_refuses_a_destination_for_each_protected_folder_at_its_line(
    platform: Platform, kind: str, relation: str
) -> None:
    from airflow_byo.specs.factory import load_flow

    path = platform.inside(kind) if relation == "inside" else platform.container(kind)
    words = "contains" if relation == "contains" else ("is" if kind in FILES else "lies inside")
    spec = spec_file(platform.root / "specs", "bad", str(platform.safe / "in"), str(path))
    with pytest.raises(ByoFlowSpecError) as refused:
        load_flow(spec)
    assert str(refused.value).startswith(
        f"{spec}:11: destination.path: {platform.refusal('destination', path, kind, words)}. Fix: choose"
    )


def test_spec_refuses_a_relative_source_and_symlinks_at_the_source_line(platform: Platform) -> None:
    from airflow_byo.specs.factory import load_flow

    specs = platform.root / "specs"
    spec = spec_file(specs, "relative", "../p_home/home", str(platform.safe / "out"))
    with pytest.raises(ByoFlowSpecError) as refused:
        load_flow(spec)
    assert str(refused.value) == (
        f"{spec}:4: source.path: {platform.refusal('source', platform.paths['home'], 'home', 'is')}. "
        "Fix: choose a directory outside it"
    )
    (platform.safe / "link").symlink_to(platform.paths["plugins"])
    spec = spec_file(specs, "linked", str(platform.safe / "link"), str(platform.safe / "out"))
    with pytest.raises(
        ByoFlowSpecError, match=re.escape(f"{spec}:4: source.path: source '{platform.safe}/link' (real path")
    ):
        load_flow(spec)
    assert load_flow(spec_file(specs, "good", "../data/in", "s3://bucket/dags")).spec.name == "good"


def test_validate_reports_the_refused_spec_and_keeps_the_others(platform: Platform) -> None:
    """``airflow byo validate``'s code path, in this process: collect_flows."""
    from airflow_byo.specs.factory import collect_flows

    specs = platform.root / "specs"
    bad = spec_file(specs, "bad", str(platform.safe / "in"), str(platform.paths["dags"]))
    good = spec_file(specs, "good", str(platform.safe / "in"), str(platform.safe / "out"))
    collection = collect_flows([bad, good])
    assert [f.spec.name for f in collection.flows] == ["good"]
    assert collection.problems[bad].startswith(
        f"{bad}:11: destination.path: {platform.refusal('destination', platform.paths['dags'], 'dags', 'is')}"
    )


@pytest.mark.slow
def test_airflow_byo_validate_refuses_a_spec_writing_into_the_dags_folder(platform: Platform) -> None:
    """One real ``airflow byo validate``: the settings reach the CLI process and the message is printed."""
    specs = platform.root / "specs"
    bad = spec_file(specs, "bad", str(platform.safe / "in"), str(platform.inside("dags")))
    result = subprocess.run(
        [str(Path(sys.executable).parent / "airflow"), "byo", "validate", str(specs)],
        capture_output=True,
        text=True,
        env=os.environ | platform.env,
        timeout=300,
    )
    assert result.returncode == 1, result.stdout + result.stderr
    assert (
        f"INVALID {bad}:11: destination.path: "
        f"{platform.refusal('destination', platform.inside('dags'), 'dags', 'lies inside')}. "
        "Fix: choose a directory outside it"
    ) in result.stdout
    assert result.stderr.strip().endswith("error: 1 of 1 spec file(s) invalid")


# -- airflow byo test / byo test ---------------------------------------------------------------------


def cli_test_args(**kwargs: Any) -> argparse.Namespace:
    """`airflow byo test`'s arguments as its own definition parses them, with ``kwargs`` over them."""
    from airflow_byo.cli.byo_script import test_parser

    parsed = test_parser().parse_args(["--python", sys.executable, "-v", "placeholder"])
    return argparse.Namespace(**(vars(parsed) | kwargs))


@pytest.mark.parametrize(("kind", "relation"), relation_cases())
def test_airflow_byo_test_refuses_a_sample_for_each_protected_folder(
    platform: Platform, kind: str, relation: str
) -> None:
    """``airflow byo test``'s function, in this process: a sample inside, or a sample's folder containing."""
    from airflow_byo.cli import commands

    code = platform.safe / "upper.py"
    code.write_text(UPPER)
    if relation == "inside":  # the protected file itself, or a file in the protected folder
        sample = platform.paths[kind] if kind in FILES else platform.paths[kind] / "sample.csv"
        words = "is" if kind in FILES else "lies inside"
        message = f"{platform.refusal('sample', sample, kind, words)}. Fix: choose a directory outside it"
    else:  # a file beside the protected folder: the sandbox would see the folder holding both
        folder, message = platform.case("the folder of sample", kind, relation)
        sample = folder / "sample.csv"
    if not sample.exists():
        sample.write_text("a\n")
    with pytest.raises(ByoConfigError) as refused:
        commands.test(cli_test_args(code=str(code), sample=str(sample)))
    assert str(refused.value) == message


def test_airflow_byo_test_refuses_a_sample_in_a_protected_folder(platform: Platform) -> None:
    """``airflow byo test``'s function, in this process (``-v``: the error itself is raised)."""
    from airflow_byo.cli import commands

    code = platform.safe / "upper.py"
    code.write_text(UPPER)
    secret = platform.paths["home"] / "airflow.cfg"
    secret.write_text("[core]\nfernet_key = TOPSECRET\n")
    with pytest.raises(ByoConfigError) as refused:
        commands.test(cli_test_args(code=str(code), sample=str(secret)))
    assert str(refused.value).startswith(platform.refusal("sample", secret, "home", "lies inside"))
    beside = platform.container("home") / "sample.csv"  # its folder holds AIRFLOW_HOME
    beside.write_text("a\n")
    with pytest.raises(ByoConfigError) as refused:
        commands.test(cli_test_args(code=str(code), sample=str(beside)))
    assert str(refused.value).startswith(
        platform.refusal("the folder of sample", platform.container("home"), "home", "contains")
    )


def test_airflow_byo_test_runs_from_any_working_directory(
    platform: Platform, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """The test's placeholders are the sample, not ".": a working directory in AIRFLOW_HOME is fine."""
    from airflow_byo.cli import commands

    code = platform.safe / "upper.py"
    code.write_text(UPPER)
    sample = platform.safe / "in" / "a.txt"
    sample.write_text("hello\n")
    monkeypatch.chdir(platform.paths["home"])
    commands.test(cli_test_args(code=str(code), sample=str(sample)))
    assert "HELLO" in capsys.readouterr().out


def test_airflow_byo_test_with_a_spec_refuses_its_protected_destination(platform: Platform) -> None:
    from airflow_byo.cli import commands

    spec = spec_file(
        platform.root / "specs", "bad", str(platform.safe / "in"), str(platform.container("runtimes"))
    )
    sample = platform.safe / "in" / "a.txt"
    sample.write_text("hello\n")
    with pytest.raises(ByoFlowSpecError) as refused:
        commands.test(cli_test_args(spec=str(spec), sample=str(sample)))
    assert str(refused.value).startswith(
        f"{spec}:11: destination.path: "
        f"{platform.refusal('destination', platform.container('runtimes'), 'runtimes', 'contains')}"
    )


def run_byo(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(Path(sys.executable).parent / "byo"), *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )


def test_byo_script_refuses_a_protected_sample_without_airflow(platform: Platform) -> None:
    code = platform.safe / "upper.py"
    code.write_text(UPPER)
    secret = platform.paths["library"] / "fn" / "v1.json"
    secret.parent.mkdir()
    secret.write_text("{}")
    result = run_byo(
        ["test", "--code", str(code), "--python", sys.executable, str(secret)], os.environ | platform.env
    )
    assert result.returncode == 1
    assert result.stderr == (
        f"error: {platform.refusal('sample', secret, 'library', 'lies inside')}. "
        "Fix: choose a directory outside it\n"
    )


def test_byo_script_reads_the_dags_folder_from_airflow_cfg(platform: Platform) -> None:
    """Standalone, [core] dags_folder comes from airflow.cfg (``{AIRFLOW_HOME}`` filled in) if no variable."""
    code = platform.safe / "upper.py"
    code.write_text(UPPER)
    home = platform.paths["home"]
    (home / "airflow.cfg").write_text("[core]\ndags_folder = {AIRFLOW_HOME}/mydags\n")
    sample = home / "mydags" / "sample.csv"
    sample.parent.mkdir()
    sample.write_text("a\n")
    env = os.environ | platform.env
    del env["AIRFLOW__CORE__DAGS_FOLDER"]
    env.pop("AIRFLOW_CONFIG", None)  # found in AIRFLOW_HOME, as Airflow finds it
    result = run_byo(["test", "--code", str(code), "--python", sys.executable, str(sample)], env)
    assert result.returncode == 1
    assert result.stderr.startswith(
        f"error: sample {str(sample)!r} lies inside the DAGs folder {home}/mydags ([core] dags_folder): {WHY}"
    )


# -- the runtimes file ------------------------------------------------------------------------------


@pytest.mark.parametrize(("kind", "relation"), relation_cases())
def test_runtimes_file_refuses_a_read_only_path_for_each_protected_folder(
    platform: Platform, kind: str, relation: str
) -> None:
    from airflow_byo.runtimes_file import get_runtime

    path, message = platform.case("read_only_paths", kind, relation)
    runtimes = platform.paths["runtimes"]  # the protected runtimes file is this very file
    runtimes.write_text(
        f"runtimes:\n  snoop:\n    read_only_paths:\n      - /opt/reference-data\n      - {path}\n"
    )
    with pytest.raises(ByoConfigError) as refused:
        get_runtime("snoop")
    assert str(refused.value) == f"{runtimes}:5: runtimes.snoop.read_only_paths[1]: {message}"


def test_runtimes_file_refuses_protected_read_only_paths_at_their_lines(
    platform: Platform, monkeypatch: pytest.MonkeyPatch
) -> None:
    from airflow_byo.runtimes_file import get_runtime

    runtimes = platform.root / "runtimes-ro.yaml"
    runtimes.write_text(
        textwrap.dedent(
            f"""\
            runtimes:
              snoop:
                read_only_paths:
                  - /opt/reference-data
                  - {platform.paths["home"]}
                  - /proc
                  - {platform.container("dags")}
            """
        )
    )
    monkeypatch.setenv("AIRFLOW__BYO__RUNTIMES", str(runtimes))
    with pytest.raises(ByoConfigError) as refused:
        get_runtime("snoop")
    assert str(refused.value).splitlines() == [
        f"{runtimes}:5: runtimes.snoop.read_only_paths[1]: "
        f"{platform.refusal('read_only_paths', platform.paths['home'], 'home', 'is')}. "
        "Fix: choose a directory outside it",
        f"{runtimes}:6: runtimes.snoop.read_only_paths[2]: read_only_paths '/proc' is the system folder "
        f"/proc: {WHY}. Fix: choose a directory outside it",
        f"{runtimes}:7: runtimes.snoop.read_only_paths[3]: "
        f"{platform.refusal('read_only_paths', platform.container('dags'), 'dags', 'contains')}. "
        "Fix: choose a directory that does not contain it",
    ]
    with pytest.raises(ByoConfigError, match=re.escape(f"{runtimes}:5: runtimes.snoop.read_only_paths[1]")):
        flow(source=str(platform.safe / "in"), destination=str(platform.safe / "out"), runtime="snoop")


def test_a_runtimes_read_only_path_may_not_be_the_runtimes_file(
    platform: Platform, monkeypatch: pytest.MonkeyPatch
) -> None:
    from airflow_byo.runtimes_file import get_runtime

    runtimes = platform.root / "self.yaml"
    runtimes.write_text(f"runtimes:\n  mirror:\n    read_only_paths: [{platform.root}/self.yaml, /opt/ok]\n")
    monkeypatch.setenv("AIRFLOW__BYO__RUNTIMES", str(runtimes))
    with pytest.raises(ByoConfigError) as refused:
        get_runtime("mirror")
    assert str(refused.value) == (
        f"{runtimes}:3: runtimes.mirror.read_only_paths[0]: read_only_paths '{runtimes}' is the runtimes "
        f"file {runtimes} ([byo] runtimes): {WHY}. Fix: choose a directory outside it"
    )
    runtimes.write_text(
        "runtimes:\n  fine:\n    read_only_paths: [/opt/reference-data, /usr/share/zoneinfo]\n"
    )
    assert get_runtime("fine").read_only_paths == ("/opt/reference-data", "/usr/share/zoneinfo")
