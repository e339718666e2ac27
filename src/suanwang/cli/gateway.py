"""``suanwang gateway``: run the OpenAI-compatible gateway (one or several worker processes).

Workers are stateless: they share the database and, through ``SUANWANG_REDIS_URL``, the
limits and quota reservations. Without Redis, limits are per process, so more than one
worker is refused.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Annotated

import typer

from suanwang.cli.client import CliError
from suanwang.cli.common import load_settings, log_level, note


def gateway(
    host: Annotated[
        str | None, typer.Option(help="interface to listen on (SUANWANG_HOST)", show_default=False)
    ] = None,
    port: Annotated[
        int | None,
        typer.Option(help="TCP port (SUANWANG_GATEWAY_PORT, default 8001)", show_default=False),
    ] = None,
    workers: Annotated[int, typer.Option(min=1, max=64, help="worker processes")] = 1,
) -> None:
    """Serve /v1/chat/completions, /v1/completions, /v1/embeddings and /v1/models."""
    settings = load_settings(host=host, gateway_port=port)
    level = log_level(settings)
    if workers > 1 and not settings.redis_url:
        raise CliError(
            "several gateway workers need shared limits",
            field="--workers",
            hint="set SUANWANG_REDIS_URL (e.g. redis://127.0.0.1:6379/0) or use --workers 1",
        )
    if workers > 1:
        shared_metrics(settings.data_dir / "gateway-metrics")
    import uvicorn

    shared = (
        f"limits in Redis {settings.redis_prefix!r}" if settings.redis_url else "in-process limits"
    )
    note(
        f"suanwang gateway on http://{settings.host}:{settings.gateway_port}/v1 "
        f"({workers} worker(s), {shared})",
        style="green",
    )
    uvicorn.run(
        "suanwang.bootstrap:gateway_app_from_env",
        factory=True,
        host=settings.host,
        port=settings.gateway_port,
        workers=workers,
        log_level=level,
        access_log=False,
    )


def shared_metrics(directory: Path) -> None:
    """Workers sum their metrics through files in ``directory`` (emptied: counts restart
    with the gateway), unless the operator set ``PROMETHEUS_MULTIPROC_DIR`` already."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        return
    shutil.rmtree(directory, ignore_errors=True)
    directory.mkdir(parents=True)
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(directory)
