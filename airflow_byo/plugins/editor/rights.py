"""
Who may do what in the flow editor, as the auth manager decides.

- **create** a flow: ``is_authorized_dag(method="PUT", user=user)`` with no DAG details (edit
  access to DAGs in general) AND, when ``[byo] flow_editors`` is set, the user's name or one of its
  roles listed there;
- **edit, delete, revert, see the history** of flow ``name``: ``is_authorized_dag(method="PUT",
  details=DagDetails(id=name, team_name=...))`` (the route's ``requires_access_dag("PUT")``);
- **work on an unsaved spec** (browse, match, test): edit access to the DAG of the spec's name when
  that DAG exists, else the create right.

Roles: the simple auth manager's user has one ``role``; FAB's has ``roles`` (objects with a
``name``); any user class with ``get_roles()`` or ``roles`` (names or objects with a ``name``) is
read the same way. An auth manager whose users carry no roles (e.g. Keycloak's, whose roles live in
Keycloak) can only be narrowed by user name.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from fastapi import HTTPException

from airflow_byo.plugins.editor.settings import flow_editors

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

__all__ = ["can_create", "dag_exists", "require_create", "require_spec_write", "roles_of"]


def roles_of(user: Any) -> set[str]:
    """The user's role names, lower-cased (see the module's docs)."""
    found: list[Any] = []
    if isinstance(role := getattr(user, "role", None), str):
        found.append(role)
    getter = getattr(user, "get_roles", None)
    roles = getter() if callable(getter) else getattr(user, "roles", None)
    if isinstance(roles, (list, tuple, set)):
        found.extend(roles)
    names = (r if isinstance(r, str) else getattr(r, "name", None) for r in found)
    return {name.lower() for name in names if isinstance(name, str) and name}


def _listed(user: Any) -> bool:
    users, roles = flow_editors()
    if not users and not roles:
        return True
    return user.get_name() in users or bool(roles & roles_of(user))


def can_create(user: Any) -> bool:
    """Whether ``user`` may create flows (see the module's docs)."""
    from airflow.api_fastapi.app import get_auth_manager

    return bool(get_auth_manager().is_authorized_dag(method="PUT", user=user)) and _listed(user)


def require_create(user: Any) -> None:
    """403 unless ``user`` may create flows, saying what is missing."""
    from airflow.api_fastapi.app import get_auth_manager

    if not get_auth_manager().is_authorized_dag(method="PUT", user=user):
        raise HTTPException(403, "creating a flow needs edit access to DAGs")
    if not _listed(user):
        raise HTTPException(
            403,
            f"creating a flow is limited to [byo] flow_editors, and {user.get_name()!r} is not listed there",
        )


def dag_exists(session: Session, name: str) -> bool:
    """Whether Airflow knows a DAG ``name`` that is not stale (its file still declares it)."""
    from airflow.models.dag import DagModel
    from sqlalchemy import select

    return bool(session.scalar(select(DagModel.dag_id).where(DagModel.dag_id == name, ~DagModel.is_stale)))


def require_spec_write(session: Session, user: Any, name: str | None) -> None:
    """403 unless ``user`` may edit the flow ``name`` (an existing DAG) or create one."""
    from airflow.api_fastapi.app import get_auth_manager
    from airflow.api_fastapi.auth.managers.models.resource_details import DagDetails
    from airflow.models.dag import DagModel

    if name and dag_exists(session, name):
        details = DagDetails(id=name, team_name=DagModel.get_team_name(name, session=session))
        if not get_auth_manager().is_authorized_dag(method="PUT", details=details, user=user):
            raise HTTPException(403, f"working on flow {name!r} needs edit access to its DAG")
        return
    require_create(user)
