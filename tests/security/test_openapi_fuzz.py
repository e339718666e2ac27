"""Suite R4: Schemathesis against the REST API's own OpenAPI document (no network).

Three runs, one per credential: a tenant admin's key, the operator's key, and none (then
Schemathesis generates the ``Authorization`` header from the document's bearer scheme).
Each run builds the app on a fresh SQLite database with the demo fleet (no control loop:
submitted jobs stay queued) and drives Schemathesis' engine in-process, as ``st run``
would: explicit examples, coverage, fuzzing with ``SUANWANG_R4_EXAMPLES`` (default 100)
cases per operation and a fixed seed, then a stateful run over the links it infers. The
operator's run fuzzes half as many; the run without a key a tenth (at least 10): each of
its answers is the same 401 of the authentication layer, and the keyed runs'
``ignored_auth`` check also replays their requests without credentials.

Every check runs except ``positive_data_acceptance``: the document states shapes and
ranges, but some well-formed requests are impossible in the current state (no cluster can
hold the job, an unknown chip family, 30 February) and are answered 422 as documented.

The runs go to separate processes so both cores work. Nightly:
``SUANWANG_R4_EXAMPLES=1000 SUANWANG_R4_SEED=random``, and ``SUANWANG_R4_DATABASE=postgresql``
for a fresh PostgreSQL database per run (on ``SUANWANG_TEST_POSTGRES``) instead of SQLite.
"""

from __future__ import annotations

import multiprocessing
import os
import random
import secrets
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg
import pytest
import schemathesis
import schemathesis.engine
from fastapi import FastAPI
from schemathesis.engine import events
from schemathesis.schemas import BaseSchema

from suanwang.bootstrap import build_app
from suanwang.config import Settings
from suanwang.domain.tenancy import Principal, Scope
from suanwang.services.demo import load_demo

EXAMPLES = int(os.environ.get("SUANWANG_R4_EXAMPLES", "100"))
SEED = os.environ.get("SUANWANG_R4_SEED", "20260901")
DATABASE = os.environ.get("SUANWANG_R4_DATABASE", "sqlite")
PG_ADMIN_URL = os.environ.get(
    "SUANWANG_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/postgres"
)
CREDENTIALS = ("tenant", "operator", "generated")
EXCLUDED_CHECKS = ("positive_data_acceptance",)
NEGATIVE_REJECTED = [400, 401, 403, 404, 405, 406, 409, 415, 422, 428, 429]  # Schemathesis' own
FUZZ_NODES_PER_GROUP = 64
MESSAGE_CHARS = 1500


@dataclass
class R4Run:
    """What one run sent, got back and found: the suite's counters."""

    credential: str
    seed: int
    cases: Counter[str] = field(default_factory=Counter)
    statuses: Counter[int] = field(default_factory=Counter)
    failures: dict[str, str] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)
    documented: int = 0
    seconds: float = 0.0

    def record(self, event: events.ScenarioFinished) -> None:
        recorder = event.recorder
        for case_id, interaction in recorder.interactions.items():
            if interaction.response is not None:
                self.cases[recorder.cases[case_id].value.operation.label] += 1
                self.statuses[interaction.response.status_code] += 1
        for checks in recorder.checks.values():
            for check in checks:
                if check.failure_info is not None:
                    failure = check.failure_info.failure
                    where = f"{check.name} on {failure.operation or recorder.label}"
                    text = f"{failure.title}: {failure.message}\n{check.failure_info.code_sample}"
                    self.failures.setdefault(where, text[:MESSAGE_CHARS])

    def report(self) -> str:
        server_errors = sum(n for s, n in self.statuses.items() if s >= 500)
        fewest = min(self.cases.items(), key=lambda item: item[1], default=("-", 0))
        return (
            f"R4 [{self.credential}] {DATABASE} seed={self.seed} {self.seconds:.0f} s "
            f"operations={len(self.cases)}/{self.documented} cases={sum(self.cases.values())} "
            f"fewest={fewest[1]} ({fewest[0]}) 5xx={server_errors} "
            f"failures={len(self.failures)} errors={len(self.errors)} "
            f"statuses={dict(sorted(self.statuses.items()))}"
        )


@contextmanager
def fresh_database(data_dir: Path) -> Iterator[str]:
    """The URL of an empty database of kind ``DATABASE``, dropped afterwards."""
    if DATABASE == "sqlite":
        yield f"sqlite:///{data_dir / 'r4.db'}"
        return
    name = f"suanwang_r4_{secrets.token_hex(6)}"
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')  # generated name, not input
    try:
        yield f"{PG_ADMIN_URL.rsplit('/', 1)[0]}/{name}"
    finally:
        with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def r4_app(data_dir: Path, database_url: str) -> tuple[FastAPI, dict[str, str]]:
    """The API on an empty database with the demo fleet, and its keys and their ids."""
    settings = Settings(data_dir=data_dir / "data", database_url=database_url)
    app = build_app(settings, control=False)
    platform = app.state.platform
    load_demo(platform)
    operator = platform.tenancy.bootstrap_operator_key()
    platform.tenancy.create_tenant("acme", "Acme", {})
    admin = platform.tenancy.create_key(
        Principal(operator.record.id, Scope.OPERATOR, None),
        tenant="acme",
        scope=Scope.TENANT_ADMIN,
        name="r4",
        expires_in_s=None,
    )
    return app, {
        "operator": operator.secret,
        "operator_id": operator.record.id,
        "tenant": admin.secret,
        "tenant_id": admin.record.id,
    }


