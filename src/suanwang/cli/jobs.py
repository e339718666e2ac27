"""``suanwang jobs …``: submit, list, show, logs and cancel."""

from __future__ import annotations

import shlex
import sys
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table
from rich.text import Text

from suanwang.cli.client import ApiClient, CliError
from suanwang.cli.common import (
    JsonOpt,
    cell,
    duration,
    emit_json,
    emit_line,
    err,
    new_table,
    note,
    out,
    parse_pairs,
    say,
    segment,
    state,
    when,
)
from suanwang.cli.fleet import kind_text

jobs_app = typer.Typer(help="Submit, watch and cancel jobs.", no_args_is_help=True)

TERMINAL = frozenset({"succeeded", "failed", "cancelled"})
STATE_STYLES = {
    "succeeded": "green",
    "failed": "red",
    "cancelled": "yellow",
    "running": "cyan",
    "admitted": "cyan",
    "queued": "blue",
    "preempted": "magenta",
}
WIDE = 110  # terminal columns from which tables show optional columns
POLL_MIN_S = 0.2
POLL_MAX_S = 2.0


def job_path(job_id: str, suffix: str = "") -> str:
    """The API path of a job (``suffix`` e.g. ``/logs``)."""
    return f"/api/v1/jobs/{segment(job_id)}{suffix}"


def state_text(value: str) -> Text:
    """A job state, coloured."""
    return Text(value, style=STATE_STYLES.get(value, ""))


def resources_text(spec: dict[str, Any]) -> str:
    """What a job asked for: ``NODESxCARDS CHIP``, e.g. ``1250x8 ascend-910b``."""
    res = spec.get("resources", {})
    chips = "|".join(res.get("chips") or [res.get("chip", "any")])
    text = f"{res.get('nodes', 1)}x{res.get('cards_per_node', 1)} {chips}"
    where = [v for v in (res.get("cluster"), res.get("region")) if v]
    return text + (f" @ {'/'.join(where)}" if where else "")


def _default_name(command: list[str], simulated: bool) -> str:
    if command:
        return (Path(command[0]).name or "job")[:200]
    return "simulated" if simulated else "job"


def _chip_field(chips: list[str] | None) -> str | list[str]:
    """``--chip`` as the API takes it: one selector, or the list of accepted ones."""
    if not chips:
        return "any"
    return chips[0] if len(chips) == 1 else chips


def submit_body(command: list[str], opts: dict[str, Any]) -> dict[str, Any]:
    """The JSON body of ``POST /api/v1/jobs`` from the command and the submit options."""
    simulated = opts["simulate_duration"] is not None
    return {
        "name": opts["name"] or _default_name(command, simulated),
        "command": command,
        "env": parse_pairs(opts["env"] or [], "--env", "KEY=VALUE"),
        "working_dir": opts["workdir"],
        "resources": {
            "chip": _chip_field(opts["chip"]),
            "cards_per_node": opts["cards"],
            "nodes": opts["nodes"],
            "cluster": opts["cluster"],
            "region": opts["region"],
        },
        "priority": opts["priority"],
        "priority_class": opts["priority_class"],
        "max_runtime_s": opts["max_runtime"],
        "retries": opts["retries"],
        "simulate": {"duration_s": opts["simulate_duration"]} if simulated else None,
        "expected_duration_s": opts["expected_duration"],
        "checkpoint_interval_s": opts["checkpoint_interval"],
        "preemption_grace_s": opts.get("preemption_grace"),
        "kind": opts["kind"],
        "speed": _speeds(opts["speed"] or []),
        "network": opts["network"],
        "gang": opts.get("gang") or "spread",
        "dataset": opts.get("dataset"),
    }


def _speeds(values: list[str]) -> dict[str, float]:
    """``--speed h20=2.5`` pairs as numbers; CliError naming the option for a bad one."""
    speeds = {}
    for chip, text in parse_pairs(values, "--speed", "h20=2.5").items():
        try:
            speeds[chip] = float(text)
        except ValueError:
            raise CliError(
                f"--speed {chip}={text!r}: not a number", field="--speed", hint="e.g. h20=2.5"
            ) from None
    return speeds


