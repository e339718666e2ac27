"""Operator pages: utilisation and the training/inference split over time, queues with the
reasons work waits, WAN links and transfers (rate, ETA), usage and revenue by tenant and model."""

from __future__ import annotations

from fastapi import APIRouter

from suanwang.adapters.http.console.web import PREFIX, ConsoleRoute

router = APIRouter(prefix=PREFIX, route_class=ConsoleRoute, include_in_schema=False)
