"""The web console: server-rendered pages (Jinja2 + htmx) over the same services and
authorization as the API, served by the same server under ``/console`` (``/`` redirects).

See docs/console.md. Static files (htmx, Chart.js) are vendored from npm; their versions
and licences are in ``static/VENDORED.md``.
"""

from __future__ import annotations

from fastapi import FastAPI
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


def install_console(app: FastAPI) -> None:
    """Add the console's pages and static files to ``app`` (not part of the API document)."""
    pages = (auth_pages, fleet_pages, tenant_pages, job_pages, account_pages, ops_pages)
    for module in (*pages, model_pages, data_pages, app_pages):
        app.include_router(module.router)
    app.mount(f"{PREFIX}/static", StaticFiles(directory=HERE / "static"), name="console-static")
