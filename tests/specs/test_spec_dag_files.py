"""
Every spec has a generated DAG file of its own, before it is needed (issues 14 and 23).

A valid spec's file defines nothing and raises nothing; an invalid spec's file raises the spec's
message. When a spec turns invalid (edited in git, not on the page) the file Airflow already knows
raises the problem at its next parse, without the factory writing a new file; the factory's own
next parse rewrites the same file, which Airflow parses again at once.
"""

from __future__ import annotations

import errno
import os
import runpy
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from airflow_byo.exceptions import ByoFlowSpecError
from airflow_byo.specs import error_files
from airflow_byo.specs.factory import build_dags, collect_flows
from airflow_byo.specs.loader import find_specs
from tests.conftest import ROOT
from tests.specs.test_hostile_specs import VALID, hostile_folder


def valid(name: str, extra: str = "") -> str:
    """A valid spec named ``name`` (``extra``: lines after the name)."""
    return VALID.replace("name: good", f"name: {name}{extra}")


def factory(tmp_path: Path, **specs: str) -> tuple[Path, Path]:
    """A factory's DAG file (not written: ``build_dags(dag_file=...)`` stands for it) and its spec
    folder holding ``specs`` (file stem -> text)."""
    folder = tmp_path / "dags" / "flows"
    folder.mkdir(parents=True)
    for stem, text in specs.items():
        (folder / f"{stem}.yaml").write_text(text)
    return tmp_path / "dags" / "flows_from_specs.py", folder


def spec_files(dag_file: Path) -> dict[Path, tuple[int, str]]:
    """The generated files beside ``dag_file``: modification time (ns) and text of each."""
    folder = dag_file.parent / error_files.ERRORS_DIR
    return {p: (p.stat().st_mtime_ns, p.read_text()) for p in sorted(folder.glob("*.py"))}


def test_every_spec_has_a_file_valid_ones_raise_nothing_invalid_ones_their_message(tmp_path: Path) -> None:
    dag_file = tmp_path / "dags" / "flows_from_specs.py"
    folder = hostile_folder(tmp_path / "dags" / "flows")
    dags = build_dags(folder, dag_file=dag_file)
    assert list(dags) == ["byo_flow__good"]
    problems = collect_flows(find_specs(folder)).problems
    expected = {error_files.error_file_for(dag_file, folder, spec) for spec in find_specs(folder)}
    assert set(spec_files(dag_file)) == expected  # one per spec, the valid one too
    for spec_file in find_specs(folder):
        generated = error_files.error_file_for(dag_file, folder, spec_file)
        text = generated.read_bytes().lower()
        assert b"airflow" in text  # else Airflow's safe mode would skip the file
        assert b"dag" in text
        if spec_file not in problems:
            assert runpy.run_path(str(generated))["report"]  # what the dag-processor does: no error
            continue
        with pytest.raises(ByoFlowSpecError) as raised:
            runpy.run_path(str(generated))
        assert str(raised.value) == problems[spec_file]
    before = spec_files(dag_file)
    build_dags(folder, dag_file=dag_file)  # the next parse: nothing rewritten
    assert spec_files(dag_file) == before


def test_a_spec_turned_invalid_makes_its_known_file_raise_without_a_new_file(tmp_path: Path) -> None:
    dag_file, folder = factory(tmp_path, a=valid("a"))
    spec = folder / "a.yaml"
    assert list(build_dags(folder, dag_file=dag_file)) == ["byo_flow__a"]
    [generated] = spec_files(dag_file)
    before = spec_files(dag_file)
    runpy.run_path(str(generated))  # valid: raises nothing

    spec.write_text(valid("a", "\nschedul: hourly"))  # in git, not on the page
    with pytest.raises(ByoFlowSpecError, match=r"a\.yaml:2: schedul: Extra inputs are not permitted"):
        runpy.run_path(str(generated))  # the next parse of the file Airflow already knows
    assert spec_files(dag_file) == before  # the factory wrote nothing: no new file, the same text

    assert build_dags(folder, dag_file=dag_file) == {}  # the factory's next parse drops the DAG ...
    assert list(spec_files(dag_file)) == [generated]  # ... and rewrites the same file (its verdict)
    assert spec_files(dag_file)[generated][1] != before[generated][1]
    with pytest.raises(ByoFlowSpecError, match=r"schedul: Extra inputs are not permitted"):
        runpy.run_path(str(generated))

    spec.write_text(valid("a"))  # fixed: the same file raises nothing
    runpy.run_path(str(generated))
    assert generated.exists()


