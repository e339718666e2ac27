"""End-to-end fixtures: a real ``suanwang server`` subprocess and a runner for CLI commands.

The server gets its own data directory, set up with ``suanwang init`` (operator key file
and demo fleet), a fast simulated clock and a short cancel grace. CLI commands run as
subprocesses, exactly as a user types them.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

CLI = [sys.executable, "-m", "suanwang.cli.main"]
START_TIMEOUT_S = 30.0
COMMAND_TIMEOUT_S = 60.0


def free_port() -> int:
    """A TCP port nobody listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def base_env(data_dir: Path) -> dict[str, str]:
    """The environment of every process: isolated data dir, fast clocks, plain output."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("SUANWANG_") and k not in ("FORCE_COLOR", "COLUMNS")
    }
    env.update(
        {
            "SUANWANG_DATA_DIR": str(data_dir),
            "SUANWANG_SIM_SPEEDUP": "1000",
            "SUANWANG_TICK_S": "0.2",
            "SUANWANG_CANCEL_GRACE_S": "1",
            "NO_COLOR": "1",
            "COLUMNS": "80",
        }
    )
    return env


@dataclass
class Server:
    """A running server: its URL, data directory, environment and log file."""

    url: str
    data_dir: Path
    env: dict[str, str]
    log: Path
    gateway_url: str = ""


@dataclass
class Cli:
    """Runs ``suanwang …`` against a server, with the operator key file or a given key."""

    server: Server

    def __call__(
        self,
        *args: str,
        key: str | None = None,
        cwd: Path | None = None,
        timeout: float = COMMAND_TIMEOUT_S,
    ) -> subprocess.CompletedProcess[str]:
        env = dict(self.server.env, SUANWANG_URL=self.server.url)
        if key is not None:
            env["SUANWANG_API_KEY"] = key
        return subprocess.run(
            [*CLI, *args],
            env=env,
            cwd=cwd,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )


def _wait_healthy(url: str, proc: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    with httpx.Client(timeout=1.0) as client:
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                pytest.fail(f"server exited with {proc.returncode}:\n{log.read_text()}")
            try:
                if client.get(f"{url}/healthz").status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.1)
    pytest.fail(f"server not healthy after {START_TIMEOUT_S} s:\n{log.read_text()}")


def _stop(proc: subprocess.Popen[bytes]) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=15)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=15)


@pytest.fixture(scope="session")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """``suanwang init`` then ``suanwang server`` on a free port, stopped at the end."""
    root = tmp_path_factory.mktemp("suanwang-e2e")
    data_dir = root / "data"
    env = base_env(data_dir)
    init = subprocess.run(
        [*CLI, "init"],
        env=env,
        capture_output=True,
        text=True,
        timeout=COMMAND_TIMEOUT_S,
        check=False,
    )
    assert init.returncode == 0, init.stdout + init.stderr
    port, gateway_port = free_port(), free_port()
    env["SUANWANG_GATEWAY_PORT"] = str(gateway_port)
    log = root / "server.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [*CLI, "server", "--port", str(port)],
            env=env,
            cwd=root,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        url = f"http://127.0.0.1:{port}"
        _wait_healthy(url, proc, log)
        gateway_url = f"http://127.0.0.1:{gateway_port}"
        yield Server(url=url, data_dir=data_dir, env=env, log=log, gateway_url=gateway_url)
    finally:
        _stop(proc)


@pytest.fixture(scope="session")
def cli(server: Server) -> Cli:
    """Run a CLI command against the session's server."""
    return Cli(server)


@pytest.fixture(scope="session")
def demo_key(cli: Cli) -> str:
    """A tenant-admin key of the demo tenant (created by ``suanwang init``)."""
    result = cli("keys", "create", "--tenant", "demo", "--scope", "tenant-admin", "-q")
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """One headless Debian Chromium per console test module (see console_support.py).

    Not per session: while Playwright's sync API is open it marks an asyncio loop as running
    in the main thread, and every later test that calls ``asyncio.run`` (the gateway's and
    the billing tests) would fail with "cannot be called from a running event loop"."""
    from console_support import launch_browser

    yield from launch_browser()


@pytest.fixture(scope="session")
def operator_key(server: Server) -> str:
    """The operator key ``suanwang init`` wrote into the server's data directory."""
    return (server.data_dir / "operator.key").read_text(encoding="utf-8").strip()
