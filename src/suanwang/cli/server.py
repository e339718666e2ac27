"""``suanwang server`` (run the API), ``suanwang init`` (local set-up) and ``suanwang top``.

``server`` and ``init`` work on this machine's data directory directly; the heavy imports
(FastAPI, SQLAlchemy, uvicorn) happen inside them so the client commands start fast.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Group, RenderableType
from rich.live import Live
from rich.text import Text

from suanwang.cli.client import ApiClient, CliError
from suanwang.cli.common import (
    JsonOpt,
    emit_json,
    err,
    load_settings,
    log_level,
    new_table,
    note,
    out,
    say,
    state,
)
from suanwang.cli.fleet import apply_summary, totals_table
from suanwang.cli.jobs import jobs_table

if TYPE_CHECKING:
    from suanwang.services.platform import Platform

DEV_MODE_WARNING = (
    "WARNING: SUANWANG_LOCAL_ISOLATION=single-user-dev: jobs on the local cluster run "
    "unconfined as this server's own user and can read the database, the operator key and "
    "every tenant's files. For development only; unset it to sandbox jobs."
)
JOB_STATES = ("queued", "admitted", "running", "preempted", "succeeded", "failed", "cancelled")
TOP_SAMPLE = 1000


def server(
    host: Annotated[
        str | None, typer.Option(help="interface to listen on (SUANWANG_HOST)", show_default=False)
    ] = None,
    port: Annotated[
        int | None, typer.Option(help="TCP port (SUANWANG_PORT)", show_default=False)
    ] = None,
    with_gateway: Annotated[
        bool,
        typer.Option(
            "--gateway/--no-gateway",
            envvar="SUANWANG_SERVE_GATEWAY",
            help="also run the OpenAI-compatible gateway (SUANWANG_GATEWAY_PORT, default 8001)",
        ),
    ] = True,
) -> None:
    """Run the API server, the scheduler and the gateway on this machine (Ctrl-C stops them)."""
    settings = load_settings(host=host, port=port)
    level = log_level(settings)
    import uvicorn

    from suanwang.bootstrap import build_app
    from suanwang.observability import configure_logging

    configure_logging(level, settings.log_json)
    os.umask(0o077)  # state, logs and journals are the service user's alone
    if settings.local_isolation == "single-user-dev":
        note(DEV_MODE_WARNING, style="bold red")
    app = build_app(settings)
    if not settings.operator_key_file.exists():
        note("no operator key yet: run 'suanwang init' to create one", style="yellow")
    note(
        f"suanwang serving on http://{settings.host}:{settings.port} "
        f"(data: {settings.data_dir.resolve()})",
        style="green",
    )
    child = _start_gateway(settings.host, settings.gateway_port, level) if with_gateway else None
    try:
        uvicorn.run(app, host=settings.host, port=settings.port, log_level=level)
    finally:
        if child is not None:
            child.terminate()
            child.wait(timeout=30)


def _start_gateway(host: str, port: int, level: str) -> subprocess.Popen[bytes]:
    """The gateway as a child process on the same settings (its own event loop and GIL)."""
    note(f"gateway (OpenAI-compatible) on http://{host}:{port}/v1", style="green")
    argv = [sys.executable, "-m", "uvicorn", "--factory", "suanwang.bootstrap:gateway_app_from_env"]
    argv += ["--host", host, "--port", str(port), "--log-level", level, "--no-access-log"]
    return subprocess.Popen(argv, preexec_fn=_die_with_parent)


def _die_with_parent() -> None:
    """In the child: get SIGTERM when the server dies, however it dies (Linux prctl).

    uvicorn re-raises SIGTERM after its own shutdown, so the server's ``finally`` does not
    always run; without this the gateway would outlive it.
    """
    import ctypes

    pr_set_pdeathsig = 1
    ctypes.CDLL(None, use_errno=True).prctl(pr_set_pdeathsig, signal.SIGTERM)


def init(
    demo: Annotated[
        bool, typer.Option("--demo/--no-demo", help="load the demo fleet when the fleet is empty")
    ] = True,
    models: Annotated[
        bool,
        typer.Option(
            "--models/--no-models",
            envvar="SUANWANG_DEMO_MODELS",
            help="deploy the demo models (SmolLM2 on this machine, simulated big models)",
        ),
    ] = False,
) -> None:
    """Set up this machine: database, operator key file and (by default) the demo fleet."""
    settings = load_settings()
    os.umask(0o077)
    from suanwang.bootstrap import build_platform
    from suanwang.observability import configure_logging

    configure_logging("warning", settings.log_json)  # this command reports what it did itself

    with err.status("migrating the database"):
        platform = build_platform(settings)
    say(f"database ready (data dir: {settings.data_dir.resolve()})")
    say(ensure_operator_key(platform, settings.operator_key_file.resolve()))
    from suanwang.bootstrap import ensure_transfer_ca

    ensure_transfer_ca(settings)
    say("transfer CA ready (suanwang agents register issues agent certificates)")
    say(_init_fleet(platform, demo))
    if models and demo:
        from suanwang.services.demo import deploy_demo_models

        for line in deploy_demo_models(platform):
            say(f"model: {line}")
    _next_steps(platform)


def ensure_operator_key(platform: Platform, path: Path) -> str:
    """Keep a valid key in ``path``, or write a new operator key there (mode 0600)."""
    from suanwang.domain.errors import Unauthenticated

    try:
        existing = path.read_text(encoding="utf-8").strip()
    except FileNotFoundError:
        existing = ""
    if existing:
        try:
            platform.tenancy.authenticate(existing)
        except Unauthenticated:
            pass  # revoked, expired, or from another database: replace it below
        else:
            return f"operator key: kept {path}"
    new = platform.tenancy.bootstrap_operator_key("operator (suanwang init)")
    write_secret(path, new.secret)
    return f"operator key: written to {path} (mode 0600; commands on this machine use it)"


def write_secret(path: Path, secret: str) -> None:
    """Write ``secret`` to ``path`` atomically, readable by the owner only."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(secret + "\n")
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def _init_fleet(platform: Platform, demo: bool) -> str:
    if not platform.fleet.is_empty():
        return "fleet: already set up, left as it is"
    if not demo:
        return "fleet: empty (load one with 'suanwang fleet apply FILE' or 'suanwang demo load')"
    from suanwang.services.demo import load_demo

    with err.status("loading the demo fleet"):
        result = load_demo(platform)
    summary = apply_summary(
        {
            "created": result.created,
            "updated": result.updated,
            "deleted": result.deleted,
            "unchanged": result.unchanged,
            "changed": result.changed,
        }
    )
    return summary.replace("fleet applied", "demo fleet loaded", 1)


