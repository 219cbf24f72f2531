"""Named runtimes (issue #12, item 7): real runtimes files, picked through ``[byo] runtimes``."""

from __future__ import annotations

import json
import os
import re
import sys
import textwrap
from pathlib import Path

import pytest

from airflow_byo.exceptions import ByoConfigError, ByoPackageError
from airflow_byo.named_runtimes import (
    DEFAULT_RUNTIME,
    Runtime,
    apply_runtime,
    effective_job_config,
    flow_requirements,
)
from airflow_byo.packages import parse_packages
from airflow_byo.runtime_config import JobConfig, parse_runtime_config
from airflow_byo.runtimes_file import available_runtimes, get_runtime, load_runtimes

DATA = """\
runtimes:
  data:
    description: pandas + pyarrow
    packages: ["pandas==2.2.3", "pyarrow==18.1.0"]
    network: false
    read_only_paths: [/opt/reference-data]
    job_config: {timeout_seconds: 600, max_memory_mb: 4096}
  reports:
    packages: ["tabulate==0.9.0", "typing_extensions==4.12.2"]
"""


def _effective(runtime: Runtime, packages: object) -> list[str]:
    """The effective requirements of a flow with ``packages`` on ``runtime``, as a list."""
    return list(flow_requirements(runtime, packages).effective)  # type: ignore[arg-type]


def write(tmp_path: Path, text: str, name: str = "runtimes.yaml") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return path


@pytest.fixture
def runtimes_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """``[byo] runtimes`` pointing at a file with the runtimes ``data`` and ``reports``."""
    path = write(tmp_path, DATA)
    monkeypatch.setenv("AIRFLOW__BYO__RUNTIMES", str(path))
    return path


def error_of(path: Path) -> str:
    with pytest.raises(ByoConfigError) as caught:
        load_runtimes(path)
    return str(caught.value)


# -- packages -----------------------------------------------------------------------------------
def test_flow_pin_overrides_the_runtime_pin_by_normalised_name(runtimes_file: Path) -> None:
    data = get_runtime("data")
    assert data.packages == ("pandas==2.2.3", "pyarrow==18.1.0")
    assert data.source == f"{runtimes_file}:2"

    effective = _effective(data, "Pandas==2.2.2,unidecode==1.3.8")

    # One pandas, the flow's, in the runtime's place; the flow's extra package after the base.
    assert effective == ["Pandas==2.2.2", "pyarrow==18.1.0", "unidecode==1.3.8"]
    assert flow_requirements(data, "Pandas==2.2.2").overrides == (("pandas==2.2.3", "Pandas==2.2.2"),)


def test_names_match_after_pep503_normalisation_and_extras_are_ignored_for_matching(
    runtimes_file: Path,
) -> None:
    reports = get_runtime("reports")
    effective = _effective(reports, ["Typing.Extensions>=4.12", "tabulate[widechars]==0.9.0"])
    # The flow's entries replace the runtime's as written (their extras included).
    assert effective == ["tabulate[widechars]==0.9.0", "Typing.Extensions>=4.12"]
    data = get_runtime("data")
    assert _effective(data, "pandas[performance]==2.2.2") == [
        "pandas[performance]==2.2.2",
        "pyarrow==18.1.0",
    ]
    assert _effective(data, None) == ["pandas==2.2.3", "pyarrow==18.1.0"]


def test_a_flow_package_is_still_validated_on_a_runtime(runtimes_file: Path) -> None:
    with pytest.raises(ByoPackageError, match=r"entry 'pandas=2\.2\.2'.*Did you mean 'pandas==2\.2\.2'"):
        _effective(get_runtime("data"), "pandas=2.2.2")