def examples_for(credential: str) -> int:
    """Cases per operation: ``EXAMPLES`` with the tenant's key (R4's own run); half with the
    operator's (the same routes answer it, plus the operator's own; it keeps the 2-core CI
    run inside its budget); a tenth (at least 10) without a key, where every answer is the
    authentication layer's 401 (one code path, whatever the operation)."""
    divisor = {"tenant": 1, "operator": 2}.get(credential, 10)
    return EXAMPLES if divisor == 1 else max(10, EXAMPLES // divisor)


def r4_config(credential: str, keys: dict[str, str], seed: int) -> schemathesis.Config:
    data: dict[str, Any] = {
        "seed": seed,
        "generation": {"max-examples": examples_for(credential), "database": "none"},
        "checks": {
            **{name: {"enabled": False} for name in EXCLUDED_CHECKS},
            # 413 (a body over the size limit) is a rejection too
            "negative_data_rejection": {"expected-statuses": [*NEGATIVE_REJECTED, 413]},
        },
    }
    if credential != "generated":
        data["headers"] = {"Authorization": f"Bearer {keys[credential]}"}
    return schemathesis.Config.from_dict(data)


def add_r4_hooks(schema: BaseSchema, keys: dict[str, str]) -> None:
    """Two limits on what the run may do, so that it keeps testing what it means to.

    It never revokes its own key (the rest of the run would be 401s), and the fleets it
    applies have at most ``FUZZ_NODES_PER_GROUP`` nodes per group: a 20,000-node group is
    valid but takes seconds to apply and to list, time the contract check does not need
    (fleet scale has its own benchmark). Invalid counts are left as generated.
    """
    own = {keys["operator_id"], keys["tenant_id"]}

    def filter_case(_context: schemathesis.HookContext, case: schemathesis.Case) -> bool:
        own_key = case.method == "DELETE" and (case.path_parameters or {}).get("key_id") in own
        return not (own_key or follows_a_log(case))

    def map_body(_context: schemathesis.HookContext, body: Any) -> Any:
        for group in node_groups(body):
            if type(group.get("count")) is int and group["count"] > FUZZ_NODES_PER_GROUP:
                group["count"] = FUZZ_NODES_PER_GROUP
        return body

    schema.hook(filter_case)
    schema.hook(map_body)


FOLLOWING = {"true", "1", "yes", "on"}
"""What FastAPI reads as ``follow=true`` (lower-cased; of a repeated parameter, the last)."""


def follows_a_log(case: schemathesis.Case) -> bool:
    """A ``logs?follow=true`` read streams until the job ends (an hour at most) and jobs here
    never end (no control loop): a request/response check can only time out on it. Follow
    streams have their own tests (tests/integration/test_log_follow*.py); ``follow`` with
    ``attempt`` (a 422) and every other value stay in the run."""
    query = case.query or {}
    follow = query.get("follow")
    if isinstance(follow, list):
        follow = follow[-1] if follow else None
    return (
        case.operation.path.endswith("/logs")
        and str(follow).lower() in FOLLOWING
        and query.get("attempt") is None
    )


def node_groups(body: Any) -> Iterator[dict[str, Any]]:
    """The node groups of a fleet-file body, whatever else the generator put there."""
    clusters = body.get("clusters") if isinstance(body, dict) else None
    for cluster in clusters if isinstance(clusters, list) else []:
        groups = cluster.get("node_groups") if isinstance(cluster, dict) else None
        yield from (g for g in (groups if isinstance(groups, list) else []) if isinstance(g, dict))


def run_r4(credential: str, seed: int) -> R4Run:
    """Every phase and check of Schemathesis, as ``credential``, on a fresh database."""
    started = time.monotonic()
    with (
        tempfile.TemporaryDirectory(prefix="r4-") as data_dir,
        fresh_database(Path(data_dir)) as database_url,
    ):
        app, keys = r4_app(Path(data_dir), database_url)
        try:
            config = r4_config(credential, keys, seed)
            schema = schemathesis.openapi.from_asgi("/openapi.json", app, config=config)
            add_r4_hooks(schema, keys)
            run = R4Run(credential, seed)
            run.documented = sum(len(ops) for ops in app.openapi()["paths"].values())
            for event in schemathesis.engine.from_schema(schema).execute():
                if isinstance(event, events.ScenarioFinished):
                    run.record(event)
                elif isinstance(event, events.NonFatalError | events.FatalError):
                    run.errors.append(f"{event.label}: {event.info.format()}"[:MESSAGE_CHARS])
        finally:
            app.state.platform.uows.engine.dispose()
    run.seconds = time.monotonic() - started
    return run


@pytest.mark.timeout(max(900, 12 * EXAMPLES))  # a loaded 2-core machine: ~9 min at 100
def test_every_answer_is_documented() -> None:
    seed = random.randrange(2**32) if SEED == "random" else int(SEED)
    workers = min(len(CREDENTIALS), os.cpu_count() or 1)
    spawn = multiprocessing.get_context("spawn")  # a fresh interpreter: no inherited threads
    with ProcessPoolExecutor(max_workers=workers, mp_context=spawn) as pool:
        runs = list(pool.map(run_r4, CREDENTIALS, [seed] * len(CREDENTIALS)))
    for run in runs:
        print(run.report())  # noqa: T201 (the suite's counters, shown with -s)
    problems = [
        f"[{run.credential}] {where}: {text}"
        for run in runs
        for where, text in [*run.failures.items(), *((e, "") for e in run.errors)]
    ]
    assert not problems, f"seed {seed}:\n\n" + "\n\n".join(problems)
    for run in runs:
        assert len(run.cases) == run.documented, f"[{run.credential}] tested {sorted(run.cases)}"
        assert max(run.statuses) < 500