@jobs_app.command("submit")
def submit(
    ctx: typer.Context,
    command: Annotated[
        list[str] | None,
        typer.Argument(
            help="the command to run, after -- (e.g. -- python train.py)", show_default=False
        ),
    ] = None,
    name: Annotated[str | None, typer.Option(help="job name (default: the program's name)")] = None,
    chip: Annotated[
        list[str] | None,
        typer.Option(
            help="chip name, chip family, or 'any' (default); repeat to accept several, "
            "e.g. --chip nvidia-h20 --chip ascend (quota: the family it is admitted on)",
            show_default=False,
        ),
    ] = None,
    cards: Annotated[int, typer.Option(help="cards (or cpu slots) per node")] = 1,
    nodes: Annotated[int, typer.Option(help="nodes, all in one cluster")] = 1,
    cluster: Annotated[str | None, typer.Option(help="only this cluster")] = None,
    region: Annotated[str | None, typer.Option(help="only this region")] = None,
    priority: Annotated[int, typer.Option(help="-1000 to 1000; higher runs first")] = 0,
    priority_class: Annotated[
        str | None, typer.Option(help="a named class instead of --priority (fleet classes)")
    ] = None,
    max_runtime: Annotated[
        int | None, typer.Option(help="seconds before the job is stopped")
    ] = None,
    retries: Annotated[int, typer.Option(help="extra attempts after a failure")] = 0,
    env: Annotated[
        list[str] | None,
        typer.Option("--env", "-e", help="KEY=VALUE, repeatable", show_default=False),
    ] = None,
    workdir: Annotated[
        str | None,
        typer.Option(
            help="working directory inside the job's own directory: relative, or under /job "
            "(default: /job)",
            show_default=False,
        ),
    ] = None,
    simulate_duration: Annotated[
        float | None,
        typer.Option(help="run on a SIMULATED cluster for this many simulated seconds"),
    ] = None,
    expected_duration: Annotated[
        float | None,
        typer.Option(help="your run-time estimate in seconds on the reference chip (backfill)"),
    ] = None,
    checkpoint_interval: Annotated[
        float | None, typer.Option(help="seconds between checkpoints (cheaper to preempt)")
    ] = None,
    preemption_grace: Annotated[
        float | None,
        typer.Option(help="seconds from SIGTERM to SIGKILL when stopped (time to checkpoint)"),
    ] = None,
    kind: Annotated[
        str | None, typer.Option(help="workload kind; jobs of one kind share learned chip speeds")
    ] = None,
    speed: Annotated[
        list[str] | None,
        typer.Option(help="CHIP=SPEED vs the reference chip, repeatable", show_default=False),
    ] = None,
    network: Annotated[
        str,
        typer.Option(
            help="none (no network) or gateway (the platform's gateway only, at "
            "$SUANWANG_GATEWAY_URL; the job needs an API key)"
        ),
    ] = "none",
    gang: Annotated[
        str,
        typer.Option(
            help="multi-node jobs: spread (each node on its own machine) or pack (nodes may "
            "share a machine; Ray clusters)"
        ),
    ] = "spread",
    dataset: Annotated[
        str | None,
        typer.Option(
            help="one of your datasets: read-only at /data/input ($SUANWANG_DATASET_DIR); "
            "the job runs where a replica is",
            show_default=False,
        ),
    ] = None,
    output_dataset: Annotated[
        str | None,
        typer.Option(
            help="on success, register --output-path as this new dataset of yours",
            show_default=False,
        ),
    ] = None,
    output_path: Annotated[
        str | None,
        typer.Option(help="with --output-dataset: a directory below /job (default output)"),
    ] = None,
    idempotency_key: Annotated[
        str | None, typer.Option(help="retrying with the same key returns the same job")
    ] = None,
    wait: Annotated[bool, typer.Option("--wait", help="wait until the job ends")] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="print only the job id")] = False,
    as_json: JsonOpt = False,
) -> None:
    """Submit a job: suanwang jobs submit [OPTIONS] -- COMMAND [ARGS]..."""
    opts = {
        "name": name, "chip": chip, "cards": cards, "nodes": nodes, "cluster": cluster,
        "region": region, "priority": priority, "max_runtime": max_runtime, "retries": retries,
        "env": env, "workdir": workdir, "simulate_duration": simulate_duration,
        "expected_duration": expected_duration, "checkpoint_interval": checkpoint_interval,
        "kind": kind, "speed": speed, "priority_class": priority_class, "network": network,
        "gang": gang, "preemption_grace": preemption_grace, "dataset": dataset,
    }  # fmt: skip
    body = submit_body(list(command or []), opts)
    if output_dataset is not None or output_path is not None:
        body |= {"output_dataset": output_dataset, "output_path": output_path}
    st = state(ctx, as_json)
    headers = {"Idempotency-Key": idempotency_key} if idempotency_key else None
    with st.client() as api:
        job = api.call("POST", "/api/v1/jobs", json=body, headers=headers)
        _report_submitted(job, quiet=quiet, as_json=st.json and not wait)
        if wait:
            _finish(wait_for(api, job["id"]), quiet=quiet, as_json=st.json)


