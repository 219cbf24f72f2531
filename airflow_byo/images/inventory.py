"""
What ``airflow byo runtimes list | pull | prune`` show and do: the runtimes of ``[byo] runtimes``,
the images this worker has cached (size per digest, the runtimes pinning them, the flows on
those runtimes), pulling images ahead of the first run, and removing the ones no runtime pins.
"""

from __future__ import annotations

import logging
from typing import Any

from airflow_byo.images.cache import CachedImage, cached_images, image_cache_path, read_cached, remove_image
from airflow_byo.images.errors import ByoImageError
from airflow_byo.runtimes_file import available_runtimes

__all__ = ["flows_by_runtime", "list_runtimes", "prune_images", "pull_images"]

log = logging.getLogger(__name__)


def flows_by_runtime() -> dict[str, list[str]] | None:
    """
    ``runtime name -> ["<dag_id>.<task_id>", ...]`` of the flows the metadata DB knows (their
    latest serialized DAGs); ``None`` when it cannot be read here.
    """
    try:
        from airflow.models.dag import DagModel
        from airflow.models.serialized_dag import SerializedDagModel
        from airflow.utils.session import create_session
        from sqlalchemy import select

        with create_session() as session:
            dag_ids = list(session.scalars(select(DagModel.dag_id)))
            rows = SerializedDagModel.get_latest_serialized_dags(dag_ids=dag_ids, session=session)
            users: dict[str, list[str]] = {}
            for row in rows:
                for task in ((row.data or {}).get("dag") or {}).get("tasks") or []:
                    fields = task.get("__var", task) if isinstance(task, dict) else {}
                    if isinstance(fields.get("runtime"), str):
                        users.setdefault(fields["runtime"], []).append(
                            f"{row.dag_id}.{fields.get('task_id')}"
                        )
    except Exception as exc:  # noqa: BLE001 -- no metadata DB here: the listing says "unknown"
        log.debug("cannot read the flows from the metadata DB: %s", exc)
        return None
    return {name: sorted(flows) for name, flows in users.items()}


def _image_of(runtime: Any) -> CachedImage | None:
    return read_cached(image_cache_path() / runtime.image_reference.cache_key) if runtime.image else None


def list_runtimes() -> dict[str, Any]:
    """Every runtime (its kind, image and whether it is cached here) and every cached image."""
    runtimes = available_runtimes()
    flows = flows_by_runtime()
    rows = []
    for name, runtime in sorted(runtimes.items()):
        kind = "image" if runtime.image else ("interpreter" if runtime.python else "virtualenv")
        row: dict[str, Any] = {"runtime": name, "kind": kind, "packages": ",".join(runtime.packages) or None}
        if runtime.image:
            image = _image_of(runtime)
            row |= {
                "image": runtime.image,
                "cached": f"{image.size / 1e6:.1f} MB" if image else "no (pulled on first use)",
                "python": runtime.python or (image.python.path if image and image.python else None),
            }
        row["flows"] = ", ".join((flows or {}).get(name, [])) or ("unknown" if flows is None else "none")
        rows.append(row)
    pinned: dict[str, list[str]] = {}
    for name, runtime in runtimes.items():
        if runtime.image:
            pinned.setdefault(runtime.image_reference.digest, []).append(name)
    images = [
        {
            "digest": image.digest,
            "size_mb": round(image.size / 1e6, 1),
            "python": f"{image.python.path} ({image.python.version_text})" if image.python else None,
            "runtimes": ", ".join(sorted(pinned.get(image.digest, []))) or "none (prune removes it)",
            "venvs": len(list((image.path / "venvs").glob("venv-*/"))),
            "flows": ", ".join(
                sorted(flow for name in pinned.get(image.digest, []) for flow in (flows or {}).get(name, []))
            )
            or ("unknown" if flows is None else "none"),
        }
        for image in cached_images()
    ]
    return {"cache": str(image_cache_path()), "runtimes": rows, "images": images}


def pull_images(names: list[str]) -> list[dict[str, Any]]:
    """
    Fetch and unpack the images of the named image runtimes (all of them without names), and
    build each runtime's base packages on it: a flow's first run then starts at once.

    :raises ByoConfigError: an unknown runtime, or one that is not an image runtime.
    """
    from airflow_byo.images.environment import prepare_image_environment

    runtimes = available_runtimes()
    chosen = names or sorted(name for name, runtime in runtimes.items() if runtime.image)
    results = []
    for name in chosen:
        runtime = runtimes.get(name)
        if runtime is None or not runtime.image:
            known = ", ".join(sorted(n for n, r in runtimes.items() if r.image)) or "none"
            raise ByoImageError(
                f"{name!r} is not an image runtime (image runtimes: {known}). Fix: name one of those"
            )
        prepared = prepare_image_environment(runtime, list(runtime.packages))
        results.append(
            {
                "runtime": name,
                "digest": prepared.image.digest,
                "size_mb": round(prepared.image.size / 1e6, 1),
                "python": f"{prepared.python} ({prepared.python_version})",
            }
        )
    return results


def prune_images(*, everything: bool = False) -> dict[str, Any]:
    """
    Remove the cached images no runtime of ``[byo] runtimes`` pins (``everything``: all of them),
    with the virtualenvs built on them; an image a running sandbox uses is kept.
    """
    pinned = {runtime.image_reference.digest for runtime in available_runtimes().values() if runtime.image}
    removed, kept, in_use, freed = [], [], [], 0
    for image in cached_images():
        if image.digest in pinned and not everything:
            kept.append(image.digest)
        elif remove_image(image):
            removed.append(image.digest)
            freed += image.size
        else:
            in_use.append(image.digest)
    return {
        "removed": removed or "none",
        "kept (pinned by a runtime)": kept or "none",
        "in use (kept)": in_use or "none",
        "freed_mb": round(freed / 1e6, 1),
    }
