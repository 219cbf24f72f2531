"""
What the worker accepts from the child (airflow_byo.runner.child_messages). The child runs the
user's code, so a hostile function can write any line to the protocol stream: each forged or
malformed message must fail only that file, with "the processor sent an invalid message: ...",
never lead to a write outside the destination, and leave the next file to a fresh child.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from airflow_byo.runner.child_messages import (
    MAX_INSIGHT_BYTES,
    MAX_MESSAGE_BYTES,
    MAX_NESTING,
    MAX_NOTIFY_BYTES,
    MAX_OUTPUTS_PER_FILE,
    ProtocolViolation,
    checked_done,
    checked_failure,
    checked_notify,
    checked_seq,
    parse_message,
)
from tests.conftest import RecordingLogger, assert_no_temporaries, published, run_flow

# -- parse_message --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("line", "message"),
    [
        (b"this is not json", "not a JSON object (JSONDecodeError: Expecting value"),
        (b"\xff\xfe{}", "not a JSON object ("),
        (b'{"ev": "done"', "not a JSON object ("),
        (b"[1, 2]", "expected a JSON object, got list"),
        (b'"done"', "expected a JSON object, got str"),
        (b'{"seq": 0}', "unexpected event 'None', expected one of ('done', 'error')"),
        (b'{"ev": "ready"}', "unexpected event 'ready', expected one of ('done', 'error')"),
        (b'{"ev": "' + b"x" * 100 + b'"}', "unexpected event '" + "x" * 40 + "', expected"),
        # Nesting deeper than the parser goes: RecursionError inside json, one file's violation.
        (b"[" * 100_000, "not a JSON object (RecursionError"),
        (b'{"ev": "done", "seq": ' + b"9" * 5000 + b"}", "not a JSON object (ValueError: Exceeds the limit"),
        (b'{"ev": "done", "x": "\xc3\x28"}', "not a JSON object (UnicodeDecodeError"),
    ],
)
def test_malformed_lines_are_violations(line: bytes, message: str) -> None:
    with pytest.raises(ProtocolViolation) as raised:
        parse_message(line, ("done", "error"))
    assert str(raised.value).startswith(message)


def test_an_expected_event_is_returned_as_sent() -> None:
    assert parse_message(b'{"ev": "done", "seq": 3}', ("done",)) == {"ev": "done", "seq": 3}


def test_a_protocol_violation_is_a_value_error() -> None:
    assert issubclass(ProtocolViolation, ValueError)


# -- seq, notify, error ---------------------------------------------------------------------------


def test_an_answer_for_another_file_is_refused() -> None:
    checked_seq({"seq": 4}, 4)
    with pytest.raises(ProtocolViolation, match=r"^answer for file #5 while file #4 was being processed$"):
        checked_seq({"seq": 5}, 4)
    for seq in (True, "4", 4.0, None):
        with pytest.raises(ProtocolViolation, match=r"^field 'seq' must be int, got "):
            checked_seq({"seq": seq}, 4)


def test_notify_fields_are_type_checked_and_texts_capped() -> None:
    good = {"ev": "notify", "seq": 1, "message": "m" * 10_000, "level": "info", "fields": {"a": 1}}
    notify = checked_notify(good)
    assert notify == {**good, "message": "m" * 8000}
    for name, value, kind in [("fields", [1], "list"), ("message", 3, "int"), ("level", None, "NoneType")]:
        with pytest.raises(ProtocolViolation, match=rf"^field '{name}' must be (dict|str), got {kind}$"):
            checked_notify({**good, name: value})


def test_a_failure_report_is_type_checked_and_capped() -> None:
    report = {"ev": "error", "seq": 0, "type": "E" * 300, "message": "boom", "traceback": "tb", "seconds": -1}
    assert checked_failure(report) == {
        "ev": "error",
        "seq": 0,
        "type": "E" * 200,
        "message": "boom",
        "traceback": "tb",
        "seconds": 0.0,
    }
    with pytest.raises(ProtocolViolation, match=r"^field 'seconds' must be int/float, got bool$"):
        checked_failure({**report, "seconds": True})


# -- checked_done ---------------------------------------------------------------------------------


def done(*outputs: dict[str, Any], **fields: Any) -> dict[str, Any]:
    return {
        "ev": "done",
        "seq": 0,
        "seconds": 0.5,
        "outputs": list(outputs),
        "insights": {},
        "counters": {},
    } | fields


def test_output_reports_are_returned_checked() -> None:
    message, previews = checked_done(
        done({"name": "a/x.jsonl", "size": 3, "records": 2}, {"name": "y.bin", "size": 5, "records": None})
    )
    assert message["outputs"] == [
        {"name": "a/x.jsonl", "size": 3, "records": 2},
        {"name": "y.bin", "size": 5, "records": None},
    ]
    assert previews == {}
    assert checked_done(done(seconds=-3))[0]["seconds"] == 0.0
    assert checked_done(done(seconds=float("nan")))[0]["seconds"] == 0.0


@pytest.mark.parametrize(
    ("outputs", "message"),
    [
        (
            [{"name": "../outside/x.txt", "size": 3}],
            "output #0: output name '../outside/x.txt' leaves the destination",
        ),
        ([{"name": "/etc/passwd", "size": 3}], "output #0: output name '/etc/passwd' is absolute"),
        ([{"name": "a/./x", "size": 3}], "output name 'a/./x' is not normalised or not unique"),
        (
            [{"name": "x", "size": 3}, {"name": "x", "size": 5}],
            "output name 'x' is not normalised or not unique",
        ),
        ([{"name": 7, "size": 3}], "field 'name' must be str, got int"),
        (["x"], "output #0 is not an object"),
        ([{"name": "x", "size": "3"}], "field 'size' must be int, got str"),
        ([{"name": "x", "size": -3}], "output 'x': size must be a count"),
        ([{"name": "x", "size": 3, "records": -1}], "output 'x': records must be a count or null"),
        ([{"name": "x", "size": 3, "records": True}], "output 'x': records must be a count or null"),
    ],
)
def test_bad_output_reports_are_violations(outputs: list[Any], message: str) -> None:
    with pytest.raises(ProtocolViolation) as raised:
        checked_done(done(*outputs))
    assert str(raised.value).startswith(message)


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"counters": {"rows": "many"}}, "counter 'rows' is not a number"),
        ({"counters": {"rows": True}}, "counter 'rows' is not a number"),
        ({"counters": []}, "field 'counters' must be dict, got list"),
        ({"insights": "x"}, "field 'insights' must be dict, got str"),
        ({"outputs": {}}, "field 'outputs' must be list, got dict"),
        ({"seconds": "1"}, "field 'seconds' must be int/float, got str"),
    ],
)
def test_bad_done_fields_are_violations(fields: dict[str, Any], message: str) -> None:
    with pytest.raises(ProtocolViolation) as raised:
        checked_done(done(**fields))
    assert str(raised.value) == message


def test_too_many_outputs_are_refused_before_any_is_looked_at() -> None:
    outputs = [{"name": f"{n}", "size": 0} for n in range(MAX_OUTPUTS_PER_FILE + 1)]
    with pytest.raises(ProtocolViolation, match=rf"^{MAX_OUTPUTS_PER_FILE + 1} outputs for one file"):
        checked_done(done(*outputs))


def test_insights_too_deep_or_too_big_are_violations() -> None:
    deep: Any = 1
    for _ in range(MAX_NESTING + 1):
        deep = [deep]
    with pytest.raises(ProtocolViolation, match=rf"^the insights nest deeper than {MAX_NESTING} levels"):
        checked_done(done(insights={"x": deep}))
    big = {"x": "y" * MAX_INSIGHT_BYTES}
    with pytest.raises(ProtocolViolation, match=rf"more than {MAX_INSIGHT_BYTES}: keep insights small"):
        checked_done(done(insights=big))


def test_notify_fields_too_deep_or_too_big_are_replaced_by_a_note() -> None:
    good = {"ev": "notify", "seq": 1, "message": "m", "level": "info"}
    big = checked_notify({**good, "fields": {"blob": "x" * (MAX_NOTIFY_BYTES + 1)}})
    assert big["fields"] == {
        "dropped": f"its fields are {MAX_NOTIFY_BYTES + 13} bytes as JSON, more than {MAX_NOTIFY_BYTES} "
        f"(airflow-byo keeps at most {MAX_NOTIFY_BYTES} bytes per notification)"
    }
    deep: Any = {}
    for _ in range(MAX_NESTING + 5):
        deep = {"d": deep}
    assert "nest deeper than" in checked_notify({**good, "fields": deep})["fields"]["dropped"]


# -- a hostile function in a real child -----------------------------------------------------------

# The processor below finds the child's protocol channel (the worker's end of the original stdout)
# and writes a forged line to it while processing "evil.txt" (file #0), then waits: only the forged
# line can reach the worker. Any other file gets a token of its child as output.
HOSTILE = """
import gc, json, os, time

