"""Console page benchmark: server time of every console page at the demo's size.

The world: the demo fleet (11,000+ cards in three regions), ``--tenants`` tenants in one
cohort, ``--jobs`` simulated jobs submitted through the jobs service and scheduled by the
real control loop (so thousands of attempts, running and finished), ``--usage`` gateway
ledger rows spread over the month, and the audit entries all of that wrote. SQLite, the
embedded default (``--database-url`` for PostgreSQL).

Every ``GET /console/...`` route the app has is found from the app's routes (pages added
later are measured without editing this file); path parameters are filled with objects of
the world. Each page is fetched in-process through the ASGI app (no network), as the
operator and as a tenant admin, ``--repeat`` times after a warm-up: server time is the time
from request to the last byte of the answer.

Baseline in the same run: the JSON API route the page stands for, fetched the same way with
an API key (``BASELINES``); the ratio page / API says what rendering HTML costs on top of
the data. The goal (issue 16): no page above 300 ms at this size.

Run: ``.venv/bin/python benchmarks/console_pages.py [--jobs 4000]``.
Writes ``benchmarks/results/console_pages.json`` and ``.md``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import re
import statistics
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from fastapi import FastAPI
from fastapi.routing import APIRoute

from suanwang.adapters.backends.clocks import SystemClock
from suanwang.adapters.db.usage_ledger import SqlUsageLedger
from suanwang.adapters.http import console
from suanwang.adapters.http.app import create_app
from suanwang.adapters.http.console.web import SESSION_COOKIE, sessions
from suanwang.bootstrap import build_platform
from suanwang.config import Settings
from suanwang.domain.datasets import DatasetFormat
from suanwang.domain.jobs import JobSpec, Resources
from suanwang.domain.tenancy import LOCAL_OPERATOR, Principal, Scope
from suanwang.domain.usage import Outcome, TokenUsage
from suanwang.observability import Metrics
from suanwang.services.app_templates import instantiate_keyword, template
from suanwang.services.demo import load_demo
from suanwang.services.platform import Platform

RESULTS = Path(__file__).parent / "results"
GOAL_MS = 300.0
CHIPS = ("ascend-910b", "nvidia-h20", "ascend", "metax", "hygon-dcu")
MODELS = ("qwen2.5-7b-instruct", "deepseek-v3", "smollm2-135m-instruct", "app:helpdesk@1")
BASELINES = {
    "/console/fleet": "/api/v1/fleet/totals",
    "/console/clusters/{name}": "/api/v1/clusters",
    "/console/jobs": "/api/v1/jobs?limit=50",
    "/console/jobs/{job_id}": "/api/v1/jobs/{job_id}",
    "/console/tenants": "/api/v1/tenants",
    "/console/tenants/{name}": "/api/v1/tenants/{tenant}",
    "/console/keys": "/api/v1/keys",
    "/console/usage": "/api/v1/tenants/{tenant}/usage",
    "/console/audit": "/api/v1/audit?limit=50",
}
SKIP = re.compile(r"/(static|login|logout)\b|\.csv$|/log$|/chat/stream$")


@dataclass(frozen=True)
class World:
    platform: Platform
    app: FastAPI
    operator_key: str
    tenant_key: str
    tenant: str
    job_id: str
    objects: dict[str, str]
    """A sample of each kind of object of ``tenant``, by the path parameter that names it."""
    started_s: float


def _objects(platform: Platform, tenant: str) -> dict[str, str]:
    """A deployment, a dataset, a knowledge base with a document and an app of ``tenant``."""
    owner = Principal(f"bench-{tenant}", Scope.TENANT_ADMIN, tenant)  # type: ignore[arg-type]
    deployment = platform.deployments.deploy(owner, "glm-4-9b-chat", "lingang-nvidia", 2)
    dataset = platform.datasets.create(owner, "corpus", DatasetFormat.JSONL, "local")
    app = instantiate_keyword(
        platform.apps, platform.knowledge, owner, template("education-tutor"), "tutor"
    )
    return {
        "deployment_id": deployment.deployment.id,
        "ref": dataset.id,
        "kb_id": app.bases[0].id,
        "name": app.app.name,
    }


def _keys(platform: Platform, tenant: str) -> tuple[str, str]:
    tenancy = platform.tenancy
    operator = tenancy.create_key(
        LOCAL_OPERATOR, tenant=None, scope=Scope.OPERATOR, name="bench", expires_in_s=None
    )
    admin = tenancy.create_key(
        LOCAL_OPERATOR, tenant=tenant, scope=Scope.TENANT_ADMIN, name="bench", expires_in_s=None
    )
    return operator.secret, admin.secret


def _submit_jobs(platform: Platform, tenants: list[str], jobs: int, rng: random.Random) -> str:
    """Submit ``jobs`` simulated jobs round-robin; returns the last one of ``tenants[0]``."""
    last = ""
    for i in range(jobs):
        tenant = tenants[i % len(tenants)]
        principal = Principal(f"bench-{tenant}", Scope.TENANT_ADMIN, tenant)  # type: ignore[arg-type]
        cards = rng.choice((1, 2, 4, 8, 8, 16))
        spec = JobSpec(
            name=f"train-{i}",
            command=("python", "train.py"),
            resources=Resources(
                chip=rng.choice(CHIPS), cards_per_node=min(cards, 8), nodes=max(1, cards // 8)
            ),
            simulate_duration_s=rng.uniform(60, 86_400),
        )
        job_id = platform.jobs.submit(principal, spec, None).job.id
        last = job_id if tenant == tenants[0] else last
    return last


def _usage(platform: Platform, tenants: list[str], rows: int, rng: random.Random) -> None:
    """``rows`` gateway requests over the last 20 days (the month so far, mostly)."""
    now = time.time()
    entries = []
    for i in range(rows):
        at = now - rng.uniform(0, 20 * 86_400)
        entries.append(TokenUsage(
            uuid.uuid4().hex, tenants[i % len(tenants)], "bench", rng.choice(MODELS),
            "/v1/chat/completions", rng.randint(10, 2000), rng.randint(10, 800), 200,
            Outcome.OK, at - 0.5, at, 500.0,
        ))  # fmt: skip
    engine = platform.uows.engine  # type: ignore[attr-defined]
    SqlUsageLedger(engine, SystemClock()).record_many(entries)


def build_world(args: argparse.Namespace) -> World:
    started = time.monotonic()
    rng = random.Random(7)
    data = Path(tempfile.mkdtemp(prefix="suanwang-console-bench-"))
    url = args.database_url or f"sqlite:///{data / 'suanwang.db'}"
    settings = Settings(data_dir=data, database_url=url, sim_speedup=1000.0)
    platform = build_platform(settings)
    load_demo(platform)
    tenants = [f"t{i:02d}" for i in range(args.tenants)]
    quota = {"ascend": 2000, "nvidia": 256, "metax": 256, "hygon-dcu": 256, "cpu": 8}
    for name in tenants:
        platform.tenancy.create_tenant(name, f"Tenant {name}", quota, cohort="bench")
    print(f"fleet and tenants: {time.monotonic() - started:.1f} s")
    job_id = _submit_jobs(platform, tenants, args.jobs, rng)
    print(f"{args.jobs} jobs submitted: {time.monotonic() - started:.1f} s")
    for _ in range(args.ticks):
        platform.control.tick()
    print(f"{args.ticks} scheduler ticks: {time.monotonic() - started:.1f} s")
    _usage(platform, tenants, args.usage, rng)
    operator_key, tenant_key = _keys(platform, tenants[0])
    objects = _objects(platform, tenants[0])
    app = create_app(platform, Metrics())
    return World(platform, app, operator_key, tenant_key, tenants[0], job_id, objects,
                 time.monotonic() - started)  # fmt: skip


def page_paths() -> list[str]:
    """Every console GET route's path template, except static files, login and downloads."""
    paths = []
    for router in console.ROUTERS:
        for route in router.routes:
            if not isinstance(route, APIRoute) or "GET" not in (route.methods or set()):
                continue
            if route.path.startswith("/console/") and not SKIP.search(route.path):
                paths.append(route.path)
    return sorted(set(paths))


