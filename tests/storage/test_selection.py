"""File selection (airflow_byo.storage.selection): which files a flow takes, and its argument checks."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest

from airflow_byo.exceptions import ByoConfigError
from airflow_byo.scratch import TEMP_MARKER
from airflow_byo.storage import FileFilter, parse_datetime


def test_globs_match_the_relative_path_or_the_bare_name() -> None:
    csv = FileFilter(include="*.csv")
    assert csv.include == ("*.csv",)
    assert csv.matches("a.csv", 1, None)
    assert csv.matches("2024/05/a.csv", 1, None)
    assert not csv.matches("a.json", 1, None)
    nested = FileFilter(include=("2024/*",), exclude=("*.tmp", "2024/skip/*"))
    assert nested.matches("2024/a.csv", 1, None)
    assert not nested.matches("2025/a.csv", 1, None)
    assert not nested.matches("2024/a.tmp", 1, None)
    assert not nested.matches("2024/skip/a.csv", 1, None)
    assert FileFilter(include=("*.CSV",)).matches("a.csv", 1, None) is False  # case-sensitive


def test_our_temporary_names_are_never_selected() -> None:
    assert not FileFilter().matches(f"{TEMP_MARKER}abc-a.csv", 1, None)
    assert not FileFilter().matches(f"{TEMP_MARKER}outputs/000000-00000", 1, None)


def test_sizes_are_inclusive_bounds() -> None:
    between = FileFilter(min_size=10, max_size=20)
    assert [size for size in (9, 10, 20, 21) if between.matches("a", size, None)] == [10, 20]
    assert FileFilter(min_size=0, max_size=0).matches("empty", 0, None)


def test_modified_after_is_strict_and_needs_an_mtime() -> None:
    cutoff = datetime(2024, 5, 1, tzinfo=UTC)
    selection = FileFilter(modified_after=cutoff)
    assert selection.matches("a", 1, cutoff.timestamp() + 1)
    assert not selection.matches("a", 1, cutoff.timestamp())
    assert not selection.matches("a", 1, None)  # a store without mtimes cannot prove it is newer


def test_datetimes_from_templates_and_naive_ones_are_utc() -> None:
    assert parse_datetime("2024-05-01T00:00:00", "f") == datetime(2024, 5, 1, tzinfo=UTC)
    plus_two = timezone(timedelta(hours=2))
    assert parse_datetime("2024-05-01T02:00:00+02:00", "f") == datetime(2024, 5, 1, 2, tzinfo=plus_two)
    assert parse_datetime(datetime(2024, 5, 1), "f") == datetime(2024, 5, 1, tzinfo=UTC)
    assert parse_datetime("", "f") is None
    assert parse_datetime(None, "f") is None
    assert FileFilter(modified_after="2024-05-01").modified_after == datetime(2024, 5, 1, tzinfo=UTC)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"include": [""]}, "include must be a glob or a list of globs such as ['*.csv'], got ('',)"),
        ({"exclude": [3]}, "exclude must be a glob or a list of globs such as ['*.csv'], got (3,)"),
        ({"min_size": -1}, "min_size must be a number of bytes >= 0, got -1"),
        ({"max_size": "10"}, "max_size must be a number of bytes >= 0, got '10'"),
        ({"min_size": 5, "max_size": 4}, "min_size (5) is larger than max_size (4)"),
        (
            {"modified_after": "yesterday"},
            "modified_after 'yesterday' is not an ISO date/time such as '2024-05-01T00:00:00+00:00'",
        ),
    ],
)
def test_bad_selections_are_named(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(ByoConfigError) as raised:
        FileFilter(**kwargs)  # type: ignore[arg-type]
    assert str(raised.value) == message


def test_to_kwargs_is_plain_json_and_round_trips() -> None:
    import json

    selection = FileFilter(
        include=("*.csv", "*.tsv"),
        exclude="tmp/*",
        recursive=False,
        modified_after="2024-05-01T00:00:00+00:00",
        min_size=1,
        max_size=99,
    )
    kwargs = selection.to_kwargs()
    assert kwargs == {
        "include": ["*.csv", "*.tsv"],
        "exclude": ["tmp/*"],
        "recursive": False,
        "modified_after": "2024-05-01T00:00:00+00:00",
        "min_size": 1,
        "max_size": 99,
    }
    assert FileFilter(**json.loads(json.dumps(kwargs))) == selection


def test_follow_symlinks_is_a_strict_boolean_and_round_trips() -> None:
    assert "follow_symlinks" not in FileFilter().to_kwargs()
    trusted = FileFilter(follow_symlinks=True)
    assert FileFilter(**trusted.to_kwargs()) == trusted
    with pytest.raises(ByoConfigError, match="follow_symlinks must be true or false, got 'yes'"):
        FileFilter(follow_symlinks="yes")  # type: ignore[arg-type]
