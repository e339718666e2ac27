"""``suanwang agent serve``: run a transfer agent over one storage root (see docs/transfer.md)."""

from __future__ import annotations

import signal
import sys
import threading
import time
from pathlib import Path
from types import FrameType
from typing import Annotated, Any

import httpx
import typer

from suanwang.cli.client import CliError, check_url, problem_error
from suanwang.transfer import Agent, AgentConfig, Identity
from suanwang.transfer.faults import Faults
from suanwang.transfer.renewal import Post, Renewer
from suanwang.transfer.tls import split_address

agent_app = typer.Typer(
    help="Transfer agents: move dataset bytes between regions.", no_args_is_help=True
)


@agent_app.command("serve")
def serve(
    region: Annotated[str, typer.Option(help="the region this agent serves")],
    root: Annotated[Path, typer.Option(help="the storage root it owns (every path is under it)")],
    listen: Annotated[str, typer.Option(help="HOST:PORT to listen on")],
    cert: Annotated[Path, typer.Option(help="this agent's certificate (PEM, role agent)")],
    key: Annotated[Path, typer.Option(help="its private key (PEM)")],
    ca: Annotated[Path, typer.Option(help="the transfer CA's certificate (PEM)")],
    journal_dir: Annotated[
        Path | None, typer.Option(help="transfer journals (default: ROOT/.suanwang-journal)")
    ] = None,
    control_url: Annotated[
        str | None,
        typer.Option(help="the control plane's URL: renew the certificate there before expiry"),
    ] = None,
    renew_check_s: Annotated[
        float, typer.Option(min=0.1, help="how often to check the certificate's expiry")
    ] = 3600.0,
) -> None:
    """Serve the control API (control certificates) and receive data (agent certificates)."""
    try:
        url = None if control_url is None else check_url(control_url)
        host, port = split_address(listen)
        if not root.is_dir():
            raise ValueError(f"--root {root} is not a directory")
        for name, path in (("--cert", cert), ("--key", key), ("--ca", ca)):
            if not path.is_file():
                raise ValueError(f"{name} {path} is not a file")
        config = AgentConfig(
            region=region,
            root=root,
            identity=Identity(cert, key, ca),
            journal_dir=journal_dir or root / ".suanwang-journal",
            faults=Faults.from_env(),
        )
        agent = Agent(config)
        bound = agent.bind(host, port)
    except (ValueError, OSError, CliError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from exc

    def stop(_signum: int, _frame: FrameType | None) -> None:
        agent.stop()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    if url is not None:
        renewer = Renewer(config.identity, _poster(url), agent.reload_identity, time.time)
        args = (agent.stopping, renew_check_s)
        threading.Thread(target=renewer.run, args=args, daemon=True, name="renewal").start()
    sys.stdout.write(f"agent {region} listening on {host}:{bound}\n")
    sys.stdout.flush()
    agent.serve_forever()


def _poster(url: str) -> Post:
    """``POST URL/api/v1/agents/NAME/renew`` (no API key: the request is signed)."""

    def post(name: str, body: dict[str, Any]) -> dict[str, Any]:
        response = httpx.post(f"{url}/api/v1/agents/{name}/renew", json=body, timeout=30.0)
        if response.status_code != 200:
            raise RuntimeError(problem_error(response, has_key=False).line())
        answer: dict[str, Any] = response.json()
        return answer

    return post
