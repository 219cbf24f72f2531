"""`airflow byo runtimes list | pull | prune` (issue 25) as real subprocesses: what is cached, per digest."""

from __future__ import annotations

import json
import os
import textwrap
from pathlib import Path

import pytest

from airflow_byo.runner import sandbox_mode
from tests.conftest import run_airflow
from tests.images.helpers import ImageSet

pytest_plugins = ["tests.images.fixtures"]  # shared fixtures

pytestmark = pytest.mark.skipif(not sandbox_mode.bubblewrap_status()[0], reason="needs a working bubblewrap")

DAG = """
from airflow.sdk import DAG
from airflow_byo.operators.byo_flow import ByoFlowOperator

with DAG("byo_image_flows", schedule=None):
    ByoFlowOperator(task_id="reverse", source="{source}", destination="{destination}",
                    processor="def process(file, ctx):\\n    return None\\n", runtime="tools-bare")
"""


@pytest.fixture
def env(tmp_path: Path, migrated_airflow_home: Path, test_images: ImageSet) -> dict[str, str]:
    runtimes = {
        "tools-bare": {"image": test_images.reference("py312")},
        "plain": {"packages": ["six==1.16.0"]},
    }
    (tmp_path / "runtimes.json").write_text(json.dumps({"runtimes": runtimes}))
    dags = tmp_path / "dags"
    dags.mkdir()
    (dags / "image_flows.py").write_text(DAG.format(source=tmp_path / "in", destination=tmp_path / "out"))
    return os.environ | {
        "AIRFLOW_HOME": str(migrated_airflow_home),
        "AIRFLOW__CORE__DAGS_FOLDER": str(dags),
        "AIRFLOW__BYO__RUNTIMES": str(tmp_path / "runtimes.json"),
        "AIRFLOW__BYO__IMAGE_CACHE_PATH": str(tmp_path / "images"),
    }


def test_list_pull_and_prune_show_and_manage_the_cache(
    tmp_path: Path, env: dict[str, str], test_images: ImageSet
) -> None:
    reserialized = run_airflow("dags", "reserialize", env=env)
    assert reserialized.returncode == 0, reserialized.stderr[-2000:]
    before = run_airflow("byo", "runtimes", "list", env=env)
    assert before.returncode == 0, before.stderr[-2000:]
    assert "runtime=tools-bare  kind=image" in before.stdout
    assert "cached=no (pulled on first use)" in before.stdout
    assert "flows=byo_image_flows.reverse" in before.stdout
    assert "runtime=plain  kind=virtualenv  packages=six==1.16.0" in before.stdout
    assert "(no images cached)" in before.stdout

    pulled = run_airflow("byo", "runtimes", "pull", "-o", "json", env=env)
    assert pulled.returncode == 0, pulled.stderr[-2000:]
    (row,) = json.loads(pulled.stdout)
    assert (row["runtime"], row["digest"]) == ("tools-bare", test_images.digests["py312"])
    assert row["python"].startswith("/usr/local/bin/python3 (3.")

    listing = json.loads(run_airflow("byo", "runtimes", "list", "-o", "json", env=env).stdout)
    (image,) = listing["images"]
    assert image["digest"] == test_images.digests["py312"]
    assert image["size_mb"] > 10
    assert (image["runtimes"], image["flows"]) == ("tools-bare", "byo_image_flows.reverse")

    kept = json.loads(run_airflow("byo", "runtimes", "prune", "-o", "json", env=env).stdout)
    assert kept["kept (pinned by a runtime)"] == [test_images.digests["py312"]]
    assert kept["removed"] == "none"
    (tmp_path / "runtimes.json").write_text(json.dumps({"runtimes": {}}))  # no runtime pins it now
    removed = json.loads(run_airflow("byo", "runtimes", "prune", "-o", "json", env=env).stdout)
    assert removed["removed"] == [test_images.digests["py312"]]
    assert removed["freed_mb"] == image["size_mb"]
    assert list((tmp_path / "images").glob("sha256-*/")) == []


def test_pull_names_the_image_runtimes_when_given_another(env: dict[str, str]) -> None:
    result = run_airflow("byo", "runtimes", "pull", "plain", env=env)
    assert result.returncode == 1
    assert (
        textwrap.dedent("""\
        error: 'plain' is not an image runtime (image runtimes: tools-bare). Fix: name one of those""")
        in result.stderr
    )