def fill(template: str, world: World) -> str | None:
    """The template with its parameters set to objects of the world (None: no sample)."""
    samples = {
        "job_id": world.job_id,
        "tenant": world.tenant,
        "period": time.strftime("%Y-%m"),
        **world.objects,
    }
    by_segment = {"clusters": "lingang-ascend", "tenants": world.tenant}

    def one(match: re.Match[str]) -> str:
        name = match.group(1)
        before = template[: match.start()].rstrip("/").rsplit("/", 1)[-1]
        value = by_segment.get(before) or samples.get(name)
        if value is None:
            raise KeyError(name)
        return value

    try:
        return re.sub(r"\{(\w+)\}", one, template)
    except KeyError:
        return None


@dataclass(frozen=True)
class Timing:
    page: str
    view: str
    status: int
    median_ms: float
    p95_ms: float
    size: int
    api: str
    api_median_ms: float | None

    @property
    def ratio(self) -> float | None:
        return self.median_ms / self.api_median_ms if self.api_median_ms else None


async def _time(
    client: httpx.AsyncClient, path: str, repeat: int, **kw: Any
) -> tuple[int, list[float], int]:
    status, size = 0, 0
    for _ in range(2):  # warm-up: templates compiled, caches filled
        await client.get(path, **kw)
    samples = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        answer = await client.get(path, **kw)
        samples.append((time.perf_counter() - t0) * 1000)
        status, size = answer.status_code, len(answer.content)
    return status, samples, size


