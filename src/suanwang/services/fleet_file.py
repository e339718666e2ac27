"""Parses a fleet file (YAML) into a :class:`~suanwang.domain.fleet.FleetSpec`.

Errors name the field as a path (``clusters[0].node_groups[1].cards``) and say what is
expected. Node groups expand to many nodes, so a 1,250-node cluster is four lines.
"""

from __future__ import annotations

from typing import Annotated, Any

import pydantic
import yaml
from pydantic import BaseModel, ConfigDict, Field

from suanwang.domain.chips import Catalogue
from suanwang.domain.connections import (
    Connection,
    KubeJobApi,
    KubernetesConnection,
    RayConnection,
    SlurmConnection,
    Toleration,
    backend_of,
    slurm_tenants,
)
from suanwang.domain.errors import ValidationError
from suanwang.domain.fleet import (
    MAX_CARDS_PER_NODE,
    ClusterKind,
    ClusterSpec,
    FleetSpec,
    NodeSpec,
    RegionSpec,
    WanLinkSpec,
    validate_fleet,
)
from suanwang.domain.ids import ChipName, ClusterName, RegionName
from suanwang.domain.rates import check_rate, parse_rate

Name = Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9._-]{0,62}$")]
MAX_NODES_PER_GROUP = 20_000


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class RegionIn(_Strict):
    name: Name
    display_name: str = ""


Cards = Annotated[int, Field(ge=1, le=MAX_CARDS_PER_NODE)]
Positive = Annotated[float, Field(gt=0)]


class NodeIn(_Strict):
    name: Name
    chip: str
    cards: Cards
    network_group: str = ""


class NodeGroupIn(_Strict):
    name_prefix: Name
    count: Annotated[int, Field(ge=1, le=MAX_NODES_PER_GROUP)]
    chip: str
    cards: Cards
    nodes_per_network_group: Annotated[int, Field(ge=1)] | None = None


class RayIn(_Strict):
    address: str
    bwrap: str = ""
    worker_uid: Annotated[int, Field(ge=1, le=4_294_967_294)] | None = None


class SlurmTenantIn(_Strict):
    partition: str = ""
    account: str = ""
    qos: str = ""


class SlurmIn(_Strict):
    partition: str
    account: str = ""
    qos: str = ""
    bin_dir: str = ""
    slurmrestd_url: str = ""
    tenants: dict[str, SlurmTenantIn] = {}


class TolerationIn(_Strict):
    key: str
    operator: str = "Equal"
    value: str = ""
    effect: str = ""


class KubernetesIn(_Strict):
    kubeconfig: str = ""
    context: str = ""
    namespace_prefix: str = "suanwang-"
    job_api: KubeJobApi = KubeJobApi.JOB
    kueue_queue: str = ""
    node_selector: dict[str, str] = {}
    tolerations: list[TolerationIn] = []
    api_url: str = ""
    hami: bool = False
    dataset_claim: str = ""
    service_cidr: str = ""


class ClusterIn(_Strict):
    name: Name
    region: Name
    kind: ClusterKind
    backend: str | None = None
    description: str = ""
    nodes: list[NodeIn] = []
    node_groups: list[NodeGroupIn] = []
    ray: RayIn | None = None
    slurm: SlurmIn | None = None
    kubernetes: KubernetesIn | None = None


class WanLinkIn(_Strict):
    between: Annotated[list[Name], Field(min_length=2, max_length=2)]
    bandwidth_gbps: Positive
    rtt_ms: Positive
    distance_km: Positive
    transfer_cap: Annotated[
        float | str | None,
        Field(description="cap on dataset transfers over the link, shared: bytes/s or 400MiB/s"),
    ] = None


class FleetIn(_Strict):
    regions: list[RegionIn] = []
    clusters: list[ClusterIn] = []
    wan_links: list[WanLinkIn] = []


def parse_fleet_yaml(text: str, catalogue: Catalogue) -> FleetSpec:
    """Parse and validate a fleet file; raise ValidationError with the field and a hint."""
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise ValidationError(
            f"the fleet file is not valid YAML{where}",
            field="body",
            hint="check indentation and quoting",
        ) from exc
    return parse_fleet_data(data, catalogue)


