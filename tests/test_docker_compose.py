"""
docker-compose.yaml cannot run here (no Docker), so check what can be checked: it parses, runs the
services and images it promises, and defines exactly the connections the example DAGs use,
pointing at services that exist, with credentials the servers are given.
"""

from __future__ import annotations

import json
import re
from typing import Any
from urllib.parse import urlparse

import pytest
import yaml

from tests.conftest import ROOT

CONN_TYPES = {"sftp": "sftp", "s3": "aws"}


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return yaml.safe_load((ROOT / "docker-compose.yaml").read_text())


@pytest.fixture(scope="module")
def airflow_env(compose: dict[str, Any]) -> dict[str, str]:
    return compose["services"]["airflow-worker"]["environment"]


def test_services_and_images(compose: dict[str, Any]) -> None:
    services = compose["services"]
    for name in (
        "airflow-apiserver",
        "airflow-scheduler",
        "airflow-dag-processor",
        "airflow-triggerer",
        "airflow-worker",
        "postgres",
        "redis",
        "minio",
        "sftp",
    ):
        assert name in services, name
    assert services["postgres"]["image"].startswith("postgres:")
    assert services["redis"]["image"].startswith("redis:")
    assert services["minio"]["image"].startswith("minio/minio")
    assert services["sftp"]["image"].startswith("atmoz/sftp")
    dockerfile = services["airflow-worker"]["build"]["dockerfile_inline"]
    assert re.search(r"^FROM apache/airflow:3\.3\.\d+-python3\.11$", dockerfile, re.M)
    assert '"/opt/airflow-byo[s3,sftp]"' in dockerfile
    assert re.search(r"apt-get install -y --no-install-recommends bubblewrap", dockerfile)  # the sandbox
    assert "seccomp=unconfined" in services["airflow-worker"]["security_opt"]  # namespaces allowed
    commands = {name: services[name].get("command") for name in services if name.startswith("airflow-")}
    assert commands["airflow-apiserver"] == "api-server"
    assert commands["airflow-dag-processor"] == "dag-processor"
    assert commands["airflow-triggerer"] == "triggerer"
    assert commands["airflow-worker"] == "celery worker"


def test_celery_postgres_and_paused_dags(airflow_env: dict[str, str]) -> None:
    assert airflow_env["AIRFLOW__CORE__EXECUTOR"] == "CeleryExecutor"
    assert airflow_env["AIRFLOW__CELERY__BROKER_URL"].startswith("redis://")
    assert "@postgres/" in airflow_env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"]
    assert airflow_env["AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION"] == "true"


def test_examples_are_mounted(compose: dict[str, Any]) -> None:
    for name, service in compose["services"].items():
        if name.startswith("airflow-"):
            assert "./dags_examples:/opt/byo-examples/dags_examples" in service["volumes"], name
            assert "./example_data:/opt/byo-examples/example_data" in service["volumes"], name
            assert service["environment"]["AIRFLOW__CORE__DAGS_FOLDER"] == "/opt/byo-examples/dags_examples"


def example_connections() -> dict[str, str]:
    """conn id -> URL scheme, for every *_conn_id of every example task."""
    from airflow.dag_processing.dagbag import DagBag

    used = {}
    for dag in DagBag(dag_folder=str(ROOT / "dags_examples")).dags.values():
        for task in dag.tasks:
            for role in ("source", "destination"):
                conn_id = getattr(task, f"{role}_conn_id", None)
                if conn_id:
                    used[conn_id] = urlparse(getattr(task, role)).scheme
    return used


def test_every_example_connection_is_defined_and_points_at_a_service(
    compose: dict[str, Any], airflow_env: dict[str, str]
) -> None:
    used = example_connections()
    assert used == {"byo_sftp": "sftp", "byo_s3": "s3"}
    services = compose["services"]
    for conn_id, scheme in used.items():
        connection = json.loads(airflow_env[f"AIRFLOW_CONN_{conn_id.upper()}"])
        assert connection["conn_type"] == CONN_TYPES[scheme]
        host = connection.get("host") or urlparse(connection["extra"]["endpoint_url"]).hostname
        assert host in services, f"{conn_id} points at {host!r}, which is not a service"

    sftp = json.loads(airflow_env["AIRFLOW_CONN_BYO_SFTP"])
    user, password = services["sftp"]["command"].split(":")[:2]
    assert (sftp["login"], sftp["password"]) == (user, password)
    s3 = json.loads(airflow_env["AIRFLOW_CONN_BYO_S3"])
    minio = services["minio"]["environment"]
    assert (s3["login"], s3["password"]) == (minio["MINIO_ROOT_USER"], minio["MINIO_ROOT_PASSWORD"])


def test_example_locations_exist_in_the_stack(compose: dict[str, Any], airflow_env: dict[str, str]) -> None:
    services = compose["services"]
    source = urlparse(airflow_env["BYO_ORDERS_SOURCE"])
    user = services["sftp"]["command"].split(":")[0]
    # atmoz/sftp chroots the user to /home/<user>: /upload/orders is /home/<user>/upload/orders.
    mounts = {v.split(":")[1]: v.split(":")[0] for v in services["sftp"]["volumes"]}
    assert mounts[f"/home/{user}{source.path}"] == "./example_data/orders"
    assert (ROOT / "example_data" / "orders").is_dir()
    bucket = urlparse(airflow_env["BYO_ORDERS_DESTINATION"]).netloc
    assert f"local/{bucket}" in services["minio-init"]["entrypoint"]
