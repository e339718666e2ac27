"""Real control-plane processes for integration tests: start, SIGKILL, and read launch logs."""

from __future__ import annotations

import itertools
import signal
import socket
import subprocess
import sys
import time
from collections import defaultdict
from pathlib import Path

import httpx


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


START_DEADLINE_S = 90.0
"""How long a server may take to answer /healthz: imports alone took 26 s at load 15-22."""


class Server:
    """Starts and SIGKILLs a real control-plane process."""

    def __init__(self, env: dict[str, str], port: int, log: Path) -> None:
        self.env, self.port, self.log = env, port, log
        self.proc: subprocess.Popen[bytes] | None = None
        self.ready_s: list[float] = []

    def start(self) -> None:
        started = time.monotonic()
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "uvicorn",
                    "--factory",
                    "suanwang.bootstrap:app_from_env",
                    "--host",
                    "127.0.0.1",
                    "--port",
                    str(self.port),
                    "--log-level",
                    "warning",
                ],
                env=self.env,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        deadline = started + START_DEADLINE_S
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"http://127.0.0.1:{self.port}/healthz", timeout=1).status_code == 200:
                    self.ready_s.append(time.monotonic() - started)
                    return
            except httpx.TransportError:
                time.sleep(0.05)
        self.kill()  # never leave a half-started server behind a failed test
        raise AssertionError(f"server did not come up in {START_DEADLINE_S:.0f} s; see {self.log}")

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()

    def stop(self) -> None:
        """Stop the server if it runs (safe to call in a ``finally`` whatever happened)."""
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.terminate()
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.kill()


LAUNCH_MARK = 'echo "{} $SUANWANG_JOB_ID $SUANWANG_ATTEMPT $(date +%s%N)"'
"""A shell line a local job runs to print a ``start``/``end`` mark into its own log."""


def launch_marks(data_dir: Path) -> list[str]:
    """The ``start``/``end`` marks local jobs printed, from every attempt's ``output.log``.

    Jobs are sandboxed and cannot write a shared file; the platform keeps their logs.
    """
    lines: list[str] = []
    for log in sorted(data_dir.glob("runs/*/[0-9]*/output.log")):
        text = log.read_text(errors="replace")
        lines += [line for line in text.splitlines() if line.startswith(("start ", "end "))]
    return lines


def overlapping_runs(marks: list[str]) -> tuple[int, dict[str, int]]:
    """(jobs with two runs overlapping in time, starts per job) from the launch marks."""
    runs: dict[tuple[str, str], dict[str, int]] = defaultdict(dict)
    starts: dict[str, int] = defaultdict(int)
    for line in marks:
        what, job, attempt, ns = line.split()
        runs[(job, attempt)][what] = int(ns)
        starts[job] += what == "start"
    by_job: dict[str, list[tuple[int, int]]] = defaultdict(list)
    for (job, _), marks in runs.items():
        by_job[job].append((marks.get("start", 0), marks.get("end", 2**63)))
    overlaps = 0
    for intervals in by_job.values():
        intervals.sort()
        overlaps += any(b[0] < a[1] for a, b in itertools.pairwise(intervals))
    return overlaps, dict(starts)
