"""Who a workload is and where it may work: tenant jobs versus platform engines.

- :class:`Workload`: the kind of a run. Tenant jobs are untrusted code; platform engines
  (inference replicas) are the platform's own programs. Only the service layer sets it.
- :class:`JobNetwork`: what a tenant job's network reaches (nothing, or the gateway only).
- :class:`GangStrategy`: how an engine lays out the nodes of a multi-node (gang) job.
- :data:`JOB_AREA` and :func:`job_area_parts`: a job's private directory as the job sees it,
  and the one rule for a caller-given ``working_dir`` (inside that area, or refused).
- :class:`UidRange`: the numeric uids tenants are given on the local cluster.

Pure: no I/O. How the local backend enforces these lives in ``adapters/backends``.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from suanwang.domain.errors import ValidationError

JOB_AREA = "/job"
"""A job's own directory, as the job sees it: its HOME and default working directory."""
MAX_WORKING_DIR_LEN = 4096


class Workload(enum.StrEnum):
    """What kind of program a run is; decides its identity and network on the local cluster."""

    TENANT_JOB = "tenant-job"
    PLATFORM_ENGINE = "platform-engine"


class JobNetwork(enum.StrEnum):
    """What a tenant job can reach over the network (job spec field ``network``).

    ``none``: its own network namespace with only ``lo``. ``gateway``: the same, plus the
    platform's OpenAI-compatible gateway on ``127.0.0.1:<gateway port>`` through a relay
    (nothing else of the host). The host network is for platform engines only.
    """

    NONE = "none"
    GATEWAY = "gateway"


class GangStrategy(enum.StrEnum):
    """How the nodes of a multi-node job are laid out on an engine (job spec field ``gang``).

    ``spread``: every node of the job on its own machine, as suanwang's scheduler places
    it (Ray: a ``STRICT_SPREAD`` placement group). ``pack``: the engine may put several of
    the job's nodes on one machine where they fit (Ray: ``PACK``). Engines without the
    choice (Slurm, Kubernetes) always spread.
    """

    SPREAD = "spread"
    PACK = "pack"


GATEWAY_SOCKET = "/run/suanwang/gateway.sock"
"""Where a ``gateway`` job's sandbox sees the relay's Unix socket."""


def job_area_parts(working_dir: str | None) -> tuple[str, ...]:
    """The path components of ``working_dir`` below :data:`JOB_AREA` (``()`` for the area).

    Accepted: a relative path (taken relative to the area) or an absolute path under it.
    Refused (``ValidationError`` naming ``working_dir``): other absolute paths, ``..``
    components, NUL bytes, over-long paths. Symlinks are checked where the run starts.
    """
    if working_dir is None:
        return ()
    if "\x00" in working_dir or len(working_dir) > MAX_WORKING_DIR_LEN:
        raise _outside(working_dir, "it contains a NUL byte or is too long")
    relative = working_dir
    if working_dir.startswith("/"):
        if working_dir != JOB_AREA and not working_dir.startswith(JOB_AREA + "/"):
            raise _outside(working_dir, "absolute paths must be under the job's directory")
        relative = working_dir[len(JOB_AREA) :]
    parts = tuple(p for p in relative.split("/") if p not in ("", "."))
    if ".." in parts:
        raise _outside(working_dir, "'..' is not allowed")
    return parts


def _outside(working_dir: str, why: str) -> ValidationError:
    shown = working_dir[:200].replace("\x00", "\\0")
    return ValidationError(
        f"working_dir {shown!r} is not inside the job's own directory: {why}",
        field="working_dir",
        hint=f"give a path relative to the job's directory, or an absolute one under {JOB_AREA}",
    )


@dataclass(frozen=True, slots=True)
class UidRange:
    """Inclusive range of numeric uids (and equal gids) handed out to tenants."""

    first: int
    last: int

    def __post_init__(self) -> None:
        if not 1 <= self.first <= self.last <= 2**31 - 2:
            raise ValueError(f"uid range {self.first}-{self.last} is empty or out of bounds")

    @classmethod
    def parse(cls, text: str) -> UidRange:
        """``"200000-299999"`` → ``UidRange(200000, 299999)``; ValueError if malformed."""
        first, sep, last = text.strip().partition("-")
        if not sep or not first.strip().isdigit() or not last.strip().isdigit():
            raise ValueError(f"expected FIRST-LAST (e.g. 200000-299999), got {text!r}")
        return cls(int(first), int(last))

    def __contains__(self, uid: object) -> bool:
        return isinstance(uid, int) and self.first <= uid <= self.last

    def __str__(self) -> str:
        return f"{self.first}-{self.last}"
