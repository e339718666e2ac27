"""Running Slurm's client commands: argument lists, a bounded time, one readable error.

Every call is ``subprocess.run`` with an argument list (never a shell), a small fixed
environment (``PATH``, ``LANG`` and ``SLURM_CONF`` if the control plane has it: nothing
else of the control plane's environment reaches Slurm), and a timeout: while slurmctld is
down the clients retry for ``MessageTimeout`` (10 s by default) before failing.

:class:`SlurmUnreachable` (an :class:`~suanwang.ports.EngineUnreachable`) marks failures
that mean "slurmctld did not answer" (timeout, connection refused): the control loop then
tries again later instead of failing the job. :class:`Runner` is the seam unit tests
replace with recorded outputs.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from suanwang.ports import EngineUnreachable

DEFAULT_TIMEOUT_S = 15.0
_PATH = "/usr/local/bin:/usr/bin:/bin:/usr/local/sbin:/usr/sbin:/sbin"
_PASSED = ("SLURM_CONF", "LANG", "TZ")


class SlurmCommandError(RuntimeError):
    """A Slurm client command failed, timed out or is missing (message: one line)."""


class SlurmUnreachable(SlurmCommandError, EngineUnreachable):
    """slurmctld (or munge) did not answer: the outcome of the command is unknown."""


UNREACHABLE_MARKS = (
    "Unable to contact slurm controller",
    "Socket timed out",
    "Communication connection failure",
    "Zero Bytes were transmitted",
    "Connection refused",
    "Munge encode failed",
    "Unable to establish controller",
)
"""Phrases of Slurm 22.05's client errors that mean "could not reach", not "refused"."""


@dataclass(frozen=True, slots=True)
class Completed:
    returncode: int
    stdout: str
    stderr: str


class Runner(Protocol):
    def __call__(self, argv: Sequence[str], timeout_s: float) -> Completed:
        """Run ``argv``; raise :class:`SlurmCommandError` if it cannot be run at all."""
        ...


def run_process(argv: Sequence[str], timeout_s: float) -> Completed:
    """The real :class:`Runner`."""
    env = {"PATH": _PATH, "LANG": "C.UTF-8"}
    env.update({k: os.environ[k] for k in _PASSED if k in os.environ})
    try:
        done = subprocess.run(
            list(argv),
            stdin=subprocess.DEVNULL,
            capture_output=True,
            timeout=timeout_s,
            env=env,
            check=False,
        )
    except FileNotFoundError as exc:
        raise SlurmCommandError(f"{argv[0]} not found (install slurm-client)") from exc
    except subprocess.TimeoutExpired as exc:
        raise SlurmUnreachable(
            f"{Path(argv[0]).name} did not answer within {timeout_s:.0f} s (slurmctld unreachable?)"
        ) from exc
    return Completed(
        done.returncode,
        done.stdout.decode("utf-8", "replace"),
        done.stderr.decode("utf-8", "replace"),
    )


class SlurmCli:
    """The Slurm client programs of one cluster (``bin_dir`` empty: from ``PATH``)."""

    def __init__(
        self, bin_dir: str, runner: Runner = run_process, timeout_s: float = DEFAULT_TIMEOUT_S
    ) -> None:
        self.bin_dir = bin_dir
        self._runner = runner
        self._timeout_s = timeout_s

    def program(self, name: str) -> str:
        return str(Path(self.bin_dir) / name) if self.bin_dir else name

    def run(self, name: str, *args: str) -> str:
        """Run Slurm program ``name`` with ``args``; its stdout, or SlurmCommandError."""
        return self.run_argv([self.program(name), *args])

    def run_argv(self, argv: Sequence[str]) -> str:
        done = self._runner(argv, self._timeout_s)
        if done.returncode != 0:
            message = f"{Path(argv[0]).name} failed: {_one_line(done)}"
            if any(mark in done.stderr for mark in UNREACHABLE_MARKS):
                raise SlurmUnreachable(message)
            raise SlurmCommandError(message)
        return done.stdout


def _one_line(done: Completed) -> str:
    text = done.stderr.strip() or done.stdout.strip() or f"exit status {done.returncode}"
    lines = [line for line in text.splitlines() if line.strip()]
    return " / ".join(lines[-3:])[:400]