def _report_submitted(job: dict[str, Any], *, quiet: bool, as_json: bool) -> None:
    if quiet:
        emit_line(job["id"])
    elif as_json:
        emit_json(job)
    else:
        say(f"submitted job {job['id']} ({job['name']}): {job['state']}", style="green")


def wait_for(api: ApiClient, job_id: str) -> dict[str, Any]:
    """Poll a job until it ends (with a spinner on stderr); Ctrl-C stops waiting, not the job."""
    delay = POLL_MIN_S
    try:
        with err.status(Text(f"job {job_id}: waiting")) as status:
            while True:
                job: dict[str, Any] = api.call("GET", job_path(job_id))
                if job["state"] in TERMINAL:
                    return job
                status.update(Text(f"job {job_id}: {job['state']} - {job['reason']}"))
                time.sleep(delay)
                delay = min(POLL_MAX_S, delay * 1.5)
    except KeyboardInterrupt:
        note(
            f"stopped waiting; job {job_id} goes on (suanwang jobs cancel {job_id} stops it)",
            style="yellow",
        )
        raise typer.Exit(130) from None


def _finish(job: dict[str, Any], *, quiet: bool, as_json: bool) -> None:
    """Report a finished job; a job that did not succeed is an error (exit code 1)."""
    if as_json and not quiet:
        emit_json(job)
    if job["state"] != "succeeded":
        raise CliError(
            f"job {job['id']} {job['state']}: {job['reason']}",
            hint=f"suanwang jobs logs {job['id']}",
        )
    message = f"job {job['id']} succeeded"
    if quiet or as_json:
        note(message, style="green")
    else:
        say(message, style="green")


@jobs_app.command("list")
def list_jobs(
    ctx: typer.Context,
    states: Annotated[
        list[str] | None,
        typer.Option("--state", help="only jobs in this state, repeatable", show_default=False),
    ] = None,
    limit: Annotated[int, typer.Option(help="at most this many (newest first)")] = 100,
    as_json: JsonOpt = False,
) -> None:
    """Jobs, newest first (a tenant key sees only its tenant's)."""
    st = state(ctx, as_json)
    with st.client() as api:
        jobs = api.call("GET", "/api/v1/jobs", params={"state": states or [], "limit": limit})
    if st.json:
        emit_json(jobs)
    else:
        out.print(jobs_table(jobs, "Jobs"))


def jobs_table(jobs: Iterable[dict[str, Any]], title: str) -> Table:
    """A Rich table of jobs (with creation times when the terminal is wide)."""
    wide = out.width >= WIDE
    columns = ("Id", "Name", "Tenant", "State", "Asked", *(("Created",) if wide else ()), "Reason")
    table = new_table(title, columns, wrap=("Name", "Reason"))
    for j in jobs:
        created = (when(j["created_at"], short=True),) if wide else ()
        table.add_row(
            cell(j["id"]),
            cell(j["name"]),
            cell(j["tenant"]),
            state_text(j["state"]),
            cell(resources_text(j["spec"])),
            *created,
            cell(j["reason"]),
        )
    return table


@jobs_app.command("show")
def show(
    ctx: typer.Context,
    job_id: Annotated[str, typer.Argument(metavar="ID", help="job id", show_default=False)],
    as_json: JsonOpt = False,
) -> None:
    """A job: state, reason, what it asked for, attempts and events."""
    st = state(ctx, as_json)
    with st.client() as api:
        job = api.call("GET", job_path(job_id))
    if st.json:
        emit_json(job)
        return
    _show_summary(job)
    if job.get("attempt_history"):
        out.print(attempts_table(job["attempt_history"]))
    if job.get("events"):
        out.print(events_table(job["events"]))


