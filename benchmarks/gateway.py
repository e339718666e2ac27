"""Gateway overhead benchmark: direct to a mock engine vs through the gateway, in one run.

Starts the fast mock OpenAI engine (``benchmarks/mock_openai.py``, demanding its own bearer
key) and one gateway process (``uvicorn --factory suanwang.bootstrap:gateway_app_from_env``)
on a fresh SQLite database where the mock is registered as an external endpoint (with its
key as the credential, the way an operator registers a partner's API), with a tenant whose
key has rate limits and a token quota set (so authentication, limits, quota reservation and
metering into the ledger all run), then drives both with a small
raw-asyncio HTTP/1.1 keep-alive client (cheap, so the client steals little CPU) at
concurrency 1, 16 and 64, streaming and not. For each case: requests/s, p50/p99 latency,
the added p50 latency (gateway − direct), and the gateway process's CPU milliseconds per
request (utime + stime from ``/proc/<pid>/stat``).

Run: ``.venv/bin/python benchmarks/gateway.py [--seconds 3] [--redis]``.
Writes ``benchmarks/results/gateway.json`` and ``.md``. Goal: < 2 ms p50 added and < 1 ms
of gateway CPU per request.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import secrets
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import sqlalchemy as sa

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks/results"
CHAT = "smollm2-135m-instruct"
TICKS = os.sysconf("SC_CLK_TCK")
MOCK_KEY = f"sk-mock-{secrets.token_hex(8)}"
"""The mock engine's own key: sent by the direct client, and upstream by the gateway."""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def cpu_ms(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) * 1000 / TICKS


