"""
Seconds, not minutes (issue 23), on the real deployment (dag-processor, api-server, PostgreSQL).

A spec saved the way the page's Save does (the spec file, then
:func:`airflow_byo.dag_parsing.request_reparse` of the factory's DAG file the marker names) is
listed paused, and the dag-processor took the request; a spec then turned invalid in place (as a
``git pull`` does, no request) shows its import error through the DAG file that already existed for
it: no new DAG file appears. The bounds are bounds on waiting, not measurements (bench E1/E2 has
the figures, with Airflow's default intervals).
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
import sqlalchemy
from sqlalchemy.orm import Session

from airflow_byo.dag_parsing import factory_dag_files, request_reparse
from airflow_byo.specs.error_files import ERRORS_DIR, error_file_for
from tests.e2e.deployment import Deployment
from tests.e2e.test_spec_isolation import FACTORY_FILE, SPEC  # the same one-line factory, a small spec

pytestmark = pytest.mark.e2e

FOLDER = "spec_latency"  # inside the shared DAGs folder: this test's factory file and specs
FACTORY = f"{FOLDER}/byo_spec_latency_flows.py"


@contextmanager
def metadata_session(deployment: Deployment) -> Iterator[Session]:
    """A session on the deployment's metadata database, as the api-server has one."""
    url = f"postgresql+psycopg2://postgres@127.0.0.1:5432/{deployment.metadata_db}"
    engine = sqlalchemy.create_engine(url, poolclass=sqlalchemy.pool.NullPool)
    try:
        with Session(engine) as session:
            yield session
    finally:
        engine.dispose()


def pending_requests(deployment: Deployment) -> list[str]:
    with metadata_session(deployment) as session:
        query = "SELECT relative_fileloc FROM dag_priority_parsing_request"
        return [row[0] for row in session.execute(sqlalchemy.text(query))]


def test_a_saved_spec_is_listed_paused_and_a_broken_one_reported_by_its_known_file(
    deployment: Deployment,
) -> None:
    data = deployment.root / "spec_latency_data"
    flows = deployment.dags_folder / FOLDER / "flows"
    factory_file = deployment.dags_folder / FACTORY

    def spec(name: str, schedule: str = "manual") -> str:
        return SPEC.format(name=name, schedule=schedule, source=data / "in", destination=data / "out")

    deployment.write_dag_file(f"{FOLDER}/flows/first.yaml", spec("byo_e2e_latency_first"))
    deployment.write_dag_file(FACTORY, FACTORY_FILE)
    try:
        deployment.wait_for_dag("byo_e2e_latency_first", timeout=120)
        assert factory_dag_files(flows) == [factory_file]  # the factory's marker, as the page reads it

        # Save: the spec file, then the priority parsing request for the factory's DAG file
        saved = deployment.write_dag_file(f"{FOLDER}/flows/saved.yaml", spec("byo_e2e_latency_saved"))
        with metadata_session(deployment) as session:
            request_reparse(session, factory_file)
            query = "SELECT bundle_name, relative_fileloc FROM dag_priority_parsing_request"
            assert ("dags-folder", FACTORY) in session.execute(sqlalchemy.text(query)).all()
            session.commit()
        dag = deployment.wait_for_dag("byo_e2e_latency_saved", timeout=60)
        assert dag["is_paused"] is True
        deployment.wait_until(
            lambda: FACTORY not in pending_requests(deployment), timeout=30, what="the request taken"
        )

        # Turned invalid in place (no page, no request): the spec's own file, known before, reports it
        generated = error_file_for(factory_file, flows, saved)
        deployment.wait_until(generated.is_file, timeout=60, what=f"{generated} written by the factory")
        before = sorted((deployment.dags_folder / FOLDER / ERRORS_DIR).glob("*.py"))
        assert generated in before
        deployment.write_dag_file(f"{FOLDER}/flows/saved.yaml", spec("byo_e2e_latency_saved", "hourlly"))

        def reported() -> dict[str, str] | None:
            found = [e for e in deployment.import_errors() if f"{saved}:" in e["stack_trace"]]
            return found[0] if found else None

        error = deployment.wait_until(reported, timeout=120, what="the broken spec's import error")
        assert error["filename"] == f"{FOLDER}/{ERRORS_DIR}/{generated.name}"
        assert f"{saved}:7: schedule: 'hourlly' is not a schedule" in error["stack_trace"]
        assert sorted((deployment.dags_folder / FOLDER / ERRORS_DIR).glob("*.py")) == before  # no new file
        deployment.wait_until(
            lambda: (deployment.dag("byo_e2e_latency_saved") or {"is_stale": True})["is_stale"],
            timeout=120,
            what="the broken spec's DAG gone",
        )
        assert deployment.dag("byo_e2e_latency_first")["is_stale"] is False  # type: ignore[index]
    finally:
        shutil.rmtree(deployment.dags_folder / FOLDER, ignore_errors=True)
