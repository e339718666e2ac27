"""Datasets and knowledge bases (upload included): a tenant's own."""

from __future__ import annotations

from fastapi import APIRouter

from suanwang.adapters.http.console.web import PREFIX, ConsoleRoute

router = APIRouter(prefix=PREFIX, route_class=ConsoleRoute, include_in_schema=False)
