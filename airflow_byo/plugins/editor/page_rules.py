"""
What a flow saved from the page may not do, on top of everything ``airflow byo validate`` checks.

A spec in git is reviewed before it lands; one saved from the page is not, so the page adds
limits (docs/flow-editor.md):

- local folders (source, destination, a ``file`` notification channel) only as absolute paths
  under ``[byo] editor_local_roots`` -- and the path policy still refuses the platform's folders
  inside them (``airflow byo validate``'s own check);
- S3 and SFTP through an Airflow connection, by id: a ``conn_id`` is required, and no
  ``user:password@`` in a path or a webhook URL;
- no ``processing.reference``: a ``module:function`` reference imports code from the DAGs folder
  (or anything importable) in the dag-processor's checks and on workers -- code the page must not
  pick; paste the code or use a library function.

Each problem is ``(field path, message)``; :func:`page_problems` reads the spec's data as loaded.
"""

from __future__ import annotations

import os
import re
from typing import Any
from urllib.parse import urlsplit

from airflow_byo.plugins.editor.settings import editor_local_roots

__all__ = ["credentials_in", "local_problem", "page_problems", "source_problems"]

Problem = tuple[tuple[Any, ...], str]
_USERINFO = re.compile(r"^[^/]*@")


def _inside(path: str, root: str) -> bool:
    return path == root or path.startswith(root.rstrip("/") + "/")


def local_problem(path: Any, roots: list[str] | None = None) -> str | None:
    """Why the local ``path`` may not be used by a flow made on the page, or None."""
    roots = editor_local_roots() if roots is None else roots
    if not roots:
        return (
            "flows made on the page may not use local folders ([byo] editor_local_roots is empty). Fix: use "
            "S3 or SFTP, or ask an admin to set [byo] editor_local_roots"
        )
    if not isinstance(path, str) or not path.strip():
        return "required: an absolute folder"
    text = path.strip().removeprefix("file://")
    if not os.path.isabs(text):
        return f"{path!r} is not an absolute path. Fix: give the full path, under {', '.join(roots)}"
    real = os.path.realpath(text)
    if not any(_inside(real, root) for root in roots):
        via = f" (real path {real})" if real != os.path.normpath(text) else ""
        return (
            f"{path!r}{via} is outside the folders flows made on the page may use ([byo] editor_local_roots: "
            f"{', '.join(roots)}). Fix: choose a folder inside one of them"
        )
    from airflow_byo.exceptions import ByoError
    from airflow_byo.path_policy import check_local_path

    try:
        check_local_path(real, "path")
    except ByoError as exc:
        return str(exc).removeprefix("path ")
    return None


def credentials_in(url: str) -> bool:
    """Whether a path or URL carries ``user[:password]@`` before its host or first folder."""
    if "://" in url:
        return "@" in urlsplit(url).netloc
    return bool(_USERINFO.match(url))


def _location_problems(key: str, location: Any, roots: list[str]) -> list[Problem]:
    if not isinstance(location, dict):
        return []  # the model says what is wrong with it
    kind, path = location.get("type"), location.get("path")
    if kind == "local":
        problem = local_problem(path, roots)
        return [((key, "path"), problem)] if problem else []
    problems: list[Problem] = []
    if kind in ("s3", "sftp") and not location.get("conn_id"):
        problems.append(
            (
                (key, "conn_id"),
                f"required: pick the Airflow connection of this {kind} {key} (flows made on the page "
                "use credentials only through connections)",
            )
        )
    if isinstance(path, str) and credentials_in(path):
        problems.append(
            (
                (key, "path"),
                "credentials in the path (user:password@) are not allowed: put them in an Airflow "
                "connection and pick it as conn_id",
            )
        )
    return problems


def source_problems(source: Any, roots: list[str] | None = None) -> list[Problem]:
    """The page's limits on a source block alone (browse and match use them)."""
    return _location_problems("source", source, editor_local_roots() if roots is None else roots)


def _channel_problems(notifications: Any, roots: list[str]) -> list[Problem]:
    channels = notifications.get("channels") if isinstance(notifications, dict) else None
    problems: list[Problem] = []
    for index, channel in enumerate(channels if isinstance(channels, list) else []):
        if not isinstance(channel, dict):
            continue
        loc = ("notifications", "channels", index)
        if channel.get("type") == "file" and (problem := local_problem(channel.get("path"), roots)):
            problems.append(((*loc, "path"), problem))
        if (
            channel.get("type") == "webhook"
            and isinstance(channel.get("url"), str)
            and credentials_in(channel["url"])
        ):
            problems.append(
                (
                    (*loc, "url"),
                    "credentials in the URL (user:password@) are not allowed: use the channel's conn_id",
                )
            )
    return problems


def page_problems(data: dict[str, Any]) -> list[Problem]:
    """Every limit of the page the spec's ``data`` breaks (see the module's docs)."""
    roots = editor_local_roots()
    problems = _location_problems("source", data.get("source"), roots)
    problems += _location_problems("destination", data.get("destination"), roots)
    processing = data.get("processing")
    if isinstance(processing, dict) and processing.get("reference"):
        problems.append(
            (
                ("processing", "reference"),
                "a module:function reference imports code from the DAGs folder, which a flow made on the "
                "page may not do. Fix: paste the function's code (processing.code) or pick a library "
                "function (processing.function); a reference belongs in a spec committed to git",
            )
        )
    return problems + _channel_problems(data.get("notifications"), roots)
