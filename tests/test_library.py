"""The function library: saving the same function again keeps its version."""

from __future__ import annotations

import json

from airflow_byo import library

CODE = "def process(file, ctx):\n    return 1\n"


def test_saving_identical_code_returns_the_latest_version_unchanged(tmp_path):
    first = library.save("clean", CODE, packages="unidecode==1.3.8", description="v1", root=tmp_path)
    assert (first.ref, first.unchanged) == ("clean@1", False)
    again = library.save(
        "clean", CODE, packages=["unidecode==1.3.8"], description="other words", root=tmp_path
    )
    assert (again.ref, again.unchanged, again.description) == ("clean@1", True, "v1")
    assert library.list_functions(tmp_path) == {"clean": [1]}
    assert "unchanged" not in json.loads((tmp_path / "clean" / "v1.json").read_text())  # never stored
    assert not library.get("clean", root=tmp_path).unchanged
    # any of code, function name, packages or runtime changed: a new version
    changes = [
        {"code": CODE.replace("1", "2")},
        {"function_name": "run", "code": CODE.replace("process", "run")},
        {"packages": None},
    ]
    for number, change in enumerate(changes, start=2):
        arguments = {"code": CODE, "packages": "unidecode==1.3.8"} | change
        entry = library.save("clean", arguments.pop("code"), root=tmp_path, **arguments)
        assert (entry.version, entry.unchanged) == (number, False), change
    # the same as an older version but not the latest: a new version too
    assert library.save("clean", CODE, packages="unidecode==1.3.8", root=tmp_path).version == 5
