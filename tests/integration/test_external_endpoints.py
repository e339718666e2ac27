"""External OpenAI-compatible endpoints end to end (issue 10, point 5), SQLite and PostgreSQL.

A mock partner API that demands its own bearer key (benchmarks/mock_openai.py
``--require-key``) is registered through the CLI against a real API server process; the
server's health checker probes it with the credential; a real gateway process serves it to
the ``openai`` client, 12 requests at once, streamed and not; every request is in the ledger
under the registered model and deployment and priced on the bill; and the credential appears
in no API answer, no log and nowhere in the database (file and WAL, or every PostgreSQL row).
"""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
import sqlalchemy as sa
from gateway_stack import Stack, _wait_ledger, free_port, make_stack, postgres_database, wait_up

from suanwang.bootstrap import build_platform
from suanwang.domain.limits import KeyLimits, TenantLimits

CLI = [sys.executable, "-m", "suanwang.cli.main"]
MODEL = "partner-chat"
CONCURRENT = 12


@pytest.fixture(params=["sqlite", "postgresql"])
def stack(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Stack]:
    with _database(request.param, tmp_path) as db_url:
        built = make_stack(tmp_path, db_url)
        built.env |= {
            "SUANWANG_LOG_LEVEL": "debug",
            "SUANWANG_TICK_S": "0.2",
            "SUANWANG_EXTERNAL_PROBE_INTERVAL_S": "0.2",
            "NO_COLOR": "1",
            "COLUMNS": "200",
        }
        try:
            yield built
        finally:
            built.stop()


@contextmanager
def _database(kind: str, tmp: Path) -> Iterator[str | None]:
    if kind == "sqlite":
        yield None
        return
    with postgres_database() as url:
        yield url


def start_api(stack: Stack) -> tuple[str, subprocess.Popen[bytes], Path]:
    port = free_port()
    log = stack.tmp / "api.log"
    argv = [sys.executable, "-m", "uvicorn", "--factory", "suanwang.bootstrap:app_from_env"]
    argv += ["--port", str(port), "--log-level", "debug"]
    with log.open("ab") as out:
        proc = subprocess.Popen(argv, env=stack.env, stdout=out, stderr=subprocess.STDOUT)
    wait_up(f"http://127.0.0.1:{port}/healthz", proc, log)
    return f"http://127.0.0.1:{port}", proc, log


