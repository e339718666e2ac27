"""The driver of a multi-node (gang) suanwang job on Ray; shipped to the cluster as is.

suanwang is not installed on Ray nodes: the Ray backend ships this package directory with
the job (``runtime_env={"py_modules": [<this directory>]}``; the job SDK uploads
directories only) and runs it as the job's entrypoint::

    python -m suanwang_ray_gang --name NAME --nodes N --resource R --cards C \
        --strategy STRICT_SPREAD -- COMMAND [ARGS...]

It creates a placement group named NAME of N bundles ``{R: C, "CPU": 1}`` (``{"CPU": C}``
for cpu slots) with the strategy, waits for it, prints where each bundle landed, then runs
one task per bundle that executes COMMAND (an argv, never a shell line) with its rank in
the environment: ``SUANWANG_NODE_RANK``, ``SUANWANG_NODES``, ``SUANWANG_MASTER_ADDR`` (the
address of rank 0's node). The job exits with the first non-zero exit code of a rank (0 if
all succeeded). For a tenant's job the backend gives COMMAND already confined
(``bwrap ... env ... CMD``); the driver itself stays outside, as it talks to Ray. The
command dies with its task (``PR_SET_PDEATHSIG``), so ``ray job stop`` leaves nothing
behind.

Only the standard library at import time (the control plane imports this module to test
its pure parts); ``ray`` is imported in :func:`main`, on the cluster.
"""

from __future__ import annotations

import argparse
import ctypes
import os
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from typing import Any

PR_SET_PDEATHSIG = 1
STRATEGIES = ("STRICT_SPREAD", "PACK")
LOG_SETTINGS = {"RAY_DEDUP_LOGS": "0", "RAY_COLOR_PREFIX": "0"}
"""Every rank's line reaches the job's log as printed (Ray would merge identical lines
from several ranks, and colour the ``(rank pid=...)`` prefixes)."""
LOG_FLUSH_S = 2.0
"""How long the driver waits after the ranks ended for Ray to forward their last lines."""


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    """The driver's options and the command after ``--``."""
    parser = argparse.ArgumentParser(prog="suanwang_ray_gang")
    parser.add_argument("--name", required=True)
    parser.add_argument("--nodes", type=int, required=True)
    parser.add_argument("--resource", required=True)
    parser.add_argument("--cards", type=int, required=True)
    parser.add_argument("--strategy", choices=STRATEGIES, required=True)
    parser.add_argument("command", nargs="+")
    args = parser.parse_args(argv)
    if args.nodes < 1 or args.cards < 0:
        parser.error("--nodes must be >= 1 and --cards >= 0")
    return args


def bundles(nodes: int, resource: str, cards: int) -> list[dict[str, float]]:
    """One bundle per node: the cards of the chip and a CPU for the rank's process."""
    if resource == "CPU":
        return [{"CPU": float(max(cards, 1))} for _ in range(nodes)]
    return [{resource: float(cards), "CPU": 1.0} for _ in range(nodes)]


def task_resources(resource: str, cards: int) -> tuple[float, dict[str, float]]:
    """``(num_cpus, resources)`` of one rank's task: all of its bundle."""
    if resource == "CPU":
        return float(max(cards, 1)), {}
    return 1.0, {resource: float(cards)}


def rank_env(base: dict[str, str], rank: int, nodes: int, master: str) -> dict[str, str]:
    """The environment of rank ``rank``: the job's own plus where it stands in the gang."""
    return {
        **base,
        "SUANWANG_NODE_RANK": str(rank),
        "SUANWANG_NODES": str(nodes),
        "SUANWANG_MASTER_ADDR": master,
    }


def say(line: str) -> None:
    """One line of the driver's own in the job's log, marked ``suanwang:``."""
    sys.stdout.write(f"suanwang: {line}\n")
    sys.stdout.flush()


def _die_with_parent() -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL)


def run_rank(command: list[str], env: dict[str, str]) -> int:
    """Run one rank's command to its end (killed if its task's worker dies); 127 with a
    line saying so if its program (e.g. bwrap, confining a tenant's rank) is not on this
    node."""
    sys.stdout.flush()
    try:
        return subprocess.call(command, env=env, preexec_fn=_die_with_parent)
    except FileNotFoundError:
        say(f"{command[0]} not found on this node; the rank cannot start")
        return 127


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    os.environ.update(LOG_SETTINGS)  # read when ray is imported
    import ray  # type: ignore[import-not-found, unused-ignore]  # on the Ray node only
    from ray.util.placement_group import (  # type: ignore[import-not-found, unused-ignore]
        placement_group,
    )
    from ray.util.scheduling_strategies import (  # type: ignore[import-not-found, unused-ignore]
        PlacementGroupSchedulingStrategy,
    )

    ray.init(address="auto", log_to_driver=True)
    wanted = bundles(args.nodes, args.resource, args.cards)
    group = placement_group(wanted, strategy=args.strategy, name=args.name)
    ray.get(group.ready())
    where = ray.util.placement_group_table(group).get("bundles_to_node_id", {})
    say(f"placement group {args.name} ({args.strategy}) ready")
    for index in range(args.nodes):
        say(f"bundle {index} on node {where.get(index, '?')}")

    @ray.remote(num_cpus=0)  # type: ignore[untyped-decorator, unused-ignore]
    def node_ip() -> str:
        return str(ray.util.get_node_ip_address())  # type: ignore[no-untyped-call, unused-ignore]

    @ray.remote(num_cpus=0, max_retries=0)  # type: ignore[untyped-decorator, unused-ignore]
    def rank(command: list[str], env: dict[str, str]) -> int:
        return run_rank(command, env)

    def placed(index: int) -> Any:
        return PlacementGroupSchedulingStrategy(group, placement_group_bundle_index=index)

    master = ray.get(node_ip.options(scheduling_strategy=placed(0)).remote())
    base = dict(os.environ)
    cpus, resources = task_resources(args.resource, args.cards)
    runs = [
        rank.options(scheduling_strategy=placed(i), num_cpus=cpus, resources=resources).remote(
            list(args.command), rank_env(base, i, args.nodes, master)
        )
        for i in range(args.nodes)
    ]
    codes = [int(code) for code in ray.get(runs)]
    time.sleep(LOG_FLUSH_S)
    say(f"ranks exited {codes}")
    return next((code for code in codes if code != 0), 0)
