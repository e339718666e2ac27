"""Deployments and models: a tenant's own (the operator's: every tenant's)."""

from __future__ import annotations

from fastapi import APIRouter

from suanwang.adapters.http.console.web import PREFIX, ConsoleRoute

router = APIRouter(prefix=PREFIX, route_class=ConsoleRoute, include_in_schema=False)
