"""Autoscaling options of ``suanwang models deploy`` and ``suanwang deployments autoscale``.

The options become the API's ``autoscale`` object; the server checks the values (a bad one
is its 422 naming the field). Here only what the command line can tell alone: a range
without a target, or two targets.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any

import typer

from suanwang.cli.client import CliError

MinOpt = Annotated[
    int | None,
    typer.Option("--min-replicas", help="autoscale: fewest replicas (0: scale to zero when idle)"),
]
MaxOpt = Annotated[int | None, typer.Option("--max-replicas", help="autoscale: most replicas")]
InflightOpt = Annotated[
    float | None,
    typer.Option("--target-inflight", help="autoscale target: queued + in-flight per replica"),
]
TtftOpt = Annotated[
    float | None,
    typer.Option("--target-ttft-p95-ms", help="autoscale target: p95 time to first token, ms"),
]
SloOpt = Annotated[
    float | None,
    typer.Option(
        "--target-slo-ttft-p95-ms",
        help="autoscale target: p95 time to first token, ms, met by sizing (queueing model)",
    ),
]
TokensOpt = Annotated[
    float | None,
    typer.Option("--target-tokens-per-s", help="autoscale target: tokens/s per replica"),
]
UpOpt = Annotated[
    float | None, typer.Option("--scale-up-cooldown-s", help="autoscale: seconds between ups")
]
DownOpt = Annotated[
    float | None,
    typer.Option("--scale-down-cooldown-s", help="autoscale: seconds before a scale-down"),
]
IdleOpt = Annotated[
    float | None, typer.Option("--idle-to-zero-s", help="autoscale: idle seconds before 0")
]


@dataclass(frozen=True, slots=True, kw_only=True)
class AutoscaleArgs:
    """The autoscaling options as typed on the command line (all optional)."""

    min_replicas: int | None = None
    max_replicas: int | None = None
    inflight: float | None = None
    ttft_p95_ms: float | None = None
    tokens_per_s: float | None = None
    up_cooldown_s: float | None = None
    down_cooldown_s: float | None = None
    idle_to_zero_s: float | None = None
    slo_ttft_p95_ms: float | None = None

    @property
    def given(self) -> bool:
        return any(getattr(self, name) is not None for name in self.__slots__)

    def body(self) -> dict[str, Any]:
        """The API's ``autoscale`` object; CliError naming the option when incomplete."""
        targets = {
            "--target-inflight": ("inflight_per_replica", self.inflight),
            "--target-ttft-p95-ms": (
                "ttft_p95_s",
                None if self.ttft_p95_ms is None else self.ttft_p95_ms / 1000,
            ),
            "--target-tokens-per-s": ("tokens_per_s_per_replica", self.tokens_per_s),
            "--target-slo-ttft-p95-ms": (
                "slo_ttft_p95_s",
                None if self.slo_ttft_p95_ms is None else self.slo_ttft_p95_ms / 1000,
            ),
        }
        chosen = {opt: pair for opt, pair in targets.items() if pair[1] is not None}
        if len(chosen) != 1:
            raise CliError(
                "autoscaling needs exactly one target" + (f", not {len(chosen)}" if chosen else ""),
                field="--target-inflight",
                hint="e.g. --target-inflight 4, or --target-ttft-p95-ms 500",
            )
        if self.min_replicas is None or self.max_replicas is None:
            missing = "--min-replicas" if self.min_replicas is None else "--max-replicas"
            raise CliError(
                f"autoscaling needs {missing}",
                field=missing,
                hint="e.g. --min-replicas 1 --max-replicas 4",
            )
        ((name, value),) = chosen.values()
        body: dict[str, Any] = {
            "min_replicas": self.min_replicas,
            "max_replicas": self.max_replicas,
            "target": {name: value},
        }
        optional = {
            "scale_up_cooldown_s": self.up_cooldown_s,
            "scale_down_cooldown_s": self.down_cooldown_s,
            "idle_to_zero_s": self.idle_to_zero_s,
        }
        body.update({k: v for k, v in optional.items() if v is not None})
        return body


def autoscale_text(autoscale: dict[str, Any] | None) -> str:
    """One line for a deployment's autoscaling settings ("fixed" without)."""
    if not autoscale:
        return "fixed"
    target = autoscale["target"]
    if target.get("inflight_per_replica") is not None:
        goal = f"{target['inflight_per_replica']:g} in flight/replica"
    elif target.get("ttft_p95_s") is not None:
        goal = f"p95 TTFT {target['ttft_p95_s'] * 1000:g} ms"
    elif target.get("slo_ttft_p95_s") is not None:
        goal = f"p95 TTFT {target['slo_ttft_p95_s'] * 1000:g} ms (sized)"
    else:
        goal = f"{target['tokens_per_s_per_replica']:g} tokens/s/replica"
    return f"{autoscale['min_replicas']}-{autoscale['max_replicas']}, {goal}"
