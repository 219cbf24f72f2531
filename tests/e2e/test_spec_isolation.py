"""
Declared flows fail alone, in a real deployment (issue 14).

A valid spec and invalid ones (a schedule typo, an alias bomb) side by side under the real
``airflow dag-processor`` and ``api-server`` on PostgreSQL: the valid flow is listed and a
triggered run succeeds while each invalid spec is an import error of its own
(``GET /api/v2/importErrors``) naming ``file:line: field``; fixing a bad spec brings its DAG in and
clears its error, deleting one clears its error.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from airflow_byo.specs.error_files import error_file_for
from tests.e2e.deployment import Deployment

pytestmark = pytest.mark.e2e

FOLDER = "spec_isolation"  # inside the shared DAGs folder: this test's factory file and specs
FACTORY = f"{FOLDER}/byo_spec_isolation_flows.py"

FACTORY_FILE = '''\
"""Every flow spec of flows/ becomes a DAG (the end-to-end test of issue 14)."""
from pathlib import Path

from airflow_byo.specs.factory import build_dags

globals().update(build_dags(Path(__file__).parent / "flows"))
'''

SPEC = """\
name: {name}
description: issue 14 end-to-end
source:
  type: local
  path: {source}
  include: ["*.csv"]
schedule: {schedule}
processing:
  code: |
    def process(file, ctx):
        with file.open("rb") as handle:
            return handle.read().upper()
destination:
  type: local
  path: {destination}
tags: [e2e]
"""

#: a valid spec but for a few hundred bytes of aliases that expand to 10^9 strings when followed
LAUGHS = "      a: &a [lol, lol, lol, lol, lol, lol, lol, lol, lol]\n" + "".join(
    f"      {name}: &{name} [{', '.join([f'*{prev}'] * 9)}]\n"
    for prev, name in zip("abcdefgh", "bcdefghi", strict=True)
)


def errors_about(deployment: Deployment, spec_file: Path) -> list[dict[str, Any]]:
    return [e for e in deployment.import_errors() if f"{spec_file}:" in e["stack_trace"]]


def test_a_bad_spec_never_takes_the_other_flows_down(deployment: Deployment) -> None:
    data = deployment.root / "spec_isolation_data"
    (data / "in").mkdir(parents=True, exist_ok=True)
    (data / "in" / "a.csv").write_text("id,name\n1,ada\n")
    flows = deployment.dags_folder / FOLDER / "flows"

    def spec(name: str, schedule: str) -> str:
        return SPEC.format(name=name, schedule=schedule, source=data / "in", destination=data / f"out_{name}")

    deployment.write_dag_file(f"{FOLDER}/flows/good.yaml", spec("byo_e2e_spec_good", "manual"))
    deployment.write_dag_file(f"{FOLDER}/flows/bad.yaml", spec("byo_e2e_spec_bad", "hourlly"))
    bomb = spec("byo_e2e_spec_bomb", "manual").replace(
        "destination:", f"  runtime_config:\n    laughs:\n{LAUGHS}destination:"
    )
    deployment.write_dag_file(f"{FOLDER}/flows/bomb.yaml", bomb)
    deployment.write_dag_file(FACTORY, FACTORY_FILE)
    try:
        deployment.wait_for_dag("byo_e2e_spec_good", timeout=120)

        # Each invalid spec: an import error of its own (not of the factory's file), file:line: field
        def both_reported() -> dict[str, str] | None:
            bad, bomb = (
                errors_about(deployment, flows / "bad.yaml"),
                errors_about(deployment, flows / "bomb.yaml"),
            )
            if not (bad and bomb):
                return None
            return {
                "bad": bad[0]["stack_trace"],
                "bomb": bomb[0]["stack_trace"],
                "bad_file": bad[0]["filename"],
                "bomb_file": bomb[0]["filename"],
            }

        reported = deployment.wait_until(both_reported, timeout=120, what="both bad specs reported")
        assert (
            f"{flows}/bad.yaml:7: schedule: 'hourlly' is not a schedule: use one of once, manual"
            in reported["bad"]
        )
        bomb_line = next(n for n, line in enumerate(bomb.splitlines(), 1) if "b: &b" in line)
        assert (
            f"{flows}/bomb.yaml:{bomb_line}: processing.runtime_config.laughs.b.0: YAML aliases (*name) "
            "are not allowed" in reported["bomb"]
        )
        for key in ("bad_file", "bomb_file"):
            assert reported[key].startswith(f"{FOLDER}/byo_spec_errors/"), reported
        assert not [e for e in deployment.import_errors() if e["filename"] == FACTORY]

        # The valid flow stays listed (not stale) and runs, while the bad ones are there.
        assert deployment.dag("byo_e2e_spec_good")["is_stale"] is False  # type: ignore[index]
        assert deployment.dag("byo_e2e_spec_bad") is None
        deployment.unpause("byo_e2e_spec_good")
        run_id = deployment.trigger("byo_e2e_spec_good")
        deployment.wait_for_run("byo_e2e_spec_good", run_id, timeout=300)
        outputs = [p for p in (data / "out_byo_e2e_spec_good").rglob("*") if p.is_file()]
        assert any(b"1,ADA" in p.read_bytes() for p in outputs), outputs

        # Fixing the bad spec brings its DAG in and clears its error; deleting the bomb clears its error.
        deployment.write_dag_file(f"{FOLDER}/flows/bad.yaml", spec("byo_e2e_spec_bad", "hourly"))
        deployment.remove_dag_file(f"{FOLDER}/flows/bomb.yaml")
        deployment.wait_for_dag("byo_e2e_spec_bad", timeout=120)
        deployment.wait_until(
            lambda: (
                not errors_about(deployment, flows / "bad.yaml")
                and not errors_about(deployment, flows / "bomb.yaml")
            ),
            timeout=120,
            what="the fixed and the deleted spec's import errors cleared",
        )
        assert deployment.dag("byo_e2e_spec_good")["is_stale"] is False  # type: ignore[index]
        # Every spec keeps its own DAG file (a valid one's raises nothing), so a spec broken later
        # is reported by a file Airflow already knows; the deleted spec's file is gone.
        kept = sorted(p.name for p in (deployment.dags_folder / FOLDER / "byo_spec_errors").glob("*.py"))
        factory_file = deployment.dags_folder / FACTORY
        names = ("bad.yaml", "good.yaml")
        assert kept == sorted(error_file_for(factory_file, flows, flows / name).name for name in names)
    finally:
        deployment.remove_dag_file(FACTORY)
