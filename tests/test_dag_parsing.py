"""
Asking the dag-processor to parse a flows factory's DAG file now (issue 23), on a real migrated
metadata database: the row is exactly the one Airflow's ``PUT /api/v2/parseDagFile`` inserts.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace

import pytest
import sqlalchemy
from sqlalchemy.orm import Session

from airflow_byo.dag_parsing import bundle_location, factory_dag_files, request_reparse, retire_dag
from airflow_byo.exceptions import ByoConfigError
from airflow_byo.specs import factory_marker
from airflow_byo.specs.factory import build_dags
from tests.specs.test_hostile_specs import VALID

BUNDLE = "flows_bundle"


@pytest.fixture
def dags(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A DAGs folder that is the one configured bundle, with a factory DAG file in a subfolder."""
    folder = tmp_path / "dags"
    (folder / "team" / "flows").mkdir(parents=True)
    (folder / "team" / "byo_flows.py").write_text("# calls build_dags\n")
    bundles = [
        {
            "name": BUNDLE,
            "classpath": "airflow.dag_processing.bundles.local.LocalDagBundle",
            "kwargs": {"path": str(folder)},
        },
        {
            "name": "other",
            "classpath": "airflow.dag_processing.bundles.local.LocalDagBundle",
            "kwargs": {"path": str(tmp_path / "o")},
        },
    ]
    monkeypatch.setenv("AIRFLOW__DAG_PROCESSOR__DAG_BUNDLE_CONFIG_LIST", json.dumps(bundles))
    return folder


@pytest.fixture
def session(migrated_airflow_home: Path) -> Iterator[Session]:
    engine = sqlalchemy.create_engine(f"sqlite:///{migrated_airflow_home / 'airflow.db'}")
    with Session(engine) as opened:
        yield opened
    engine.dispose()


def requests(session: Session) -> list[tuple[str, str, str]]:
    from airflow.models.dagbag import DagPriorityParsingRequest

    rows = session.query(DagPriorityParsingRequest).all()
    return sorted((r.id, r.bundle_name, r.relative_fileloc) for r in rows)


def test_factory_dag_files_reads_the_marker_the_factory_leaves(dags: Path) -> None:
    folder = dags / "team" / "flows"
    assert factory_dag_files(folder) == []  # no factory has parsed it yet
    (folder / "a.yaml").write_text(VALID.replace("name: good", "name: a"))
    build_dags(folder, dag_file=dags / "team" / "byo_flows.py")
    assert factory_dag_files(folder) == [dags / "team" / "byo_flows.py"]
    (folder / factory_marker.MARKER).write_text("{broken")
    assert factory_dag_files(folder) == []


def test_the_request_is_the_one_airflows_parse_dag_file_route_inserts(dags: Path, session: Session) -> None:
    from airflow.api_fastapi.core_api.routes.public.dag_parsing import reparse_dag_file
    from itsdangerous import URLSafeSerializer

    dag_file = dags / "team" / "byo_flows.py"
    secret = "test-secret"
    token = URLSafeSerializer(secret).dumps({"bundle_name": BUNDLE, "relative_fileloc": "team/byo_flows.py"})
    request = SimpleNamespace(app=SimpleNamespace(state=SimpleNamespace(secret_key=secret)))
    reparse_dag_file(token, session, request)  # type: ignore[arg-type]  # Airflow's own route
    session.commit()
    airflows = requests(session)
    session.execute(sqlalchemy.text("DELETE FROM dag_priority_parsing_request"))

    request_reparse(session, dag_file)  # no DAG of the file yet: found through the configured bundles
    session.commit()
    assert requests(session) == airflows
    assert airflows[0][1:] == (BUNDLE, "team/byo_flows.py")

    request_reparse(session, dag_file)  # one still waiting is enough
    session.commit()
    assert requests(session) == airflows


def test_the_dag_rows_of_the_file_name_its_bundle_first(
    dags: Path, session: Session, monkeypatch: pytest.MonkeyPatch
) -> None:
    """What the dag-processor stored for the file wins over the api-server's view of the bundles."""
    from airflow.models.dag import DagModel
    from airflow.models.dagbundle import DagBundleModel

    dag_file = dags / "team" / "byo_flows.py"
    session.add(DagBundleModel(name="git_flows"))
    session.flush()
    session.add(
        DagModel(
            dag_id="a", bundle_name="git_flows", fileloc=str(dag_file), relative_fileloc="x/byo_flows.py"
        )
    )
    session.commit()
    assert bundle_location(session, dag_file) == ("git_flows", "x/byo_flows.py")
    request_reparse(session, dag_file)
    session.commit()
    assert [row[1:] for row in requests(session)] == [("git_flows", "x/byo_flows.py")]


def test_a_dag_file_in_no_bundle_names_the_setting_to_fix(
    dags: Path, session: Session, tmp_path: Path
) -> None:
    outside = tmp_path / "elsewhere" / "byo_flows.py"
    with pytest.raises(ByoConfigError) as raised:
        request_reparse(session, outside)
    assert str(raised.value) == (
        f"the flows factory's DAG file {outside} is in no DAG bundle: no DAG of it is known and no bundle of "
        "[dag_processor] dag_bundle_config_list has a path that holds it. Fix: keep the DAG file that calls "
        "build_dags(...) in a DAG bundle's folder (by default [core] dags_folder)"
    )
    assert requests(session) == []


def test_a_deleted_specs_dag_is_stale_at_once_and_no_other_dag_is(dags: Path, session: Session) -> None:
    """As ``deactivate_stale_dags`` marks it a minute or two later; a DAG of another file stays."""
    from airflow.models.dag import DagModel
    from airflow.models.dagbundle import DagBundleModel

    factory = dags / "team" / "byo_flows.py"
    session.merge(DagBundleModel(name=BUNDLE))
    session.flush()
    for dag_id, fileloc in [("retired_flow", factory), ("hand_written", dags / "hand_written.py")]:
        row = DagModel(dag_id=dag_id, bundle_name=BUNDLE, fileloc=str(fileloc), relative_fileloc="x.py")
        session.add(row)
        row.is_stale = False  # as a parse leaves a DAG its file declares
    session.commit()

    assert retire_dag(session, "retired_flow", [factory]) is True
    assert retire_dag(session, "hand_written", [factory]) is False  # its file is no factory's
    assert retire_dag(session, "retired_flow", [factory]) is False  # already stale
    assert retire_dag(session, "retired_flow", []) is False
    session.commit()
    rows = session.query(DagModel.dag_id, DagModel.is_stale)
    stale = dict(rows.filter(DagModel.dag_id.in_(["retired_flow", "hand_written"])).all())
    assert stale == {"retired_flow": True, "hand_written": False}