def parse_fleet_data(data: Any, catalogue: Catalogue) -> FleetSpec:
    """Validate already-decoded fleet data (a mapping)."""
    if not isinstance(data, dict):
        raise ValidationError(
            "a fleet file is a mapping with regions, clusters and wan_links",
            field="body",
            hint="see docs/fleet.md for an example",
        )
    try:
        parsed = FleetIn.model_validate(data)
    except pydantic.ValidationError as exc:
        first = exc.errors()[0]
        raise ValidationError(
            f"invalid fleet file: {first['msg']}",
            field=_path(first["loc"]),
            hint="see docs/fleet.md for the fleet file format",
        ) from exc
    return validate_fleet(_to_spec(parsed), catalogue)


def _path(loc: tuple[int | str, ...]) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def _to_spec(fleet: FleetIn) -> FleetSpec:
    return FleetSpec(
        regions=tuple(
            RegionSpec(RegionName(r.name), r.display_name or r.name) for r in fleet.regions
        ),
        clusters=tuple(_cluster(c, i) for i, c in enumerate(fleet.clusters)),
        wan_links=tuple(
            WanLinkSpec(
                RegionName(w.between[0]),
                RegionName(w.between[1]),
                w.bandwidth_gbps,
                w.rtt_ms,
                w.distance_km,
                _cap(w.transfer_cap, f"wan_links[{i}].transfer_cap"),
            )
            for i, w in enumerate(fleet.wan_links)
        ),
    )


def _cap(value: float | str | None, field: str) -> float | None:
    """A link's transfer cap: a number of bytes/s or a rate with units (domain/rates.py)."""
    if value is None:
        return None
    return parse_rate(value, field) if isinstance(value, str) else check_rate(value, field)


def _connection(cluster: ClusterIn, index: int) -> Connection | None:
    """The cluster's one connection block, typed (several blocks are refused)."""
    given = [k for k in ("ray", "slurm", "kubernetes") if getattr(cluster, k) is not None]
    if len(given) > 1:
        raise ValidationError(
            f"cluster {cluster.name!r} has {' and '.join(given)} blocks",
            field=f"clusters[{index}].{given[1]}",
            hint="a cluster has one connection block, the one its backend names",
        )
    if cluster.ray is not None:
        ray = cluster.ray
        return RayConnection(address=ray.address, bwrap=ray.bwrap, worker_uid=ray.worker_uid)
    if cluster.slurm is not None:
        slurm = cluster.slurm.model_dump(exclude={"tenants"})
        tenants = {t: own.model_dump() for t, own in cluster.slurm.tenants.items()}
        return SlurmConnection(**slurm, tenants=slurm_tenants(tenants))
    kube = cluster.kubernetes
    if kube is None:
        return None
    return KubernetesConnection(
        kubeconfig=kube.kubeconfig,
        context=kube.context,
        namespace_prefix=kube.namespace_prefix,
        job_api=kube.job_api,
        kueue_queue=kube.kueue_queue,
        node_selector=tuple(sorted(kube.node_selector.items())),
        tolerations=tuple(Toleration(**t.model_dump()) for t in kube.tolerations),
        api_url=kube.api_url,
        hami=kube.hami,
        dataset_claim=kube.dataset_claim,
        service_cidr=kube.service_cidr,
    )


def _cluster(cluster: ClusterIn, index: int) -> ClusterSpec:
    nodes = [NodeSpec(n.name, ChipName(n.chip), n.cards, n.network_group) for n in cluster.nodes]
    for group in cluster.node_groups:
        per_group = group.nodes_per_network_group
        nodes.extend(
            NodeSpec(
                name=f"{group.name_prefix}-{i:05d}",
                chip=ChipName(group.chip),
                cards=group.cards,
                network_group=f"{group.name_prefix}-g{i // per_group:04d}" if per_group else "",
            )
            for i in range(group.count)
        )
    connection = _connection(cluster, index)
    if connection is not None and cluster.kind is ClusterKind.REAL:
        default_backend = backend_of(connection)
    elif cluster.kind is ClusterKind.REAL:
        default_backend = "local"
    else:
        default_backend = "simulated"
    return ClusterSpec(
        name=ClusterName(cluster.name),
        region=RegionName(cluster.region),
        kind=cluster.kind,
        backend=cluster.backend or default_backend,
        nodes=tuple(nodes),
        description=cluster.description,
        connection=connection,
    )
