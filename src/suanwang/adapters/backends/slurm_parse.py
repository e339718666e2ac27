"""Reading Slurm's answers: ``squeue --json``, ``sinfo --json``, ``sacct --completion``.

Pure functions from command output to typed records (unit-tested with recorded outputs of
Debian's Slurm 22.05). In 22.05 ``squeue --json`` ignores ``--name``/``--jobs``/``-t``: it
lists every job slurmctld still holds (ended ones for ``MinJobAge`` seconds), so the
caller filters. ``exit_code`` there is the raw wait status (``exit << 8 | signal``).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass

from suanwang.domain.jobs import AttemptState

PENDING_STATES = frozenset(
    {"PENDING", "CONFIGURING", "REQUEUED", "REQUEUE_FED", "REQUEUE_HOLD", "RESIZING"}
)
RUNNING_STATES = frozenset({"RUNNING", "COMPLETING", "SUSPENDED", "STAGE_OUT", "SIGNALING"})
FAILED_STATES = frozenset(
    {"FAILED", "NODE_FAIL", "BOOT_FAIL", "OUT_OF_MEMORY", "DEADLINE", "TIMEOUT", "PREEMPTED"}
)
HEALTHY_NODE_STATES = frozenset({"idle", "allocated", "mixed", "completing", "planned"})
BAD_NODE_FLAGS = frozenset(
    {"DRAIN", "DRAINING", "DRAINED", "NOT_RESPONDING", "FAIL", "MAINTENANCE", "REBOOT_REQUESTED"}
)


class SlurmOutputError(ValueError):
    """A Slurm command answered something this module cannot read."""


@dataclass(frozen=True, slots=True)
class SlurmJob:
    """One job as ``squeue --json`` (or the completion log) reports it."""

    job_id: int
    name: str
    state: str
    exit_code: int | None
    """The command's exit status (``None`` if a signal ended it or it is unknown)."""
    signal: int | None
    restarts: int
    start_time: float | None
    end_time: float | None
    reason: str
    nodes: str
    partition: str = ""

    @property
    def attempt_state(self) -> AttemptState:
        """The suanwang view of this Slurm state."""
        if self.state in PENDING_STATES:
            return AttemptState.STARTING
        if self.state in RUNNING_STATES:
            return AttemptState.RUNNING
        if self.state == "COMPLETED":
            return AttemptState.SUCCEEDED if self.exit_code == 0 else AttemptState.FAILED
        if self.state == "CANCELLED":
            return AttemptState.CANCELLED
        if self.state in ("NODE_FAIL", "BOOT_FAIL"):
            return AttemptState.LOST
        return AttemptState.FAILED

    @property
    def describe(self) -> str:
        """A short reason for people: the state and what Slurm said about it."""
        parts = [f"slurm job {self.job_id} {self.state}"]
        if self.reason and self.reason != "None":
            parts.append(f"({self.reason})")
        if self.restarts:
            parts.append(f"after {self.restarts} requeue(s)")
        if self.signal:
            parts.append(f"signal {self.signal}")
        return " ".join(parts)


@dataclass(frozen=True, slots=True)
class SlurmNode:
    """One node as ``sinfo --json`` reports it."""

    name: str
    state: str
    flags: tuple[str, ...]
    cpus: int
    gres: tuple[tuple[str, str, int], ...]
    """``(name, type, count)`` per configured GRES, e.g. ``("gpu", "ascend910b", 8)``."""
    partitions: tuple[str, ...]
    address: str = ""
    """``NodeAddr``: where the node is reached (an IP or a name)."""

    @property
    def usable(self) -> bool:
        """Up and not draining: work may be placed on it."""
        base = self.state.lower().split("+")[0]
        return base in HEALTHY_NODE_STATES and not (set(self.flags) & BAD_NODE_FLAGS)


def parse_sbatch(stdout: str) -> int:
    """The job id from ``sbatch --parsable`` (``"42"`` or ``"42;cluster"``)."""
    first = stdout.strip().split(";", 1)[0]
    if not first.isdigit():
        raise SlurmOutputError(f"sbatch answered {stdout.strip()[:200]!r}, not a job id")
    return int(first)


def parse_squeue(stdout: str) -> list[SlurmJob]:
    """Every job of ``squeue --json`` output."""
    jobs = _document(stdout, "squeue").get("jobs")
    if not isinstance(jobs, list):
        raise SlurmOutputError("squeue --json answered without a 'jobs' list")
    return [_job(item) for item in jobs if isinstance(item, dict)]