def cli(stack: Stack, api: str, key: str, *args: str, env: dict[str, str] | None = None) -> str:
    done = subprocess.run(
        [*CLI, "--url", api, "--key", key, *args],
        env={**stack.env, **(env or {})},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    if done.returncode != 0:
        raise AssertionError(f"exit {done.returncode}: {done.stderr}")
    return done.stdout


def test_registered_endpoint_serves_bills_and_keeps_its_credential_secret(stack: Stack) -> None:
    credential = f"sk-partner-{secrets.token_hex(16)}"
    mock = stack.start_mock("partner", "--require-key", credential)
    platform = build_platform(stack.settings, run_migrations=False)
    op_key = platform.tenancy.bootstrap_operator_key().secret
    platform.uows.engine.dispose()  # type: ignore[attr-defined]
    api, api_proc, api_log = start_api(stack)
    try:
        answers = register_and_serve(stack, api, op_key, credential, mock)
    finally:
        api_proc.terminate()
        api_proc.wait(20)
    logs = [api_log, *stack.tmp.glob("gateway-*.log")]
    assert_nowhere(credential, stack, answers, logs)


def register_and_serve(stack: Stack, api: str, op: str, credential: str, mock: int) -> list[str]:
    base = f"http://127.0.0.1:{mock}/v1"
    refused = subprocess.run(  # 127.0.0.1 needs the explicit exemption
        [*CLI, "--url", api, "--key", op, "models", "external", "add", MODEL, "--base-url", base],
        env=stack.env, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert refused.returncode != 0
    assert "allow-private-network" in refused.stderr
    assert len(refused.stderr.splitlines()) == 1
    added = cli(
        stack, api, op, "models", "external", "add", MODEL, "--base-url", base,
        "--credential-env", "PARTNER_KEY", "--upstream-model", "upstream/chat-v1",
        "--price-in", "2000000", "--price-out", "4000000", "--allow-private-network", "--json",
        env={"PARTNER_KEY": credential},
    )  # fmt: skip
    dep = json.loads(added)
    assert dep["has_credential"]
    assert dep["base_url"] == base
    assert dep["model"] == MODEL
    wait_ready(api, op, dep["id"])
    stack.start_gateway()
    key, _ = stack.tenant_with_key("acme")
    client = openai.OpenAI(base_url=stack.urls[0], api_key=key, max_retries=0)
    wait_routable(client)

    def one(i: int) -> str:
        messages = [{"role": "user", "content": f"hello {i}"}]
        if i % 2:
            stream = client.chat.completions.create(
                model=MODEL, messages=messages, max_tokens=8, stream=True,  # type: ignore[arg-type]
                stream_options={"include_usage": True},
            )  # fmt: skip
            return "".join(c.choices[0].delta.content or "" for c in stream if c.choices)
        answer = client.chat.completions.create(model=MODEL, messages=messages, max_tokens=8)  # type: ignore[arg-type]
        assert answer.model == "upstream/chat-v1"  # the upstream got its own model name
        return answer.choices[0].message.content or ""

    with ThreadPoolExecutor(CONCURRENT) as pool:
        texts = list(pool.map(one, range(CONCURRENT + 1)))
    assert all(t.startswith("t0 t1") for t in texts), texts
    rows = _wait_ledger(stack, "acme", CONCURRENT + 1)
    served = [r for r in rows if r["model"] == MODEL and r["status"] == 200]
    assert len(served) == CONCURRENT + 1, rows
    assert {r["deployment"] for r in served} == {dep["id"]}
    assert all(r["completion_tokens"] == 8 and r["prompt_tokens"] == 2 for r in served)
    # implausible upstream usage: the gateway's own count is billed, and the gateway logs it
    odd = client.chat.completions.create(
        model=MODEL, messages=[{"role": "user", "content": "hello!"}], max_tokens=8,
        extra_body={"mock": {"usage": "huge"}},
    )  # fmt: skip
    assert odd.choices[0].message.content
    rows = _wait_ledger(stack, "acme", CONCURRENT + 2)
    assert sorted(r["completion_tokens"] for r in rows)[0] < 8  # counted by the gateway
    assert_limited_like_any_model(stack)
    answers = [added]
    with httpx.Client(base_url=api, headers={"Authorization": f"Bearer {op}"}) as http:
        month = time.strftime("%Y-%m", time.gmtime())
        bill = http.get(f"/api/v1/tenants/acme/bills/{month}").json()
        lines = {(line["item"], line["meter"]): line for line in bill["lines"]}
        prompt = lines[(MODEL, "prompt_tokens")]
        assert prompt["quantity"] == 2 * (CONCURRENT + 2)
        assert prompt["unit_price_micro"] == 2_000_000
        assert lines[(MODEL, "completion_tokens")]["unit_price_micro"] == 4_000_000
        answers.append(json.dumps(bill))
        for path in ("/api/v1/external-endpoints", f"/api/v1/external-endpoints/{dep['id']}",
                     "/api/v1/deployments", "/api/v1/audit"):  # fmt: skip
            answers.append(http.get(path).text)
    for args in (("list",), ("show", dep["id"]), ("list", "--json")):
        answers.append(cli(stack, api, op, "models", "external", *args))
    stored = database_bytes(stack)  # while the credential is stored: as Fernet ciphertext
    assert b"gAAAAA" in stored
    assert credential.encode() not in stored
    env = {"NEW_KEY": credential + "-v2"}
    rotate = ("models", "external", "rotate-credential", dep["id"], "--credential-env", "NEW_KEY")
    answers.append(cli(stack, api, op, *rotate, "--json", env=env))
    answers.append(cli(stack, api, op, "models", "external", "remove", dep["id"], "--json"))
    return answers


def assert_limited_like_any_model(stack: Stack) -> None:
    """Key allow-lists and rate limits apply to the external model as to any other."""
    messages: Any = [{"role": "user", "content": "hi"}]
    other, _ = stack.tenant_with_key("other", key_limits=KeyLimits(models=("some-model",)))
    with (
        openai.OpenAI(base_url=stack.urls[0], api_key=other, max_retries=0) as client,
        pytest.raises(openai.PermissionDeniedError, match="may not call"),
    ):
        client.chat.completions.create(model=MODEL, messages=messages, max_tokens=4)
    slow, _ = stack.tenant_with_key("slow", tenant_limits=TenantLimits(rpm=2))
    with openai.OpenAI(base_url=stack.urls[0], api_key=slow, max_retries=0) as client:
        for _ in range(2):
            client.chat.completions.create(model=MODEL, messages=messages, max_tokens=4)
        with pytest.raises(openai.RateLimitError):
            client.chat.completions.create(model=MODEL, messages=messages, max_tokens=4)
    assert [r["status"] for r in _wait_ledger(stack, "slow", 3)].count(429) == 1


def wait_ready(api: str, op: str, dep_id: str, timeout_s: float = 20) -> None:
    deadline = time.monotonic() + timeout_s
    state = ""
    while time.monotonic() < deadline:
        got = httpx.get(
            f"{api}/api/v1/external-endpoints/{dep_id}", headers={"Authorization": f"Bearer {op}"}
        ).json()
        state = got["replica_state"]
        if state == "ready":
            return
        time.sleep(0.1)
    raise AssertionError(f"the endpoint never passed its health check: {state} {got['reason']}")


def wait_routable(client: openai.OpenAI, timeout_s: float = 10) -> None:
    deadline = time.monotonic() + timeout_s
    while MODEL not in {m.id for m in client.models.list()}:
        assert time.monotonic() < deadline, "the gateway never routed the endpoint"
        time.sleep(0.1)


def assert_nowhere(credential: str, stack: Stack, answers: list[str], logs: list[Path]) -> None:
    for variant in (credential, credential + "-v2"):
        for text in answers:
            assert variant not in text
        for log in logs:
            assert log.read_bytes(), f"{log} is empty: the check would prove nothing"
            assert variant.encode() not in log.read_bytes(), log
        assert variant.encode() not in database_bytes(stack)
    assert b"sk-partner-" not in database_bytes(stack)


def database_bytes(stack: Stack) -> bytes:
    url = stack.settings.db_url
    if url.startswith("sqlite"):
        path = Path(url.removeprefix("sqlite:///"))
        files = [path.with_name(path.name + s) for s in ("", "-wal", "-shm", "-journal")]
        return b"".join(f.read_bytes() for f in files if f.exists())
    engine = stack.engine()
    out = []
    with engine.connect() as conn:
        for table in sa.inspect(engine).get_table_names():
            for row in conn.execute(sa.text(f'SELECT * FROM "{table}"')):  # names from the DB
                out.append(repr(tuple(row)))
    return "\n".join(out).encode()


def test_credential_key_file_is_private(stack: Stack) -> None:
    platform = build_platform(stack.settings, run_migrations=False)
    platform.uows.engine.dispose()  # type: ignore[attr-defined]
    key_file = stack.settings.data_dir / "credentials.key"
    assert os.stat(key_file).st_mode & 0o077 == 0


def test_rotate_key_reencrypts_every_credential(stack: Stack) -> None:
    from suanwang.adapters.crypto import FernetBox
    from suanwang.domain.tenancy import Principal, Scope
    from suanwang.services.external import ExternalSpec

    op = Principal("op", Scope.OPERATOR, None)
    platform = build_platform(stack.settings, run_migrations=False)
    spec = ExternalSpec("partner-rotated", "https://93.184.216.34/v1", credential="sk-rot-1")
    dep = platform.externals.register(op, spec).deployment.id
    with platform.uows() as uow:
        before = uow.externals.get(dep)
    key_file = stack.settings.data_dir / "credentials.key"
    old_keys = key_file.read_text().split()
    done = subprocess.run(
        [*CLI, "models", "external", "rotate-key", "--drop-old"],
        env=stack.env, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "re-encrypted 1 credential" in done.stdout
    new_keys = key_file.read_text().split()
    assert len(new_keys) == 1
    assert new_keys[0] not in old_keys
    with platform.uows() as uow:
        after = uow.externals.get(dep)
    assert before is not None
    assert after is not None
    assert after.sealed_credential != before.sealed_credential
    assert after.sealed_credential is not None
    assert FernetBox(key_file=key_file).open(after.sealed_credential) == "sk-rot-1"
    assert os.stat(key_file).st_mode & 0o077 == 0
    platform.uows.engine.dispose()  # type: ignore[attr-defined]
