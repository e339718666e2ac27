"""``suanwang models deploy ... --min-replicas/--max-replicas/--target-*`` and
``suanwang deployments autoscale`` against a real server: settings shown, changed and turned
off; bad or incomplete options are one ``error:`` line naming the option or field, exit 1."""

from __future__ import annotations

import json
from typing import Any

import pytest
from test_cli import assert_error, ok

from conftest import Cli

MODEL, CLUSTER = "glm-4-9b-chat", "zhongwei-mixed"
RANGE = ["--min-replicas", "1", "--max-replicas", "3"]


def shown(cli: Cli, dep: str, key: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(ok(cli("deployments", "show", dep, "--json", key=key)))
    return data


def test_autoscaling_from_the_command_line(cli: Cli, demo_key: str) -> None:
    args = ["models", "deploy", MODEL, "--cluster", CLUSTER, *RANGE, "--target-inflight", "4"]
    dep = ok(cli(*args, "-q", key=demo_key)).strip()
    try:
        first = shown(cli, dep, demo_key)
        assert (first["replicas"], first["autoscale"]["target"]["inflight_per_replica"]) == (1, 4)
        assert "1-3, 4 in flight" in ok(cli("deployments", "list", key=demo_key))  # 80 columns
        refused = cli("models", "scale", dep, "2", key=demo_key)
        assert_error(refused, "autoscaled", "deployments autoscale")
        slo = ["--min-replicas", "0", "--max-replicas", "2", "--target-ttft-p95-ms", "500"]
        ok(cli("deployments", "autoscale", dep, *slo, key=demo_key))
        assert shown(cli, dep, demo_key)["autoscale"]["target"]["ttft_p95_s"] == 0.5
        sized = ["--min-replicas", "1", "--max-replicas", "2", "--target-slo-ttft-p95-ms", "400"]
        out = ok(cli("deployments", "autoscale", dep, *sized, key=demo_key))
        assert "p95 TTFT 400 ms (sized)" in out
        assert shown(cli, dep, demo_key)["autoscale"]["target"]["slo_ttft_p95_s"] == 0.4
        ok(cli("deployments", "autoscale", dep, "--off", key=demo_key))
        assert shown(cli, dep, demo_key)["autoscale"] is None
        ok(cli("models", "scale", dep, "2", key=demo_key))
    finally:
        ok(cli("deployments", "delete", dep, key=demo_key))


@pytest.mark.parametrize(
    ("options", "fragment"),
    [
        (["--min-replicas", "1", "--max-replicas", "3"], "--target-inflight"),
        ([*RANGE, "--target-inflight", "2", "--target-ttft-p95-ms", "300"], "not 2"),
        (["--max-replicas", "3", "--target-inflight", "2"], "--min-replicas"),
        (["--min-replicas", "3", "--max-replicas", "1", "--target-inflight", "2"], "max_replicas"),
        ([*RANGE, "--target-inflight", "0"], "inflight_per_replica"),
        ([*RANGE, "--target-inflight", "2", "--idle-to-zero-s", "-5"], "idle_to_zero_s"),
    ],
    ids=["no-target", "two-targets", "no-min", "min-above-max", "zero-target", "negative-idle"],
)
def test_bad_autoscaling_options(
    cli: Cli, demo_key: str, options: list[str], fragment: str
) -> None:
    args = ["models", "deploy", MODEL, "--cluster", CLUSTER, *options]
    assert_error(cli(*args, key=demo_key), fragment)
    assert MODEL not in ok(cli("deployments", "list", key=demo_key))