def test_a_valid_specs_file_reads_a_fingerprint_and_imports_no_factory(tmp_path: Path) -> None:
    """200 specs are 200 parses per interval: a valid, unchanged spec costs a read and a hash."""
    dag_file, folder = factory(tmp_path, a=valid("a"))
    build_dags(folder, dag_file=dag_file)
    [generated] = spec_files(dag_file)
    script = (
        f"import runpy, sys; runpy.run_path({str(generated)!r}); "
        "print(sorted(m for m in sys.modules if m.startswith('airflow_byo.specs')))"
    )
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, env=os.environ.copy(), timeout=120
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.splitlines()[-1] == "['airflow_byo.specs', 'airflow_byo.specs.error_report']"


def test_the_file_stays_while_its_spec_exists_and_goes_with_it(tmp_path: Path) -> None:
    dag_file, folder = factory(tmp_path, a=valid("a", "\nschedul: hourly"), b="- not a spec\n", c=valid("c"))
    assert list(build_dags(folder, dag_file=dag_file)) == ["byo_flow__c"]
    file_a, file_b, file_c = (
        error_files.error_file_for(dag_file, folder, folder / n) for n in ("a.yaml", "b.yaml", "c.yaml")
    )
    (folder / "a.yaml").write_text(valid("a"))  # fixed
    (folder / "b.yaml").unlink()  # deleted
    runpy.run_path(str(file_a))
    runpy.run_path(str(file_b))
    assert file_a.exists()  # the spec is valid now: its file stays, raising nothing
    assert not file_b.exists()  # the spec is gone: its file deleted itself
    (folder / "c.yaml").unlink()  # deleted: the factory's next parse removes its file too
    assert list(build_dags(folder, dag_file=dag_file)) == ["byo_flow__a"]
    assert list(spec_files(dag_file)) == [file_a]
    assert not file_c.exists()


def test_a_name_taken_by_an_earlier_spec_is_the_factorys_to_see(tmp_path: Path) -> None:
    """A problem that leaves the spec's bytes alone: the factory rewrites the file, not a new one."""
    dag_file, folder = factory(tmp_path, b=valid("b"))
    build_dags(folder, dag_file=dag_file)
    [file_b] = spec_files(dag_file)
    (folder / "a.yaml").write_text(valid("b"))  # sorts first: keeps the name
    assert list(build_dags(folder, dag_file=dag_file)) == ["byo_flow__b"]  # now a.yaml's
    assert error_files.error_file_for(dag_file, folder, folder / "b.yaml") == file_b
    with pytest.raises(ByoFlowSpecError, match=r"b\.yaml:1: name: 'b' is already the name of .*a\.yaml"):
        runpy.run_path(str(file_b))


#: An error file as airflow-byo wrote them before issue 22 (its report() moved to error_report).
OLD_ERROR_FILE = """\
# Generated by airflow-byo (do not edit): the flow spec {name} is invalid, and this DAG file
# carries its problems into Airflow's import errors. It defines no DAG and deletes itself once
# the spec is fixed or removed. See airflow_byo/specs/factory.py.
from pathlib import Path

from airflow_byo.specs.error_files import report

report(Path(__file__), spec={spec!r}, folder='../flows')
"""


def test_the_factory_keeps_others_files_and_replaces_old_forms(tmp_path: Path) -> None:
    dag_file, folder = factory(tmp_path, fixed=valid("fixed"), broken=valid("broken", "\nschedul: hourly"))
    errors = dag_file.parent / error_files.ERRORS_DIR
    errors.mkdir()
    # left by an airflow-byo before issue 22: their import fails for good since report() moved
    old_fixed = errors / "fixed_yaml_0123abcd.py"
    old_broken = errors / "broken_yaml_4567cdef.py"
    for old, name in ((old_fixed, "fixed.yaml"), (old_broken, "broken.yaml")):
        old.write_text(OLD_ERROR_FILE.format(name=name, spec=f"../flows/{name}"))
    with pytest.raises(ImportError, match=r"cannot import name 'report'"):
        runpy.run_path(str(old_broken))
    # not the factory's to remove: a file someone else put there, another factory's spec files
    theirs = errors / "notes.py"
    theirs.write_text("# my own DAG file\n")
    (folder / "other").mkdir()
    (folder / "other" / "bad.yaml").write_text("- not a spec\n")
    assert build_dags(folder / "other", dag_file=dag_file.with_name("other_factory.py")) == {}
    other_file = error_files.error_file_for(
        dag_file.with_name("other_factory.py"), folder / "other", folder / "other" / "bad.yaml"
    )
    # this factory's own file in the form of issue 22 (no fingerprint argument): rewritten
    build_dags(folder, dag_file=dag_file)
    broken = error_files.error_file_for(dag_file, folder, folder / "broken.yaml")
    broken.write_text(broken.read_text().replace(", valid=None)", ")"))

    assert list(build_dags(folder, dag_file=dag_file)) == ["byo_flow__fixed"]
    mine = [error_files.error_file_for(dag_file, folder, spec) for spec in find_specs(folder)]
    assert sorted(errors.iterdir()) == sorted([*mine, other_file, theirs])
    assert "valid=None" in broken.read_text()
    with pytest.raises(ByoFlowSpecError, match=r"broken\.yaml:2: schedul: Extra inputs are not permitted"):
        runpy.run_path(str(broken))  # the spec's problem again, not an ImportError

    # specs deleted: the factory's next parse removes their files, whatever parses first
    (folder / "broken.yaml").unlink()
    (folder / "other" / "bad.yaml").unlink()
    assert sorted(build_dags(folder, dag_file=dag_file)) == ["byo_flow__fixed"]
    fixed = error_files.error_file_for(dag_file, folder, folder / "fixed.yaml")
    assert sorted(errors.iterdir()) == sorted([fixed, other_file, theirs])