def wait_up(url: str, timeout_s: float = 60) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            if httpx.get(url, timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            time.sleep(0.1)
    raise SystemExit(f"{url} did not come up")


# --- a minimal keep-alive HTTP/1.1 client -------------------------------------------------
async def read_response(reader: asyncio.StreamReader) -> int:
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    headers = {
        k.strip().lower(): v.strip()
        for k, _, v in (line.partition(b":") for line in head.split(b"\r\n")[1:] if line)
    }
    if b"content-length" in headers:
        await reader.readexactly(int(headers[b"content-length"]))
    elif headers.get(b"transfer-encoding") == b"chunked":
        while True:
            size = int((await reader.readline()).strip(), 16)
            await reader.readexactly(size + 2)
            if size == 0:
                break
    return status


async def worker(port: int, request: bytes, stop_at: float, out: list[float]) -> int:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    errors = 0
    try:
        while time.perf_counter() < stop_at:
            start = time.perf_counter()
            writer.write(request)
            status = await read_response(reader)
            out.append(time.perf_counter() - start)
            errors += status != 200
    finally:
        writer.close()
    return errors


def make_request(port: int, path: str, body: dict[str, Any], key: str | None) -> bytes:
    data = json.dumps(body).encode()
    lines = [
        f"POST {path} HTTP/1.1",
        f"Host: 127.0.0.1:{port}",
        "Content-Type: application/json",
        f"Content-Length: {len(data)}",
    ]
    if key:
        lines.append(f"Authorization: Bearer {key}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + data


async def drive(port: int, request: bytes, concurrency: int, seconds: float) -> dict[str, Any]:
    for _ in range(3):  # warm the connections and caches
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(request)
        await read_response(reader)
        writer.close()
    latencies: list[float] = []
    started = time.perf_counter()
    stop_at = started + seconds
    errors = await asyncio.gather(
        *(worker(port, request, stop_at, latencies) for _ in range(concurrency))
    )
    elapsed = time.perf_counter() - started
    latencies.sort()
    return {
        "requests": len(latencies),
        "errors": sum(errors),
        "rps": round(len(latencies) / elapsed, 1),
        "p50_ms": round(statistics.median(latencies) * 1000, 3),
        "p99_ms": round(latencies[int(len(latencies) * 0.99) - 1] * 1000, 3),
    }


# --- set-up ---------------------------------------------------------------------------------
def bench_tenant(tmp: Path) -> tuple[Any, Any, str, str]:
    """A migrated SQLite database in ``tmp`` with tenant ``bench`` (limits too high to
    matter) and a key of it allowed :data:`CHAT`: (platform, operator, database URL, key)."""
    from suanwang.bootstrap import build_platform
    from suanwang.config import Settings
    from suanwang.domain.limits import KeyLimits, TenantLimits
    from suanwang.domain.tenancy import Principal, Scope
    from suanwang.services.limits import GatewayLimits

    db_url = f"sqlite:///{tmp / 'bench.db'}"
    platform_ = build_platform(Settings(data_dir=tmp, database_url=db_url))
    op = Principal("system", Scope.OPERATOR, None)
    platform_.tenancy.create_tenant("bench", "bench", {})
    key = platform_.tenancy.create_key(
        op, tenant="bench", scope=Scope.TENANT_MEMBER, name="bench", expires_in_s=None
    )
    limits = GatewayLimits(platform_.uows, platform_.clock)
    limits.set_tenant_limits(
        op, "bench", TenantLimits(rpm=10**9, tpm=10**12, token_quota=10**13, period_s=86400)
    )
    limits.set_key_limits(op, key.record.id, KeyLimits(rpm=10**9, tpm=10**12, models=(CHAT,)))
    return platform_, op, db_url, key.secret


def setup_database(tmp: Path, mock_port: int) -> tuple[str, str]:
    from suanwang.services.external import ExternalSpec

    platform_, op, db_url, secret = bench_tenant(tmp)
    # the mock is an external OpenAI-compatible endpoint, registered as an operator would
    # (`suanwang models external add`): on 127.0.0.1, so with the explicit exemption
    spec = ExternalSpec(
        CHAT,
        f"http://127.0.0.1:{mock_port}/v1",
        credential=MOCK_KEY,
        allow_private_network=True,
    )
    dep = platform_.externals.register(op, spec).deployment.id
    platform_.externals.check_health()  # the control plane's health check makes it ready
    replica = platform_.externals.get(op, dep).replica
    if replica is None or replica.state != "ready":
        raise SystemExit(f"the mock did not pass its health check: {replica}")
    platform_.uows.engine.dispose()
    return db_url, secret


def start(cmd: list[str], env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    with log.open("ab") as out:
        return subprocess.Popen(cmd, env=env, stdout=out, stderr=subprocess.STDOUT)


def run(seconds: float, use_redis: bool) -> dict[str, Any]:
    tmp = Path(tempfile.mkdtemp(prefix="gw-bench-"))
    mock_port, gw_port = free_port(), free_port()
    env = {**os.environ}
    mock = start(
        [
            sys.executable,
            str(ROOT / "benchmarks/mock_openai.py"),
            "--port",
            str(mock_port),
            "--require-key",
            MOCK_KEY,
        ],
        env,
        tmp / "mock.log",
    )
    wait_up(f"http://127.0.0.1:{mock_port}/health")
    db_url, key = setup_database(tmp, mock_port)
    prefix = f"bench:{secrets.token_hex(4)}:"
    env |= {
        "SUANWANG_DATA_DIR": str(tmp),
        "SUANWANG_DATABASE_URL": db_url,
        "SUANWANG_LOG_LEVEL": "warning",
        "SUANWANG_REDIS_PREFIX": prefix,
    }
    if use_redis:
        env["SUANWANG_REDIS_URL"] = "redis://127.0.0.1:6379/0"
    gateway = start(
        [
            sys.executable,
            "-m",
            "uvicorn",
            "--factory",
            "suanwang.bootstrap:gateway_app_from_env",
            "--port",
            str(gw_port),
            "--log-level",
            "warning",
            "--no-access-log",
        ],
        env,
        tmp / "gateway.log",
    )
    wait_up(f"http://127.0.0.1:{gw_port}/health")
    cases = []
    try:
        for stream in (False, True):
            body: dict[str, Any] = {
                "model": CHAT,
                "messages": [{"role": "user", "content": "Say hello in a few words."}],
                "max_tokens": 16,
                "mock": {"chunks": 8},
            }
            if stream:
                body |= {"stream": True, "stream_options": {"include_usage": True}}
            for concurrency in (1, 16, 64):
                direct = asyncio.run(
                    drive(
                        mock_port,
                        make_request(mock_port, "/v1/chat/completions", body, MOCK_KEY),
                        concurrency,
                        seconds,
                    )
                )
                before = cpu_ms(gateway.pid)
                via = asyncio.run(
                    drive(
                        gw_port,
                        make_request(gw_port, "/v1/chat/completions", body, key),
                        concurrency,
                        seconds,
                    )
                )
                via["gateway_cpu_ms_per_request"] = round(
                    (cpu_ms(gateway.pid) - before) / max(1, via["requests"] + 3), 3
                )
                case = {
                    "stream": stream,
                    "concurrency": concurrency,
                    "direct": direct,
                    "gateway": via,
                    "added_p50_ms": round(via["p50_ms"] - direct["p50_ms"], 3),
                    "rps_ratio": round(via["rps"] / direct["rps"], 3),
                }
                print(json.dumps(case))
                cases.append(case)
    finally:
        gateway.terminate()
        mock.terminate()
        gateway.wait(30)
        mock.wait(10)
    with sa.create_engine(db_url).connect() as conn:  # after the gateway flushed on exit
        query = "SELECT count(*) FROM usage_ledger WHERE kind = 'tokens'"
        ledger_rows = int(conn.execute(sa.text(query)).scalar_one())
    return {
        "benchmark": "gateway",
        "seconds_per_case": seconds,
        "limiter": "redis" if use_redis else "in-process",
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
        "load_average_at_end": os.getloadavg(),
        "ledger_rows": ledger_rows,
        "cases": cases,
    }


def markdown(result: dict[str, Any]) -> str:
    lines = [
        "# Gateway overhead (direct to the mock engine vs through the gateway)",
        "",
        f"Limiter: {result['limiter']}; {result['seconds_per_case']} s per case; "
        f"{result['machine']['cpus']} CPUs; load average at end "
        f"{', '.join(f'{x:.1f}' for x in result['load_average_at_end'])}; "
        f"ledger rows written: {result['ledger_rows']} "
        f"(requests: {sum(c['gateway']['requests'] + 3 for c in result['cases'])}).",
        "",
        "| stream | conc. | direct rps | gateway rps | direct p50 ms | gateway p50 ms "
        "| added p50 ms | gateway p99 ms | gateway CPU ms/req | errors |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for c in result["cases"]:
        d, g = c["direct"], c["gateway"]
        lines.append(
            f"| {'yes' if c['stream'] else 'no'} | {c['concurrency']} | {d['rps']} | {g['rps']} "
            f"| {d['p50_ms']} | {g['p50_ms']} | {c['added_p50_ms']} | {g['p99_ms']} "
            f"| {g['gateway_cpu_ms_per_request']} | {d['errors'] + g['errors']} |"
        )
    lines += ["", "Goal: < 2 ms p50 added, < 1 ms gateway CPU per request.", ""]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--redis", action="store_true", help="Redis limiter (several gateways)")
    args = parser.parse_args()
    result = run(args.seconds, args.redis)
    RESULTS.mkdir(parents=True, exist_ok=True)
    name = "gateway_redis" if args.redis else "gateway"
    (RESULTS / f"{name}.json").write_text(json.dumps(result, indent=2) + "\n")
    (RESULTS / f"{name}.md").write_text(markdown(result))
    print(markdown(result))


if __name__ == "__main__":
    main()