CHILD = os.urandom(8).hex()  # one per child process (pids repeat in a sandbox's pid namespace)

def forge(line):
    [channel] = [o for o in gc.get_objects() if type(o).__name__ == "_Channel"]
    channel._stream.write(line + "\\n")
    channel._stream.flush()

def done(*outputs, seq=0):
    return json.dumps(
        {"ev": "done", "seq": seq, "seconds": 0.1, "outputs": list(outputs), "insights": {}, "counters": {}}
    )

def process(file, ctx):
    if file.name != "evil.txt":
        return CHILD
    ctx.log.warning("evil child %s", CHILD)
    prefix, secret, outside = ctx._output_prefix, ctx.variables["secret"], ctx.variables["outside"]
    ATTACK
    time.sleep(60)
"""

ATTACKS = {
    "escaping name": (
        'ctx.write("x.txt", "pwned"); forge(done({"name": "../outside/x.txt", "size": 5}))',
        "output #0: output name '../outside/x.txt' leaves the destination",
    ),
    "absolute name": (
        'ctx.write("x.txt", "pwned"); forge(done({"name": outside + "/abs.txt", "size": 5}))',
        "output #0: output name '/",
    ),
    "symlink to a worker file": (
        'os.symlink(secret, prefix + "-00000"); '
        'forge(done({"name": "x.txt", "size": ctx.variables["secret_size"]}))',
        "output 'x.txt' is not a regular file (a symlink)",
    ),
    "size that lies": (
        'ctx.write("x.txt", "abc"); forge(done({"name": "x.txt", "size": 999}))',
        "output 'x.txt': reported 999 bytes, wrote 3",
    ),
    "output never written": (
        'forge(done({"name": "x.txt", "size": 3}))',
        "output 'x.txt' was reported but not written",
    ),
    "not JSON": ('forge("this is not json")', "not a JSON object (JSONDecodeError: Expecting value"),
    "nesting deeper than the parser goes": ('forge("[" * 100000)', "not a JSON object (RecursionError"),
    "a number of 5000 digits": (
        'forge(\'{"ev": "done", "seq": \' + "9" * 5000 + "}")',
        "not a JSON object (ValueError: Exceeds the limit",
    ),
    "invalid UTF-8": (
        'channel = [o for o in gc.get_objects() if type(o).__name__ == "_Channel"][0]; '
        'channel._stream.flush(); os.write(channel._stream.fileno(), b\'{"ev": "done", "x": "\\xff"}\\n\')',
        "not a JSON object (UnicodeDecodeError",
    ),
    "wrong seq": ("forge(done(seq=5))", "answer for file #5 while file #0 was being processed"),
    "line too long": (
        f'forge("x" * {2 * MAX_MESSAGE_BYTES})',
        f"a message longer than {MAX_MESSAGE_BYTES} bytes",
    ),
    "notify with non-dict fields": (
        'forge(json.dumps({"ev": "notify", "seq": 0, "message": "m", "level": "info", "fields": [1]}))',
        "field 'fields' must be dict, got list",
    ),
    "unexpected event": (
        'forge(json.dumps({"ev": "ready", "python": "3", "executable": "x"}))',
        "unexpected event 'ready', expected one of ('notify', 'done', 'error')",
    ),
}


@pytest.mark.parametrize("attack", list(ATTACKS))
def test_a_forged_message_fails_only_that_file_and_writes_nothing_outside(
    tmp_path: Path, attack: str
) -> None:
    code, message = ATTACKS[attack]
    secret = tmp_path / "secret.txt"
    secret.write_text("the worker's secret")
    outside = tmp_path / "outside"
    log = RecordingLogger()
    summary, out = run_flow(
        tmp_path,
        HOSTILE.replace("ATTACK", code),
        {"evil.txt": "", "next.txt": ""},
        {
            "secret": str(secret),
            "secret_size": secret.stat().st_size,
            "outside": str(outside),
            # a refused message kills the child at once; the timeout only stops a failing test
            "job_config": {"output_format": "text", "timeout_seconds": 20},
        },
        log=log,
    )
    [failed] = summary.failed
    assert failed.url.endswith("evil.txt")
    assert failed.error_type == "ProtocolError"
    assert failed.error.startswith(f"the processor sent an invalid message: {message}")
    # The next file was processed, by a fresh child: the lying one was killed.
    [evil_child] = re.findall(r"evil child (\w+)", log.text)
    assert list(published(out)) == ["next.txt"]
    assert published(out)["next.txt"] != evil_child
    assert summary.as_dict()["files_processed"] == 1
    # Nothing was written outside the destination, and the worker's file is untouched.
    assert not outside.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in", "out", "secret.txt"]
    assert secret.read_text() == "the worker's secret"
    assert_no_temporaries(out)


def test_a_valid_message_just_over_the_limit_is_refused(tmp_path: Path) -> None:
    forged = (
        'forge(json.dumps({"ev": "notify", "seq": 0, "level": "info", "fields": {}, '
        f'"message": "m" * {MAX_MESSAGE_BYTES}}}))'
    )
    summary, _ = run_flow(
        tmp_path,
        HOSTILE.replace("ATTACK", forged),
        {"evil.txt": "", "next.txt": ""},
        {"secret": "", "outside": "", "job_config": {"output_format": "text", "timeout_seconds": 5}},
    )
    [failed] = summary.failed
    too_long = f"a message longer than {MAX_MESSAGE_BYTES} bytes"
    assert failed.error == f"the processor sent an invalid message: {too_long}"
