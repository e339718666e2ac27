"""The web console: server-rendered pages (Jinja2 + htmx) over the same services and
authorization as the API, served by the same server under ``/console`` (``/`` redirects).

See docs/console.md. Static files (htmx, Chart.js) are vendored from npm; their versions
and licences are in ``static/VENDORED.md``.
"""

from __future__ import annotations

from typing import Final

from fastapi import APIRouter, FastAPI
from fastapi.staticfiles import StaticFiles

from suanwang.adapters.http.console import (
    account_pages,
    app_pages,
    auth_pages,
    data_pages,
    fleet_pages,
    job_pages,
    model_pages,
    ops_pages,
    tenant_pages,
)
from suanwang.adapters.http.console.web import HERE, PREFIX

ROUTERS: Final[tuple[APIRouter, ...]] = (
    auth_pages.router,
    fleet_pages.router,
    tenant_pages.router,
    job_pages.router,
    account_pages.router,
    ops_pages.router,
    model_pages.router,
    data_pages.router,
    app_pages.router,
)
"""Every page group's router (the page benchmark walks their routes)."""


def install_console(app: FastAPI) -> None:
    """Add the console's pages and static files to ``app`` (not part of the API document)."""
    for router in ROUTERS:
        app.include_router(router)
    app.mount(f"{PREFIX}/static", StaticFiles(directory=HERE / "static"), name="console-static")
