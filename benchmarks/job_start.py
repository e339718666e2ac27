"""Job start latency on the local cluster: submit → first line of output, submit → succeeded.

A real control plane (``suanwang server --no-gateway``, SQLite, its own data directory) runs
tenant jobs on a local cluster of 16 cpu slots. Two commands are timed:

- ``python``: ``python -c 'import time; print(time.time())'``, the smallest Python job; the
  line it prints is the moment its first output was written (stamped by the job itself, so
  no log polling blurs it);
- ``true``: ``/bin/true``, the smallest job of all (no output).

Each runs ``--jobs`` times one at a time (*serial*), then ``--rounds`` rounds of 8 submitted
at once (*concurrent*, as traffic arrives). Reported per case, p50/p95/max in seconds:

- ``first_line_s``: POST /jobs sent → the job printed its first line (``python`` only);
- ``succeeded_s``: POST /jobs sent → the control plane recorded ``succeeded`` (the event's
  time; it sees the end on its next tick, so this includes up to one ``--tick-s``);
- ``accepted_s``: POST /jobs sent → its 201 received.

The machine's load average is recorded before and after each case: this VM is shared by
other processes, so compare runs only next to their load. Results go to
``benchmarks/results/NAME.json`` and ``NAME.md`` (``--name``, default ``job_start``).

Run: ``.venv/bin/python benchmarks/job_start.py [--jobs 20] [--rounds 3] [--name job_start]``
as a user allowed to start tenant jobs (root, or with ``SUANWANG_LOCAL_ISOLATION`` set).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx

import suanwang
from suanwang.bootstrap import build_platform
from suanwang.config import Settings
from suanwang.domain.tenancy import Principal, Scope
from suanwang.observability import configure_logging

RESULTS = Path(__file__).parent / "results"
CONCURRENCY = 8
FLEET = """
regions: [{name: here}]
clusters:
  - {name: local, region: here, kind: real, nodes: [{name: n1, chip: cpu, cards: 16}]}