def parse_sinfo(stdout: str) -> list[SlurmNode]:
    """Every node of ``sinfo --json`` output."""
    nodes = _document(stdout, "sinfo").get("nodes")
    if not isinstance(nodes, list):
        raise SlurmOutputError("sinfo --json answered without a 'nodes' list")
    return [_node(item) for item in nodes if isinstance(item, dict)]


SACCT_FIELDS = "jobid,jobname,state,exitcode,nodelist"
"""The ``-o`` of :func:`parse_sacct_completion`'s input (``sacct --completion -P -n``)."""


def parse_sacct_completion(stdout: str) -> list[SlurmJob]:
    """Finished jobs from ``sacct --completion -P -n -o`` :data:`SACCT_FIELDS`."""
    found: list[SlurmJob] = []
    for line in stdout.splitlines():
        fields = line.split("|")
        if len(fields) < 5 or not fields[0].isdigit():
            continue
        code, _, sig = fields[3].partition(":")
        signal = int(sig) if sig.isdigit() and int(sig) else None
        state = fields[2].split()[0] if fields[2] else "UNKNOWN"
        found.append(
            SlurmJob(
                job_id=int(fields[0]),
                name=fields[1],
                state=state,
                exit_code=None if signal or not code.isdigit() else int(code),
                signal=signal,
                restarts=0,
                start_time=None,
                end_time=None,
                reason="",
                nodes=fields[4],
            )
        )
    return found


def parse_gres(text: str) -> tuple[tuple[str, str, int], ...]:
    """``gpu:ascend910b:8(S:0),gpu:mlu370:2`` → ``(("gpu", "ascend910b", 8), ...)``.

    A GRES without a type (``gpu:4``) has type ``""``; unparsable parts are skipped.
    """
    found: list[tuple[str, str, int]] = []
    for part in _split_gres(text):
        fields = re.sub(r"\(.*?\)", "", part).split(":")
        if len(fields) == 2 and fields[1].isdigit():
            found.append((fields[0], "", int(fields[1])))
        elif len(fields) == 3 and fields[2].isdigit():
            found.append((fields[0], fields[1], int(fields[2])))
    return tuple(found)


def _split_gres(text: str) -> list[str]:
    """Split on commas outside parentheses (``gpu:a:2(IDX:0,1)`` is one part)."""
    parts, depth, current = [], 0, ""
    for char in text:
        depth += (char == "(") - (char == ")")
        if char == "," and depth == 0:
            parts.append(current)
            current = ""
        else:
            current += char
    parts.append(current)
    return [p.strip() for p in parts if p.strip() and p.strip() != "(null)"]


def _document(stdout: str, command: str) -> dict[str, object]:
    try:
        document = json.loads(stdout)
    except json.JSONDecodeError as exc:
        raise SlurmOutputError(f"{command} --json answered invalid JSON: {exc}") from exc
    if not isinstance(document, dict):
        raise SlurmOutputError(f"{command} --json answered {type(document).__name__}")
    errors = document.get("errors")
    if isinstance(errors, list) and errors:
        raise SlurmOutputError(f"{command} reported errors: {str(errors)[:300]}")
    return document


def _job(item: dict[str, object]) -> SlurmJob:
    raw = _int(item.get("exit_code"))
    signal = raw & 0x7F if raw is not None else None
    start, end = _int(item.get("start_time")), _int(item.get("end_time"))
    return SlurmJob(
        job_id=_int(item.get("job_id")) or 0,
        name=str(item.get("name", "")),
        state=str(item.get("job_state", "UNKNOWN")).split()[0],
        exit_code=(raw >> 8) & 0xFF if raw is not None and not signal else None,
        signal=signal or None,
        restarts=_int(item.get("restart_cnt")) or 0,
        start_time=float(start) if start else None,
        end_time=float(end) if end else None,
        reason=str(item.get("state_reason", "")),
        nodes=str(item.get("nodes", "")),
        partition=str(item.get("partition", "")),
    )


def _node(item: dict[str, object]) -> SlurmNode:
    flags = item.get("state_flags")
    partitions = item.get("partitions")
    return SlurmNode(
        name=str(item.get("name", "")),
        state=str(item.get("state", "unknown")),
        flags=tuple(str(f) for f in flags) if isinstance(flags, list) else (),
        cpus=_int(item.get("cpus")) or 0,
        gres=parse_gres(str(item.get("gres", "") or "")),
        partitions=tuple(str(p) for p in partitions) if isinstance(partitions, list) else (),
        address=str(item.get("address", "") or ""),
    )


def _int(value: object) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, dict):  # newer data_parser versions: {"set": true, "number": N}
        number = value.get("number")
        return number if isinstance(number, int) and value.get("set", True) else None
    return None
