"""Image references (issue 25): parsed and pinned, and their errors at the runtimes file's line."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from airflow_byo.exceptions import ByoConfigError
from airflow_byo.images.reference import parse_reference
from airflow_byo.named_runtimes import flow_requirements
from airflow_byo.runtimes_file import load_runtimes

DIGEST = "sha256:" + "ab" * 32


@pytest.mark.parametrize(
    ("text", "transport", "location", "tag"),
    [
        (f"python:3.12-slim@{DIGEST}", "docker", "docker.io/library/python", "3.12-slim"),
        (f"docker://team/tools@{DIGEST}", "docker", "docker.io/team/tools", None),
        (
            f"registry.example.com:5000/team/tools:1.4@{DIGEST}",
            "docker",
            "registry.example.com:5000/team/tools",
            "1.4",
        ),
        (f"localhost/tools@{DIGEST}", "docker", "localhost/tools", None),
        (f"oci:/srv/images/tools:1.4@{DIGEST}", "oci", "/srv/images/tools", "1.4"),
        (f"oci:/srv/images/tools@{DIGEST}", "oci", "/srv/images/tools", None),
        (f"docker-archive:/srv/images/tools.tar@{DIGEST}", "docker-archive", "/srv/images/tools.tar", None),
    ],
)
def test_references_are_parsed_and_docker_hub_names_expanded(
    text: str, transport: str, location: str, tag: str | None
) -> None:
    reference = parse_reference(text)
    assert (reference.transport, reference.location, reference.tag, reference.digest) == (
        transport,
        location,
        tag,
        DIGEST,
    )
    assert reference.cache_key == "sha256-" + "ab" * 32


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("python:3.12", "image 'python:3.12' is not pinned by a digest: a tag can move, so workers could run "
         "different images. Fix: append @sha256:<digest> (skopeo inspect --format '{{.Digest}}' docker://python:3.12)"),
        ("oci:/srv/tools:v1", "image 'oci:/srv/tools:v1' is not pinned by a digest"),
        ("python@sha256:abc", "'sha256:abc' is not a sha256 digest. Fix: write @sha256: and the 64"),
        (f"Team/Tools@{DIGEST}", "'Team/Tools' is not a repository name. Fix: use lowercase"),
        (f"oci:images/tools@{DIGEST}", "'images/tools' is not an absolute, normalised path"),
        (f"docker-archive:/srv/../x.tar@{DIGEST}", "is not an absolute, normalised path"),
    ],
)  # fmt: skip
def test_bad_references_say_how_to_fix_them(text: str, message: str) -> None:
    with pytest.raises(ValueError) as caught:  # noqa: PT011 -- the message is checked below
        parse_reference(text)
    assert message in str(caught.value)


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "runtimes.yaml"
    path.write_text(textwrap.dedent(text))
    return path


def test_an_unpinned_image_is_reported_at_its_line(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """\
        runtimes:
          gis:
            description: GDAL
            image: osgeo/gdal:3.9
        """,
    )
    with pytest.raises(ByoConfigError) as caught:
        load_runtimes(path)
    assert str(caught.value).startswith(
        f"{path}:4: runtimes.gis.image: image 'osgeo/gdal:3.9' is not pinned by a digest"
    )
    assert "Fix: append @sha256:<digest>" in str(caught.value)


def test_a_registry_connection_needs_a_registry_image(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        f"""\
        runtimes:
          local:
            image: oci:/srv/images/tools@{DIGEST}
            registry_conn_id: my_registry
        """,
    )
    with pytest.raises(ByoConfigError) as caught:
        load_runtimes(path)
    assert str(caught.value) == (
        f"{path}:2: runtimes.local: registry_conn_id is only for an image from a registry. Fix: drop "
        "registry_conn_id, or set image to a registry reference (registry/repository@sha256:<digest>)"
    )


def test_an_image_runtime_takes_python_packages_and_limits_and_flows_add_packages(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        f"""\
        runtimes:
          gis:
            image: registry.example.com/gis/gdal:3.9@{DIGEST}
            registry_conn_id: gis_registry
            python: /usr/bin/python3
            packages: ["shapely==2.0.6"]
            network: true
            job_config: {{max_memory_mb: 4096}}
        """,
    )
    gis = load_runtimes(path)["gis"]
    assert (gis.image, gis.registry_conn_id, gis.python) == (
        f"registry.example.com/gis/gdal:3.9@{DIGEST}",
        "gis_registry",
        "/usr/bin/python3",
    )
    assert gis.checked_python() is None  # a path inside the image: never looked at on the host
    assert flow_requirements(gis, "Shapely==2.0.7,six==1.17.0").effective == ("Shapely==2.0.7", "six==1.17.0")
