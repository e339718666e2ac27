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
    knowledge_pages,
    model_pages,
    ops_pages,
    tenant_pages,
)
from suanwang.adapters.http.console.web import HERE, PREFIX
from suanwang.adapters.http.limits import UPLOAD_OVERHEAD_BYTES, LargerBody
from suanwang.domain.knowledge import MAX_DOCUMENT_BYTES


def upload_limits() -> tuple[LargerBody, ...]:
    """The console's upload forms: bodies larger than the API's 1 MiB they may send."""
    return (
        LargerBody(
            data_pages.CONSOLE_UPLOAD_PATH,
            data_pages.CONSOLE_UPLOAD_MAX_BYTES,
            "upload larger files with `suanwang data upload` (the API streams them)",
        ),
        LargerBody(
            knowledge_pages.KB_UPLOAD_PATH,
            MAX_DOCUMENT_BYTES + UPLOAD_OVERHEAD_BYTES,
            f"documents are limited to {MAX_DOCUMENT_BYTES} bytes: split the file",
        ),
    )


ROUTERS: Final[tuple[APIRouter, ...]] = (
    auth_pages.router,
    fleet_pages.router,
    tenant_pages.router,
    job_pages.router,
    account_pages.router,
    ops_pages.router,
    model_pages.router,
    data_pages.router,
    knowledge_pages.router,
    app_pages.router,
)
"""Every page group's router (the page benchmark walks their routes)."""


def install_console(app: FastAPI) -> None:
    """Add the console's pages and static files to ``app`` (not part of the API document)."""
    for router in ROUTERS:
        app.include_router(router)
    app.mount(f"{PREFIX}/static", StaticFiles(directory=HERE / "static"), name="console-static")