def _show_summary(job: dict[str, Any]) -> None:
    spec = job["spec"]
    simulated = spec.get("simulate_duration_s") is not None
    out.print(
        Text.assemble(
            ("job ", "bold"),
            (job["id"], "bold"),
            f"  {job['name']}  ",
            ("tenant ", "dim"),
            job["tenant"],
        ),
        soft_wrap=True,
    )
    out.print(
        Text.assemble("state: ", state_text(job["state"]), f" - {job['reason']}"), soft_wrap=True
    )
    kind = (
        f"SIMULATED job, {spec['simulate_duration_s']:g} simulated seconds"
        if simulated
        else "real job"
    )
    say(f"asked for: {resources_text(spec)} ({kind})")
    if job.get("placement_hint"):
        say(f"placement hint: {job['placement_hint']} (moved there by reallocation)")
    if spec.get("command"):
        say(f"command: {shlex.join(spec['command'])}")
    if spec.get("network"):
        say(f"network: {spec['network']}")
    if spec.get("gang"):
        say(f"gang: {spec['gang']}")
    if spec.get("working_dir"):
        say(f"working dir: {spec['working_dir']}")
    if spec.get("env"):
        say(f"env: {', '.join(sorted(spec['env']))}")
    cancelling = ", cancel requested" if job["cancel_requested"] else ""
    say(
        f"priority {job['priority']}, retries {spec.get('retries', 0)}, "
        f"attempts {job['attempts']}, created {when(job['created_at'])}{cancelling}"
    )
    if job.get("resumes"):
        say(
            f"resumed {job['resumes']} time(s) after preemption, a move or exit 75; "
            f"work lost: {job.get('lost_work_s') or 0:.1f} s after last checkpoints"
        )


def _nodes_text(nodes: list[str]) -> str:
    if len(nodes) <= 2:
        return ", ".join(nodes) or "-"
    return f"{len(nodes):,} nodes"


def attempts_table(attempts: list[dict[str, Any]]) -> Table:
    """A Rich table of a job's attempts."""
    table = new_table(
        "Attempts",
        ("#", "State", "Cluster", "Kind", "Chip", "Cards", "Nodes", "Exit", "Ran", "Reason"),
        numbers=("#", "Cards", "Exit", "Ran"),
        wrap=("Nodes", "Reason"),
    )
    for a in attempts:
        table.add_row(
            str(a["number"]),
            state_text(a["state"]),
            cell(a["cluster"]),
            kind_text(a["simulated"]),
            cell(a["chip"]),
            f"{a['cards']:,}",
            cell(_nodes_text(a["nodes"])),
            cell(a["exit_code"]),
            duration(a["started_at"], a["ended_at"]),
            cell(a["reason"]),
        )
    return table


def events_table(events: list[dict[str, Any]]) -> Table:
    """A Rich table of a job's events, oldest first."""
    table = new_table("Events", ("Time", "State", "Reason"), wrap=("Reason",))
    for e in events:
        table.add_row(when(e["at"]), state_text(e["state"]), cell(e["reason"]))
    return table


@jobs_app.command("logs")
def logs(
    ctx: typer.Context,
    job_id: Annotated[str, typer.Argument(metavar="ID", help="job id", show_default=False)],
    follow: Annotated[
        bool, typer.Option("--follow", "-f", help="stream until the job ends")
    ] = False,
    attempt: Annotated[int | None, typer.Option(help="this attempt (default: the latest)")] = None,
) -> None:
    """The output (stdout and stderr) of a job's latest or given attempt."""
    with state(ctx).client() as api:
        if follow:
            params: dict[str, Any] = {"follow": "true"}
            if attempt is not None:
                params["attempt"] = attempt
            written = _write_all(api.stream(job_path(job_id, "/logs"), params=params))
        else:
            written = _read_logs(api, job_id, attempt)
    if written == 0:
        note(f"job {job_id} has no output (yet)")


def _read_logs(api: ApiClient, job_id: str, attempt: int | None) -> int:
    written = 0
    while True:
        params: dict[str, Any] = {"offset": written}
        if attempt is not None:
            params["attempt"] = attempt
        chunk = api.read_bytes(job_path(job_id, "/logs"), params=params)
        if not chunk:
            return written
        written += _write_all([chunk])


def _write_all(chunks: Iterable[bytes]) -> int:
    written = 0
    for chunk in chunks:
        sys.stdout.buffer.write(chunk)
        sys.stdout.buffer.flush()
        written += len(chunk)
    return written


@jobs_app.command("cancel")
def cancel(
    ctx: typer.Context,
    job_id: Annotated[str, typer.Argument(metavar="ID", help="job id", show_default=False)],
    as_json: JsonOpt = False,
) -> None:
    """Cancel a job: at once when queued; running ones get SIGTERM, then SIGKILL after a grace."""
    st = state(ctx, as_json)
    with st.client() as api:
        job = api.call("POST", job_path(job_id, "/cancel"))
    if st.json:
        emit_json(job)
    elif job["state"] == "cancelled":
        say(f"cancelled job {job['id']}", style="green")
    else:
        say(
            f"cancel requested for job {job['id']} ({job['state']}); it stops shortly",
            style="yellow",
        )