def test_the_default_runtime_has_no_base_packages_and_needs_no_file(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("AIRFLOW__BYO__RUNTIMES", raising=False)
    assert get_runtime(None) is get_runtime("default") is DEFAULT_RUNTIME
    assert DEFAULT_RUNTIME.packages == ()
    assert DEFAULT_RUNTIME.job_defaults == {}
    packages = "unidecode==1.3.8,humanize==4.11.0"
    assert _effective(DEFAULT_RUNTIME, packages) == parse_packages(packages)
    assert effective_job_config(DEFAULT_RUNTIME, {"batch_size": 5}) == {"batch_size": 5}
    assert list(available_runtimes()) == ["default"]


def test_a_broken_runtimes_file_does_not_break_flows_on_the_default_runtime(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AIRFLOW__BYO__RUNTIMES", str(tmp_path / "missing.yaml"))
    assert get_runtime(None) is DEFAULT_RUNTIME


def test_a_file_cannot_redefine_default(tmp_path: Path) -> None:
    path = write(tmp_path, "runtimes:\n  data: {}\n  default:\n    packages: [six==1.16.0]\n")
    assert error_of(path) == (
        f"{path}:3: runtimes.default: 'default' is built in (no base packages, so flows without a "
        "runtime keep exactly their own packages). Fix: give this runtime another name"
    )


# -- picking a runtime by name --------------------------------------------------------------------
def test_unknown_runtime_lists_the_known_ones_and_names_the_setting(runtimes_file: Path) -> None:
    with pytest.raises(ByoConfigError) as caught:
        get_runtime("dta")
    assert str(caught.value) == (
        f"unknown runtime 'dta'; known runtimes: data, default, reports (from [byo] runtimes = "
        f"{runtimes_file}). Fix: use one of those (did you mean 'data'?), or define 'dta' in that file"
    )


def test_a_runtime_name_without_a_runtimes_file(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AIRFLOW__BYO__RUNTIMES", raising=False)
    with pytest.raises(ByoConfigError, match=r"\[byo\] runtimes is not set, so only 'default' exists"):
        get_runtime("data")


def test_missing_file_is_named_with_the_setting(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    missing = tmp_path / "nope.yaml"
    monkeypatch.setenv("AIRFLOW__BYO__RUNTIMES", str(missing))
    with pytest.raises(ByoConfigError) as caught:
        get_runtime("data")
    assert str(caught.value).startswith(
        f"[byo] runtimes = '{missing}': cannot read the runtimes file: the file does not exist. Fix: "
    )
    assert "AIRFLOW__BYO__RUNTIMES" in str(caught.value)


def test_an_edited_file_is_read_again(runtimes_file: Path) -> None:
    assert get_runtime("data") is get_runtime("data")  # cached while the file is unchanged
    runtimes_file.write_text(DATA.replace("pandas==2.2.3", "pandas==2.2.1") + "  ml: {}\n")
    stat = runtimes_file.stat()
    os.utime(runtimes_file, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))
    assert get_runtime("data").packages == ("pandas==2.2.1", "pyarrow==18.1.0")
    assert sorted(available_runtimes()) == ["data", "default", "ml", "reports"]


# -- invalid files: file:line: field: problem. Fix: ... --------------------------------------------
def test_yaml_syntax_error_names_file_and_line(tmp_path: Path) -> None:
    path = write(tmp_path, 'runtimes:\n  data:\n    packages: ["pandas==2.2.3"\n  other: {}\n')
    message = error_of(path)
    assert re.fullmatch(rf"{re.escape(str(path))}:4: not valid YAML: .+\. Fix: .+", message), message


def test_unknown_key_suggests_the_field(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """\
        runtimes:
          data:
            packages: ["pandas==2.2.3"]
            netwrk: true
            job_config:
              timeout_secs: 60
        """,
    )
    assert error_of(path).splitlines() == [
        f"{path}:4: runtimes.data.netwrk: unknown key. Fix: did you mean 'network'?",
        f"{path}:6: runtimes.data.job_config.timeout_secs: unknown key. Fix: did you mean 'timeout_seconds'?",
    ]


def test_bad_package_names_its_index_and_line(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """\
        runtimes:
          data:
            packages:
              - pandas==2.2.3
              - pyarrow=18.1.0
        """,
    )
    message = error_of(path)
    prefix = f"{path}:5: runtimes.data.packages[1]: entry 'pyarrow=18.1.0' is not a valid requirement ("
    assert message.startswith(prefix), message
    assert message.endswith("). Fix: Did you mean 'pyarrow==18.1.0'? Versions are pinned with '=='")


def test_every_problem_is_reported_at_once(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """\
        runtimes:
          data:
            packages: [six==1.16.0, Six==1.17.0, "--index-url=http://evil"]
            read_only_paths: [relative/dir]
            job_config: {timeout_seconds: -1}
          legacy:
            python: /opt/legacy/bin/python
            packages: [six==1.16.0]
          "bad name": {}
        """,
    )
    lines = error_of(path).splitlines()  # in file order
    assert f"{path}:3: runtimes.data.packages[2]: entry '--index-url=http://evil' is not allowed" in lines[0]
    assert lines[1].startswith(f"{path}:4: runtimes.data.read_only_paths[0]: 'relative/dir' must be an ")
    assert lines[2] == (
        f"{path}:5: runtimes.data.job_config.timeout_seconds: Input should be greater than 0 (got -1)"
    )
    assert lines[3] == (
        f"{path}:6: runtimes.legacy: python and packages cannot be combined: an existing interpreter "
        "is used as it is. Fix: install the packages into that interpreter and drop packages, or "
        "drop python"
    )
    assert lines[4].startswith(f"{path}:9: runtimes.bad name: not a valid runtime name. Fix: ")
    assert len(lines) == 5


def test_a_package_listed_twice(tmp_path: Path) -> None:
    path = write(tmp_path, "runtimes:\n  data:\n    packages: [six==1.16.0, Six==1.17.0]\n")
    assert error_of(path) == (
        f"{path}:3: runtimes.data.packages: 'Six==1.17.0' names the same package as 'six==1.16.0'. "
        "Fix: keep one entry per package"
    )


def test_a_name_yaml_reads_as_a_boolean_must_be_quoted(tmp_path: Path) -> None:
    path = write(tmp_path, "runtimes:\n  data: {}\n  off: {}\n")
    assert error_of(path) == (
        f"{path}:3: runtimes.off: YAML reads this name as a bool, not a string. "
        "Fix: quote it ('off') or pick another name"
    )


def test_a_runtime_defined_twice(tmp_path: Path) -> None:
    path = write(tmp_path, "runtimes:\n  data: {}\n  data:\n    packages: [six==1.16.0]\n")
    assert error_of(path) == f"{path}:3: runtimes.data: defined twice. Fix: keep one definition per name"


def test_not_a_mapping_and_missing_runtimes_key(tmp_path: Path) -> None:
    assert error_of(write(tmp_path, "- data\n")).endswith(
        ":1: a runtimes file is a mapping with a 'runtimes' key. "
        "Fix: start it with 'runtimes:' and one entry per runtime name"
    )
    path = write(tmp_path, "runtime:\n  data: {}\n")
    assert error_of(path).splitlines() == [
        f"{path}:1: runtimes: Field required. Fix: add 'runtimes'",
        f"{path}:1: runtime: unknown key. Fix: did you mean 'runtimes'?",
    ]


def test_json_files_syntax_and_validation_errors_have_lines(tmp_path: Path) -> None:
    good = {"runtimes": {"data": {"packages": ["six==1.16.0"], "job_config": {"batch_size": 10}}}}
    path = write(tmp_path, json.dumps(good, indent="\t"), "runtimes.json")
    assert load_runtimes(path)["data"].job_defaults == {"batch_size": 10}

    broken = write(tmp_path, '{\n  "runtimes": {\n    "data": {,}\n  }\n}\n', "broken.json")
    assert error_of(broken).startswith(f"{broken}:3: not valid JSON: ")

    bad = json.dumps({"runtimes": {"data": {"job_config": {"batch_size": 0}}}}, indent="\t")
    invalid = write(tmp_path, bad, "invalid.json")
    assert error_of(invalid) == (
        f"{invalid}:5: runtimes.data.job_config.batch_size: Input should be greater than or equal "
        "to 1 (got 0)"
    )


# -- job_config and sandbox defaults ----------------------------------------------------------------
def test_job_config_defaults_go_under_the_flows_own_keys(runtimes_file: Path) -> None:
    data = get_runtime("data")
    assert data.job_defaults == {"timeout_seconds": 600.0, "max_memory_mb": 4096}
    assert data.network is False
    assert data.read_only_paths == ("/opt/reference-data",)
    assert effective_job_config(data, {"max_memory_mb": 1024, "batch_size": 10}) == {
        "timeout_seconds": 600.0,
        "max_memory_mb": 1024,
        "batch_size": 10,
        "network": False,
    }
    assert effective_job_config(data, {"network": True})["network"] is True


def test_apply_runtime_to_a_validated_config(runtimes_file: Path) -> None:
    reports = get_runtime("reports")
    assert apply_runtime(reports, parse_runtime_config(None)) == parse_runtime_config(None)

    ml = write(runtimes_file.parent, "runtimes:\n  ml:\n    job_config: {timeout_seconds: 900, retries: 2}\n")
    runtime = load_runtimes(ml)["ml"]
    config = parse_runtime_config({"job_config": {"retries": 0}, "country": "NL"})
    merged = apply_runtime(runtime, config)
    assert merged.job_config.timeout_seconds == 900  # the runtime's default
    assert merged.job_config.retries == 0  # the flow's own key, even when it equals the platform default
    assert merged.job_config.batch_size == 1000  # neither set it: the platform default
    assert merged.variables == {"country": "NL"}


def test_an_existing_interpreter_runtime_takes_no_flow_packages(tmp_path: Path) -> None:
    path = write(
        tmp_path, f"runtimes:\n  system:\n    python: {sys.executable}\n  gone:\n    python: /nope/python\n"
    )
    runtimes = load_runtimes(path)
    assert runtimes["system"].checked_python() == sys.executable
    assert _effective(runtimes["system"], None) == []
    with pytest.raises(ByoConfigError, match=r"cannot be added on runtime 'system': it runs the existing"):
        _effective(runtimes["system"], "six==1.16.0")
    with pytest.raises(ByoConfigError, match=rf"runtime 'gone' \({re.escape(str(path))}:4\): python '/nope"):
        runtimes["gone"].checked_python()


# -- a runtime's base package inside the child -------------------------------------------------------
@pytest.mark.venv
def test_a_runtime_base_package_imports_inside_the_child(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, venv_cache: Path
) -> None:
    from airflow_byo.environment import ensure_environment
    from airflow_byo.flow import FlowEnvironment, ResolvedFlow
    from airflow_byo.runner.flow_runner import FlowRunner
    from airflow_byo.storage import Location
    from tests.conftest import RecordingLogger

    path = write(tmp_path, "runtimes:\n  tables:\n    packages: [tabulate==0.9.0]\n")
    monkeypatch.setenv("AIRFLOW__BYO__RUNTIMES", str(path))
    code = textwrap.dedent(
        """
        import tabulate
        def process(file, ctx):
            return {"tabulate": tabulate.__version__, "table": tabulate.tabulate([[file.name]])}
        """
    )
    flow = ResolvedFlow.resolve(code, runtime="tables")
    python = ensure_environment(list(flow.requirements), venv_cache)
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "a.txt").write_text("x")
    source = Location(str(tmp_path / "in"))
    summary = FlowRunner(flow=flow, environment=FlowEnvironment(str(python)), log=RecordingLogger()).run(
        source, Location(str(tmp_path / "out")), source.list_files()
    )
    assert summary.failed == []
    record = json.loads((tmp_path / "out" / "a.jsonl").read_text())
    assert record == {"tabulate": "0.9.0", "table": "-----\na.txt\n-----"}


@pytest.mark.skipif("network" not in JobConfig.model_fields, reason="JobConfig.network (issue #12 item 2)")
def test_the_runtime_network_default_reaches_the_job_config(tmp_path: Path) -> None:
    path = write(tmp_path, "runtimes:\n  api:\n    network: true\n  'off': {}\n")
    api = load_runtimes(path)["api"]
    assert apply_runtime(api, parse_runtime_config(None)).job_config.network is True
    flow_off = parse_runtime_config({"job_config": {"network": False}})
    assert apply_runtime(api, flow_off).job_config.network is False  # the flow's own key wins
    assert apply_runtime(load_runtimes(path)["off"], parse_runtime_config(None)).job_config.network is False

    nested = write(tmp_path, "runtimes:\n  api:\n    job_config: {network: true}\n", "nested.yaml")
    assert error_of(nested) == (
        f"{nested}:2: runtimes.api: job_config.network is set here as the runtime's own 'network' key. "
        "Fix: move it up one level (network: true)"
    )
