"""The transfer engine: agents that move datasets between regions over mutual TLS.

Public surface: :class:`AgentClient` (the control plane's client), the status and option
types, the PKI functions, and :class:`Agent` (run by ``suanwang agent serve``).
Private modules: plan (pure chunking), wire (frames), journal, staging/receiver, source/
sender, ratelimit, paths, faults (test-only hooks). See docs/transfer.md.
"""

from suanwang.transfer.agent import Agent, AgentConfig
from suanwang.transfer.client import AgentClient, AgentError, AgentUnavailable
from suanwang.transfer.pki import issue, needs_rotation, new_ca, not_after
from suanwang.transfer.status import ManifestEntry, PushOptions, TransferState, TransferStatus
from suanwang.transfer.tls import Identity

__all__ = [
    "Agent",
    "AgentClient",
    "AgentConfig",
    "AgentError",
    "AgentUnavailable",
    "Identity",
    "ManifestEntry",
    "PushOptions",
    "TransferState",
    "TransferStatus",
    "issue",
    "needs_rotation",
    "new_ca",
    "not_after",
]
