"""Apps and the chat playground that streams an app's answer with its cited chunks."""

from __future__ import annotations

from fastapi import APIRouter

from suanwang.adapters.http.console.web import PREFIX, ConsoleRoute

router = APIRouter(prefix=PREFIX, route_class=ConsoleRoute, include_in_schema=False)
