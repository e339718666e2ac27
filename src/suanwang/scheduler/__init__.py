"""The scheduler: a pure function from a :class:`Snapshot` to a list of decisions.

No I/O and no clock of its own: the caller passes ``now`` in the snapshot. The live
control plane and the simulator call the same :func:`cycle`.
"""

from suanwang.scheduler.cycle import cycle
from suanwang.scheduler.decisions import Admit, Decision, Pending, Placement
from suanwang.scheduler.snapshot import NodeView, PendingJob, Snapshot

__all__ = [
    "Admit",
    "Decision",
    "NodeView",
    "Pending",
    "PendingJob",
    "Placement",
    "Snapshot",
    "cycle",
]