"""
COMMANDS: dict[str, list[str]] = {
    "python": [sys.executable, "-c", "import time; print(repr(time.time()), flush=True)"],
    "true": ["true"],
}
JOB_TIMEOUT_S = 120.0
POLL_S = 0.1


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def prepare(data_dir: Path) -> str:
    """Migrate, load the fleet and a tenant; returns a tenant-member key."""
    configure_logging("warning", False)
    platform = build_platform(Settings(data_dir=data_dir))
    platform.fleet.apply_yaml(FLEET)
    platform.tenancy.create_tenant("bench", "Bench", {})
    key = platform.tenancy.create_key(
        Principal("op", Scope.OPERATOR, None),
        tenant="bench",
        scope=Scope.TENANT_MEMBER,
        name="job-start benchmark",
        expires_in_s=None,
    )
    platform.uows.engine.dispose()  # type: ignore[attr-defined]
    return key.secret


def start_server(data_dir: Path, port: int, tick_s: float) -> subprocess.Popen[bytes]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SUANWANG_")}
    for name in ("SUANWANG_LOCAL_ISOLATION",):  # the one knob a run may choose
        if name in os.environ:
            env[name] = os.environ[name]
    env |= {
        "SUANWANG_DATA_DIR": str(data_dir),
        "SUANWANG_PORT": str(port),
        "SUANWANG_TICK_S": str(tick_s),
        "SUANWANG_LOG_LEVEL": "warning",
    }
    argv = [sys.executable, "-m", "suanwang.cli.main", "server", "--no-gateway"]
    log = (data_dir.parent / "server.log").open("ab")
    proc = subprocess.Popen(argv, env=env, stdout=log, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200:
                return proc
        except httpx.TransportError:
            time.sleep(0.1)
        if proc.poll() is not None:
            break
    proc.kill()
    raise SystemExit(f"the server did not come up; see {data_dir.parent / 'server.log'}")


def run_one(client: httpx.Client, command: str) -> dict[str, float]:
    """Submit one job and wait until it ends; returns its latencies in seconds."""
    sent = time.time()
    response = client.post(
        "/api/v1/jobs",
        json={
            "name": f"bench-{command}",
            "command": COMMANDS[command],
            "resources": {"chip": "cpu"},
        },
    )
    accepted = time.time()
    response.raise_for_status()
    job_id = response.json()["id"]
    deadline = time.monotonic() + JOB_TIMEOUT_S
    while time.monotonic() < deadline:
        job = client.get(f"/api/v1/jobs/{job_id}").json()
        if job["state"] in ("succeeded", "failed", "cancelled"):
            break
        time.sleep(POLL_S)
    else:
        raise SystemExit(f"job {job_id} did not end in {JOB_TIMEOUT_S} s")
    if job["state"] != "succeeded":
        raise SystemExit(f"job {job_id} {job['state']}: {job['reason']}")
    ended = max(e["at"] for e in job["events"] if e["state"] == "succeeded")
    result = {"accepted_s": accepted - sent, "succeeded_s": ended - sent}
    if command == "python":
        output = client.get(f"/api/v1/jobs/{job_id}/logs").text.split()
        result["first_line_s"] = float(output[0]) - sent
    return result


def summary(samples: list[dict[str, float]]) -> dict[str, dict[str, float]]:
    """p50 / p95 / max of each latency over the samples."""
    out: dict[str, dict[str, float]] = {}
    for metric in sorted(samples[0]):
        values = sorted(s[metric] for s in samples)
        p95 = values[min(len(values) - 1, round(0.95 * (len(values) - 1)))]
        out[metric] = {
            "p50": round(statistics.median(values), 4),
            "p95": round(p95, 4),
            "max": round(values[-1], 4),
        }
    return out


def measure(client: httpx.Client, command: str, jobs: int, rounds: int) -> list[dict[str, Any]]:
    cases: list[dict[str, Any]] = []
    load_before = os.getloadavg()
    serial = [run_one(client, command) for _ in range(jobs)]
    cases.append(case(command, "serial", serial, load_before))
    load_before = os.getloadavg()
    concurrent: list[dict[str, float]] = []
    with ThreadPoolExecutor(CONCURRENCY) as pool:
        for _ in range(rounds):
            concurrent += pool.map(lambda _: run_one(client, command), range(CONCURRENCY))
    cases.append(case(command, f"{CONCURRENCY} at once", concurrent, load_before))
    return cases


def case(
    command: str, mode: str, samples: list[dict[str, float]], load_before: tuple[float, ...]
) -> dict[str, Any]:
    return {
        "command": command,
        "mode": mode,
        "jobs": len(samples),
        "latency_s": summary(samples),
        "load_average_before": [round(x, 2) for x in load_before],
        "load_average_after": [round(x, 2) for x in os.getloadavg()],
    }


def git_commit() -> str:
    """The commit of the suanwang sources the server runs (``PYTHONPATH`` may pick them)."""
    try:
        done = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            check=True,
            cwd=Path(suanwang.__file__).parent,
        )
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return done.stdout.strip()


def markdown(result: dict[str, Any]) -> str:
    lines = [
        f"# Job start latency on the local cluster ({result['name']})",
        "",
        f"Commit {result['commit']}, tick {result['tick_s']} s, isolation "
        f"`{result['isolation']}`, {result['cpus']} CPUs shared with other work; "
        "seconds from POST /jobs sent.",
        "",
        "| command | mode | jobs | first line p50 | p95 | succeeded p50 | p95 | 201 p50 "
        "| load 1m before → after |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for c in result["cases"]:
        lat = c["latency_s"]
        first = lat.get("first_line_s", {"p50": "–", "p95": "–"})
        lines.append(
            f"| `{c['command']}` | {c['mode']} | {c['jobs']} | {first['p50']} | {first['p95']} "
            f"| {lat['succeeded_s']['p50']} | {lat['succeeded_s']['p95']} "
            f"| {lat['accepted_s']['p50']} "
            f"| {c['load_average_before'][0]} → {c['load_average_after'][0]} |"
        )
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--jobs", type=int, default=20, help="jobs one at a time, per command")
    parser.add_argument("--rounds", type=int, default=3, help="rounds of 8 jobs at once")
    parser.add_argument("--tick-s", type=float, default=0.1, help="control-loop period")
    parser.add_argument("--name", default="job_start", help="results file name (no suffix)")
    args = parser.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="suanwang-job-start-"))
    os.chmod(workdir, 0o755)  # tenant uids must be able to traverse to their run directories
    data_dir = workdir / "data"
    key = prepare(data_dir)
    port = free_port()
    server = start_server(data_dir, port, args.tick_s)
    try:
        with httpx.Client(
            base_url=f"http://127.0.0.1:{port}",
            headers={"Authorization": f"Bearer {key}"},
            timeout=30,
        ) as client:
            cases = [c for cmd in COMMANDS for c in measure(client, cmd, args.jobs, args.rounds)]
    finally:
        server.terminate()
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
    result = {
        "name": args.name,
        "commit": git_commit(),
        "tick_s": args.tick_s,
        "isolation": os.environ.get("SUANWANG_LOCAL_ISOLATION", "default"),
        "cpus": os.cpu_count(),
        "cases": cases,
    }
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / f"{args.name}.json").write_text(json.dumps(result, indent=2) + "\n")
    (RESULTS / f"{args.name}.md").write_text(markdown(result))
    print(markdown(result))
    shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