async def measure(world: World, repeat: int) -> list[Timing]:
    timings = []
    transport = httpx.ASGITransport(app=world.app)
    for view, key in (("operator", world.operator_key), ("tenant", world.tenant_key)):
        new = sessions(world.platform).login(key, "bench")
        cookies = {SESSION_COOKIE: new.session_id}
        async with httpx.AsyncClient(
            transport=transport, base_url="http://bench", cookies=cookies, timeout=60
        ) as client:
            for template in page_paths():
                path = fill(template, world)
                if path is None:
                    print(f"  {template}: no sample object, skipped")
                    continue
                status, samples, size = await _time(client, path, repeat)
                api = BASELINES.get(template, "")
                api_ms = None
                if api and status == 200:
                    api_path = fill(api, world) or ""
                    headers = {"Authorization": f"Bearer {key}"}
                    api_status, api_samples, _ = await _time(
                        client, api_path, repeat, headers=headers
                    )
                    api_ms = statistics.median(api_samples) if api_status == 200 else None
                timings.append(Timing(
                    template, view, status, statistics.median(samples),
                    sorted(samples)[int(0.95 * (len(samples) - 1))], size, api, api_ms,
                ))  # fmt: skip
                print(f"  {view:8} {template:40} {status} {timings[-1].median_ms:7.1f} ms")
    return timings


def _table(timings: list[Timing], world: World, args: argparse.Namespace) -> str:
    dialect = world.platform.uows.engine.dialect.name  # type: ignore[attr-defined]
    lines = [
        "# Console pages at the demo's size",
        "",
        f"{args.jobs} jobs of {args.tenants} tenants, {args.ticks} scheduler ticks, "
        f"{args.usage} ledger rows, the demo fleet; {args.repeat} fetches per page after a "
        f"warm-up, in-process (ASGI, no network); database {dialect}; world built in "
        f"{world.started_s:.0f} s. Goal: every page under {GOAL_MS:.0f} ms.",
        "",
        "| page | as | status | median ms | p95 ms | KiB | API baseline | API ms | page/API |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for t in timings:
        api_ms = f"{t.api_median_ms:.1f}" if t.api_median_ms else "—"
        ratio = f"{t.ratio:.2f}" if t.ratio else "—"
        lines.append(
            f"| {t.page} | {t.view} | {t.status} | {t.median_ms:.1f} | {t.p95_ms:.1f} | "
            f"{t.size / 1024:.0f} | {t.api or '—'} | {api_ms} | {ratio} |"
        )
    worst = max(timings, key=lambda t: t.p95_ms)
    lines += ["", f"Slowest (p95): {worst.page} as {worst.view}, {worst.p95_ms:.1f} ms; "
              f"goal {'met' if worst.p95_ms <= GOAL_MS else 'MISSED'}."]  # fmt: skip
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--jobs", type=int, default=4000)
    parser.add_argument("--tenants", type=int, default=40)
    parser.add_argument("--ticks", type=int, default=6)
    parser.add_argument("--usage", type=int, default=50_000)
    parser.add_argument("--repeat", type=int, default=15)
    parser.add_argument("--database-url", default="")
    parser.add_argument("--out", default="console_pages")
    args = parser.parse_args()
    world = build_world(args)
    print(f"world built in {world.started_s:.0f} s")
    timings = asyncio.run(measure(world, args.repeat))
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / f"{args.out}.json").write_text(json.dumps({
        "args": vars(args), "world_build_s": world.started_s, "goal_ms": GOAL_MS,
        "pages": [dict(t.__dict__, ratio=t.ratio) for t in timings],
    }, indent=2) + "\n")  # fmt: skip
    (RESULTS / f"{args.out}.md").write_text(_table(timings, world, args))
    print(_table(timings, world, args))


if __name__ == "__main__":
    main()
