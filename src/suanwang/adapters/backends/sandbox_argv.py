"""The argv of a confined run on an engine's node (Slurm, Ray): ``[bwrap …] env K=V … cmd``.

Shared by the engine backends: they start a run as one argument list on a node of their
cluster (Slurm's batch script execs it; Ray's entrypoint is it, quoted), so a tenant's
command is wrapped in the same bubblewrap confinement as a local run (``sandbox.py``) without
the supervisor of the local backend. Nothing here runs anything.

- ``/dev`` is the node's (``--dev-bind``), so the cards the engine allocated stay reachable.
- bubblewrap runs as whatever uid the engine starts the run as (unprivileged user namespaces
  when that is not root), so only paths any uid can reach are worth showing
  (:func:`world_readable`).
"""

from __future__ import annotations

import stat
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from suanwang.adapters.backends.sandbox import Confinement, RootLayout, bwrap_args


@dataclass(frozen=True, slots=True)
class Sandbox:
    """How a run is confined on its node: bwrap's path there, the root layout, the rest."""

    bwrap: str
    layout: RootLayout
    confinement: Confinement


def confined_argv(
    env: Mapping[str, str],
    command: Sequence[str],
    sandbox: Sandbox | None,
    env_program: str = "/usr/bin/env",
) -> list[str]:
    """``[bwrap …] env K=V … command``: ``env`` is set on top of the inherited environment
    (a first word with ``=`` is not taken for one more variable)."""
    argv = [env_program, *(f"{k}={v}" for k, v in sorted(env.items()))]
    command = list(command)
    if command and "=" in command[0]:  # env would take it for one more variable
        command = ["/bin/sh", "-c", 'exec "$0" "$@"', *command]
    argv += command
    if sandbox is None:
        return argv
    return [sandbox.bwrap, *host_dev(bwrap_args(sandbox.layout, sandbox.confinement)), *argv]


def host_dev(args: list[str]) -> list[str]:
    """``--dev /dev`` (a minimal /dev) becomes the host's ``/dev``: the allocated cards."""
    out: list[str] = []
    i = 0
    while i < len(args):
        if args[i] == "--dev" and i + 1 < len(args) and args[i + 1] == "/dev":
            out += ["--dev-bind", "/dev", "/dev"]
            i += 2
            continue
        out.append(args[i])
        i += 1
    return out


def world_readable(path: str) -> bool:
    """Whether any uid can reach ``path`` (every ancestor searchable by others): bwrap runs
    as the job's own uid on the node, so it can only show what that uid can reach (a
    Python installed under ``/root`` is left out; the job then has the system's)."""
    current = Path(path)
    try:
        if not current.stat().st_mode & stat.S_IROTH:
            return False
        return all(p.stat().st_mode & stat.S_IXOTH for p in (current, *current.parents))
    except OSError:
        return False
