"""
The BYO Flows page: an Airflow UI plugin (a FastAPI app mounted on the api-server at ``/byo``).

This module is imported by every Airflow process that loads plugins (schedulers and workers
too), so it imports nothing heavy: the FastAPI app is built on its first request by
:class:`LazyApp` (see :mod:`airflow_byo.plugins.app`).
"""

from __future__ import annotations

from typing import Any

from airflow.plugins_manager import AirflowPlugin

__all__ = ["URL_PREFIX", "ByoFlowsPlugin", "LazyApp"]

#: Where the api-server mounts the page's app; the UI shows it at ``/plugin/byo-flows``.
URL_PREFIX = "/byo"


class LazyApp:
    """An ASGI app that imports and builds the real one on its first request (or lifespan event)."""

    def __init__(self) -> None:
        self._app: Any = None

    @property
    def app(self) -> Any:
        if self._app is None:
            from airflow_byo.plugins.app import create_app

            self._app = create_app()
        return self._app

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        await self.app(scope, receive, send)


class ByoFlowsPlugin(AirflowPlugin):
    """Flows and insights, the test loop, the function library: inside the Airflow UI."""

    name = "byo_flows"
    fastapi_apps = [{"app": LazyApp(), "url_prefix": URL_PREFIX, "name": "BYO Flows"}]
    # The UI renders an external view with a url_route inside its own page (an iframe at
    # /plugin/<url_route>); an invalid entry would silently hide the whole plugin, which
    # tests/e2e/test_ui_plugin.py checks through GET /api/v2/plugins.
    external_views = [
        {
            "name": "BYO Flows",
            "href": f"{URL_PREFIX}/",
            "url_route": "byo-flows",
            "destination": "nav",
        }
    ]