def test_no_files_outside_airflows_dag_parsing(tmp_path: Path) -> None:
    folder = tmp_path / "flows"
    folder.mkdir()
    (folder / "bad.yaml").write_text("[]\n")
    assert build_dags(folder) == {}
    assert not (Path(__file__).parent / error_files.ERRORS_DIR).exists()
    assert sorted(p.name for p in folder.iterdir()) == ["bad.yaml"]  # no marker either


def test_a_folder_it_cannot_write_logs_the_problems_and_the_flows_still_load(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    dag_file = tmp_path / "dags" / "flows_from_specs.py"
    folder = hostile_folder(tmp_path / "dags" / "flows")

    def read_only(*args: object, **kwargs: object) -> None:
        raise OSError(errno.EROFS, "Read-only file system")

    monkeypatch.setattr(os, "replace", read_only)
    assert list(build_dags(folder, dag_file=dag_file)) == ["byo_flow__good"]
    assert not list((dag_file.parent / error_files.ERRORS_DIR).glob("*.py"))
    specs = len(find_specs(folder))
    assert (
        f"cannot write {specs} of the {specs} spec DAG files in {dag_file.parent}/byo_spec_errors"
        in caplog.text
    )
    assert "(Read-only file system): the problems of invalid specs are only logged" in caplog.text
    assert "invalid flow spec: " + f"{folder}/list.yaml:1: (document): the document is a list" in caplog.text


def test_airflows_dagbag_keeps_the_valid_flow_and_files_each_problem_apart(tmp_path: Path) -> None:
    """The dag-processor's own parse (``DagBag``) of the factory file, then of the spec files."""
    from airflow.dag_processing.dagbag import DagBag

    dags_folder = tmp_path / "dags"
    folder = dags_folder / "flows"
    folder.mkdir(parents=True)
    shutil.copy(ROOT / "dags_examples" / "byo_flows_from_specs.py", dags_folder)
    (folder / "a_good.yaml").write_text(VALID.replace("name: good", "name: good\ndescription: first"))
    (folder / "b_same_name.yaml").write_text(VALID.replace("name: good", "name: good\ndescription: second"))
    kwargs = "  runtime_config: {custom_code: {kwargs: {x: 1}}}\ndestination:"
    (folder / "c_kwargs.yaml").write_text(valid("kw").replace("destination:", kwargs))
    (folder / "d_list.yaml").write_text("[]\n")

    first = DagBag(dag_folder=str(dags_folder), bundle_path=dags_folder, collect_dags=True)
    assert first.import_errors == {}  # never an import error of the factory's file
    assert list(first.dags) == ["good"]  # no DAG of a spec that failed, or lost its name
    assert first.dags["good"].description == "first"

    second = DagBag(dag_folder=str(dags_folder), bundle_path=dags_folder, collect_dags=True)
    assert list(second.dags) == ["good"]
    # the spec files (one re-checks the same-name spec, building both DAGs) define no DAG
    assert second.dags["good"].fileloc == str(dags_folder / "byo_flows_from_specs.py")
    assert second.dags["good"].description == "first"
    assert len(list((dags_folder / "byo_spec_errors").glob("*.py"))) == 4  # the valid spec's too
    problems = collect_flows(find_specs(folder)).problems
    reported = {}
    for key, trace in second.import_errors.items():
        assert key.startswith("byo_spec_errors/"), key
        [spec_file] = [f for f, problem in problems.items() if problem in trace]
        reported[spec_file.name] = key
    assert sorted(reported) == ["b_same_name.yaml", "c_kwargs.yaml", "d_list.yaml"]

    (folder / "c_kwargs.yaml").write_text(valid("kw"))  # fixed
    third = DagBag(dag_folder=str(dags_folder), bundle_path=dags_folder, collect_dags=True)
    assert sorted(third.dags) == ["good", "kw"]
    assert {dag.fileloc for dag in third.dags.values()} == {str(dags_folder / "byo_flows_from_specs.py")}
    assert sorted(third.import_errors) == sorted(v for k, v in reported.items() if k != "c_kwargs.yaml")
    assert (dags_folder / reported["c_kwargs.yaml"]).exists()  # it stays, raising nothing