def _next_steps(platform: Platform) -> None:
    from suanwang.domain.tenancy import Principal, Scope

    system = Principal("system", Scope.OPERATOR, None)
    has_demo = any(t.id == "demo" for t in platform.tenancy.tenants(system))
    steps = ["suanwang server        # start the API and the gateway; leave it running"]
    if not has_demo:
        steps.append("suanwang tenants create demo --quota cpu=4")
    steps += [
        "export SUANWANG_API_KEY=$(suanwang keys create --tenant demo --scope tenant-admin -q)",
        "suanwang jobs submit --chip cpu --wait -- python -c \"print('hello from suanwang')\"",
        "suanwang jobs submit --chip ascend-910b --cards 8 --nodes 16 --simulate-duration 3600",
        "suanwang top",
    ]
    say("\nNext steps (in another shell, with the same SUANWANG_DATA_DIR):", style="bold")
    for step in steps:
        say(f"  {step}")


def top(
    ctx: typer.Context,
    watch: Annotated[bool, typer.Option("--watch", "-w", help="refresh until Ctrl-C")] = False,
    interval: Annotated[float, typer.Option(help="seconds between refreshes")] = 2.0,
    as_json: JsonOpt = False,
) -> None:
    """Fleet totals, jobs by state and the running jobs."""
    st = state(ctx, as_json)
    with st.client() as api:
        if st.json:
            emit_json(snapshot(api))
        elif not watch:
            out.print(render_top(snapshot(api)))
        else:
            _watch(api, max(0.2, interval))


def snapshot(api: ApiClient) -> dict[str, Any]:
    """What ``top`` shows: totals, job counts (over the newest jobs) and active jobs."""
    recent = api.call("GET", "/api/v1/jobs", params={"limit": TOP_SAMPLE})
    active = api.call(
        "GET", "/api/v1/jobs", params={"state": ["admitted", "running"], "limit": 100}
    )
    counts = Counter(j["state"] for j in recent)
    return {
        "totals": api.call("GET", "/api/v1/fleet/totals"),
        "jobs_by_state": {s: counts.get(s, 0) for s in JOB_STATES},
        "sampled_jobs": len(recent),
        "active": active,
    }


def render_top(snap: dict[str, Any]) -> RenderableType:
    """Rich tables for a :func:`snapshot`."""
    by_state = new_table("Jobs by state", JOB_STATES, numbers=JOB_STATES)
    by_state.add_row(*(f"{snap['jobs_by_state'][s]:,}" for s in JOB_STATES))
    if snap["sampled_jobs"] >= TOP_SAMPLE:
        by_state.caption = f"over the newest {TOP_SAMPLE:,} jobs"
    active = jobs_table(snap["active"], "Running jobs")
    if not snap["active"]:
        active.caption = "no job is running"
    return Group(totals_table(snap["totals"]), by_state, active)


def _watch(api: ApiClient, interval: float) -> None:
    with Live(render_top(snapshot(api)), console=out, auto_refresh=False) as live:
        try:
            while True:
                time.sleep(interval)
                try:
                    view: RenderableType = render_top(snapshot(api))
                except CliError as exc:
                    view = Text(exc.line() + " (retrying)", style="red")
                live.update(view, refresh=True)
        except KeyboardInterrupt:
            pass
