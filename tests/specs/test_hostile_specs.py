"""
One bad spec file never takes the others down, and costs milliseconds (issue 14).

A folder holds one file of each hostile kind beside a valid spec. The factory loads the valid
flow, gives each bad file its own message (the same one ``airflow byo validate`` prints and the
file's error DAG file raises), and stays bounded in time and memory.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from airflow_byo.exceptions import ByoConfigError, ByoFlowSpecError
from airflow_byo.specs.factory import collect_flows, load_flow
from airflow_byo.specs.loader import find_specs, load_spec, read_spec
from tests.conftest import run_airflow as airflow

VALID = """\
name: good
source:
  type: local
  path: /data/in
processing:
  code: |
    def process(file, ctx):
        return "x"
destination:
  type: local
  path: /data/out
"""

#: a valid spec but for a few hundred bytes of aliases that expand to 10^9 strings when followed
#: (the old loader called it valid; building and serializing the DAG then took minutes and GBs)
LAUGHS = "      a: &a [lol, lol, lol, lol, lol, lol, lol, lol, lol]\n" + "".join(
    f"      {name}: &{name} [{', '.join([f'*{prev}'] * 9)}]\n"
    for prev, name in zip("abcdefgh", "bcdefghi", strict=True)
)
BOMB = VALID.replace("name: good", "name: bomb").replace(
    "destination:", f"  runtime_config:\n    laughs:\n{LAUGHS}destination:"
)

#: file name -> the start of its one message (after ``<folder>/``)
HOSTILE: dict[str, str] = {
    "bomb.yaml": "bomb.yaml:12: processing.runtime_config.laughs.b.0: YAML aliases (*name) are not allowed",
    "huge.yaml": "huge.yaml: (file): 52,428,800 bytes is over [byo] max_spec_bytes (1,048,576 bytes), "
    "so the file was not read. Fix: ",
    "latin1.yaml": "latin1.yaml:1: (file): not UTF-8 text: byte 0xe9 at column 10 cannot be decoded. "
    "Fix: save the file as UTF-8",
    "list.yaml": "list.yaml:1: (document): the document is a list, not a mapping. Fix: ",
    "scalar.yaml": "scalar.yaml:1: (document): the document is a single value ('just a string'), "
    "not a mapping. Fix: ",
    "empty.yaml": "empty.yaml:1: (document): the file is empty (or only comments). Fix: ",
    "python_tag.yaml": "python_tag.yaml:1: name: the tag !!python/object/apply:os.system is not allowed",
    "duplicate.yaml": "duplicate.yaml:12: name: duplicate key (first given on line 1). Fix: keep one",
}


def hostile_folder(folder: Path, *, valid: int = 1) -> Path:
    """``valid`` good specs and one file of each hostile kind."""
    folder.mkdir(parents=True, exist_ok=True)
    for index in range(valid):
        name = "good" if index == 0 else f"good_{index}"
        (folder / f"{name}.yaml").write_text(VALID.replace("name: good", f"name: {name}"))
    (folder / "bomb.yaml").write_text(BOMB)
    with open(folder / "huge.yaml", "wb") as handle:  # 50 MB, sparse: instant to make, never read
        handle.truncate(50 * 1024 * 1024)
    (folder / "latin1.yaml").write_bytes(b"name: caf\xe9\n")
    (folder / "list.yaml").write_text("- name: a\n- name: b\n")
    (folder / "scalar.yaml").write_text("just a string\n")
    (folder / "empty.yaml").write_text("")
    (folder / "python_tag.yaml").write_text(
        "name: !!python/object/apply:os.system ['touch /tmp/byo-pwned']\n" + VALID.split("\n", 1)[1]
    )
    (folder / "duplicate.yaml").write_text(VALID.replace("name: good", "name: dup") + "name: dup2\n")
    return folder


def test_the_valid_flow_loads_and_each_bad_file_has_its_own_message(tmp_path: Path) -> None:
    folder = hostile_folder(tmp_path / "flows")
    collection = collect_flows(find_specs(folder))
    assert list(collection.dags) == ["byo_flow__good"]
    assert {path.name for path in collection.problems} == set(HOSTILE)
    for name, start in HOSTILE.items():
        assert collection.problems[folder / name].startswith(f"{folder}/{start}"), name
    assert not Path("/tmp/byo-pwned").exists()


def test_each_bad_file_is_refused_by_the_one_loader(tmp_path: Path) -> None:
    folder = hostile_folder(tmp_path / "flows")
    for name, start in HOSTILE.items():
        with pytest.raises(ByoFlowSpecError) as raised:
            load_spec(folder / name)  # what `airflow byo test --spec` and functions delete read with
        assert str(raised.value).startswith(f"{folder}/{start}"), name


def test_parsing_the_hostile_folder_is_bounded_in_time_and_memory(tmp_path: Path) -> None:
    """A safety bound, not a benchmark (bench S2 has the figures): measured in a fresh process."""
    folder = hostile_folder(tmp_path / "flows")
    script = textwrap.dedent(
        f"""
        import json, time
        from airflow_byo.specs.factory import collect_flows
        from airflow_byo.specs.loader import find_specs
        started = time.perf_counter()
        collection = collect_flows(find_specs({str(folder)!r}))
        # VmHWM, not getrusage's ru_maxrss: that one keeps the peak of the process that forked
        # this one (a pytest worker of 500 MB made this test fail)
        status = dict(line.split(":", 1) for line in open("/proc/self/status"))
        print(json.dumps({{
            "seconds": time.perf_counter() - started,
            "peak_mb": int(status["VmHWM"].split()[0]) / 1024,
            "dags": sorted(collection.dags), "problems": len(collection.problems),
        }}))
        """
    )
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120, env=os.environ.copy()
    )
    assert result.returncode == 0, result.stderr[-2000:]
    figures = json.loads(result.stdout.splitlines()[-1])
    assert figures["dags"] == ["byo_flow__good"]
    assert figures["problems"] == len(HOSTILE)
    assert figures["seconds"] < 10
    assert figures["peak_mb"] < 500


def test_airflow_byo_validate_gives_the_factorys_message_for_each_file(tmp_path: Path) -> None:
    folder = hostile_folder(tmp_path / "flows")
    factory = collect_flows(find_specs(folder)).problems
    result = airflow("byo", "validate", str(folder), env=os.environ.copy())
    assert result.returncode == 1, result.stdout + result.stderr
    printed = result.stdout.rstrip("\n").split("\nINVALID ")
    assert printed[0] == f"ok      {folder / 'good.yaml'} (good)"
    assert sorted(printed[1:]) == sorted(factory.values())
    assert f"{len(HOSTILE)} of {len(HOSTILE) + 1} spec file(s) invalid" in result.stderr
    alone = airflow("byo", "validate", str(folder / "bomb.yaml"), env=os.environ.copy())  # a file, too
    assert alone.stdout.strip() == f"INVALID {factory[folder / 'bomb.yaml']}"


# -- checks met only when building the DAG, at the spec's own lines -----------------------------------


def line_of(text: str, needle: str) -> int:
    return next(n for n, line in enumerate(text.splitlines(), 1) if needle in line)


def test_custom_code_kwargs_the_function_does_not_take_name_file_and_line(tmp_path: Path) -> None:
    text = VALID.replace(
        "destination:", "  runtime_config:\n    custom_code:\n      kwargs: {country: NL}\ndestination:"
    )
    path = tmp_path / "kw.yaml"
    path.write_text(text)
    with pytest.raises(ByoFlowSpecError) as raised:
        load_flow(path)
    message = str(raised.value)
    assert message.startswith(
        f"{path}:{line_of(text, 'kwargs:')}: processing.runtime_config.custom_code.kwargs: processor "
        "process(file, ctx) cannot be called as process(file, ctx, **kwargs)"
    )
    assert "got an unexpected keyword argument 'country'" in message
    assert ". Fix: " in message


def test_custom_code_args_the_function_does_not_take_name_file_and_line(tmp_path: Path) -> None:
    text = VALID.replace("destination:", "  runtime_config:\n    custom_code: {args: [1, 2]}\ndestination:")
    path = tmp_path / "args.yaml"
    path.write_text(text)
    with pytest.raises(
        ByoFlowSpecError,
        match=rf"args\.yaml:{line_of(text, 'args:')}: processing\.runtime_config\.custom_code\.args: "
        r"processor process\(file, ctx\) cannot be called .*too many positional arguments",
    ):
        load_flow(path)


def test_syntax_error_in_inline_code_points_at_the_spec_line(tmp_path: Path) -> None:
    text = VALID.replace('return "x"', 'return "x" +')
    path = tmp_path / "syntax.yaml"
    path.write_text(text)
    with pytest.raises(
        ByoFlowSpecError,
        match=rf"syntax\.yaml:{line_of(text, 'return')}: processing\.code: syntax error in processor code",
    ):
        load_flow(path)


def test_unknown_library_function_names_file_and_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AIRFLOW__BYO__FUNCTION_LIBRARY", str(tmp_path / "library"))
    text = VALID.replace(
        '  code: |\n    def process(file, ctx):\n        return "x"\n', "  function: nope@1\n"
    )
    path = tmp_path / "lib.yaml"
    path.write_text(text)
    with pytest.raises(
        ByoFlowSpecError,
        match=rf"lib\.yaml:{line_of(text, 'function:')}: processing\.function: library function 'nope' "
        r"does not exist .*\. Fix: save it with `airflow byo functions save`",
    ):
        load_flow(path)


def test_two_specs_with_one_name_keep_the_first(tmp_path: Path) -> None:
    (tmp_path / "a.yaml").write_text(VALID)
    (tmp_path / "b.yaml").write_text(VALID)
    collection = collect_flows(find_specs(tmp_path))
    assert list(collection.dags) == ["byo_flow__good"]
    assert collection.problems == {
        tmp_path / "b.yaml": f"{tmp_path}/b.yaml:1: name: 'good' is already the name of "
        f"{tmp_path}/a.yaml. Fix: rename one of them"
    }


# -- the bounds themselves --------------------------------------------------------------------------


def test_max_spec_bytes_is_read_from_the_byo_section(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "a.yaml"
    path.write_text(VALID)
    monkeypatch.setenv("AIRFLOW__BYO__MAX_SPEC_BYTES", "100")
    with pytest.raises(
        ByoFlowSpecError, match=rf"a\.yaml: \(file\): {len(VALID)} bytes is over .* \(100 bytes\)"
    ):
        read_spec(path)
    monkeypatch.setenv("AIRFLOW__BYO__MAX_SPEC_BYTES", "lots")
    with pytest.raises(ByoConfigError, match=r"\[byo\] max_spec_bytes must be a positive number of bytes"):
        read_spec(path)
    monkeypatch.setenv("AIRFLOW__BYO__MAX_SPEC_BYTES", str(len(VALID)))
    assert read_spec(path).data["name"] == "good"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("base: &b {type: local}\nsource: *b\n", r"x\.yaml:2: source: YAML aliases"),
        ("base: &b {type: local}\nsource: {<<: *b, path: /in}\n", r"x\.yaml:2: source\.<<: YAML aliases"),
        ("name: !custom x\n", r"x\.yaml:1: name: the tag !custom is not allowed"),
        ("name: !!binary aGVsbG8=\n", r"x\.yaml:1: name: the tag !!binary is not allowed"),
        (
            "a: 1\n---\nb: 2\n",
            r"x\.yaml:2: \(document\): not valid YAML/JSON: expected a single document in the stream "
            r"but found another",
        ),
        ("name: [unclosed\n", r"x\.yaml:2: \(document\): not valid YAML/JSON"),
        ("# only a comment\n", r"x\.yaml:1: \(document\): the file is empty \(or only comments\)"),
        ("~\n", r"x\.yaml:1: \(document\): the document is null, not a mapping"),
        ("a:\n" + "".join("  " * n + f"  k{n}:\n" for n in range(1, 40)), r"nested more than 32 levels deep"),
        ('{"name": "a", "name": "b"}', r"x\.yaml:1: name: duplicate key \(first given on line 1\)"),
    ],
)
def test_yaml_features_flow_specs_do_not_take(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "x.yaml"
    path.write_text(text)
    with pytest.raises(ByoFlowSpecError, match=message):
        read_spec(path)


def test_a_utf8_bom_and_json_are_fine(tmp_path: Path) -> None:
    path = tmp_path / "a.json"
    path.write_bytes("\ufeff".encode() + json.dumps({"name": "a", "k": ["é"]}).encode())
    assert read_spec(path).data == {"name": "a", "k": ["é"]}
