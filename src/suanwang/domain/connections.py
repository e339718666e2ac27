"""How suanwang reaches the execution engine of a real cluster: Ray, Slurm or Kubernetes.

A cluster whose ``backend`` is an engine carries exactly one connection block in the fleet
file (``ray:``, ``slurm:`` or ``kubernetes:``); ``local`` and ``simulated`` clusters carry
none. This module holds the typed, frozen connections, checks them
(:func:`check_connection`, errors name the fleet-file field) and converts them to and from
plain data (:func:`connection_data`, :func:`connection_from_data`) for storage and output.
Nothing here talks to an engine. Connections hold no secrets: a kubeconfig is a path.
"""

from __future__ import annotations

import enum
import ipaddress
import re
from collections.abc import Mapping
from dataclasses import dataclass, fields, replace
from typing import Any
from urllib.parse import urlsplit

from suanwang.domain.errors import ValidationError
from suanwang.domain.tenancy import TENANT_NAME


class KubeJobApi(enum.StrEnum):
    """Which object a Kubernetes cluster runs jobs as."""

    JOB = "job"
    """batch/v1 Job (indexed for multi-node)."""
    JOBSET = "jobset"
    VOLCANO = "volcano"
    KUEUE = "kueue"
    """A batch/v1 Job labelled for a Kueue LocalQueue (``kueue_queue``)."""


@dataclass(frozen=True, slots=True)
class Toleration:
    """One Kubernetes toleration added to every pod suanwang creates on the cluster."""

    key: str
    operator: str = "Equal"
    value: str = ""
    effect: str = ""


@dataclass(frozen=True, slots=True)
class RayConnection:
    """A Ray cluster: its dashboard / Job Submission URL, e.g. ``http://head:8265``."""

    address: str
    bwrap: str = ""
    """Path of bubblewrap on the Ray nodes ("" = where the control plane finds it, else
    ``bwrap`` from the node's PATH): tenant jobs run inside it."""
    worker_uid: int | None = None
    """The uid Ray's workers run as on the nodes: a job's dataset directories are made
    searchable by it before submit (its bubblewrap binds the replica as that uid)."""


@dataclass(frozen=True, slots=True)
class SlurmTenant:
    """One tenant's own Slurm partition, account and QoS ("" keeps the block's value)."""

    tenant: str
    partition: str = ""
    account: str = ""
    qos: str = ""


SLURM_TENANT_FIELDS = ("partition", "account", "qos")


@dataclass(frozen=True, slots=True)
class SlurmConnection:
    """A Slurm cluster: where jobs go and how the commands (or slurmrestd) are reached."""

    partition: str
    account: str = ""
    qos: str = ""
    bin_dir: str = ""
    """Directory of sbatch, squeue, sacct, scancel, sinfo; "" means from PATH."""
    slurmrestd_url: str = ""
    """When set, jobs go through slurmrestd instead of the commands."""
    tenants: tuple[SlurmTenant, ...] = ()
    """Per-tenant overrides of partition, account and QoS, sorted by tenant id."""

    def for_tenant(self, tenant: str) -> SlurmConnection:
        """The connection a job of ``tenant`` is submitted with: its overrides applied."""
        own = next((t for t in self.tenants if t.tenant == tenant), None)
        if own is None:
            return replace(self, tenants=())
        return replace(
            self,
            partition=own.partition or self.partition,
            account=own.account or self.account,
            qos=own.qos or self.qos,
            tenants=(),
        )

    @property
    def partitions(self) -> frozenset[str]:
        """Every partition suanwang submits to on this cluster (the block's and tenants')."""
        return frozenset({self.partition} | {t.partition for t in self.tenants if t.partition})


@dataclass(frozen=True, slots=True)
class KubernetesConnection:
    """A Kubernetes cluster: credentials by path, per-tenant namespaces, the job API."""

    kubeconfig: str = ""
    """Path of a kubeconfig file ("" = in-cluster config or ``$KUBECONFIG``)."""
    context: str = ""
    namespace_prefix: str = "suanwang-"
    job_api: KubeJobApi = KubeJobApi.JOB
    kueue_queue: str = ""
    node_selector: tuple[tuple[str, str], ...] = ()
    tolerations: tuple[Toleration, ...] = ()
    api_url: str = ""
    """Overrides the kubeconfig's server URL (tests point it at a fake API server)."""
    hami: bool = False
    """The cluster shares cards through HAMi: pods ask for HAMi's device resources."""
    dataset_claim: str = ""
    """A PersistentVolumeClaim of the storage root in each tenant namespace: a job's
    dataset replica is mounted from it read-only ("" = jobs cannot name datasets here)."""
    service_cidr: str = ""
    """The cluster's Service IP range (e.g. ``10.96.0.0/12``), for clusters whose API does
    not serve ServiceCIDR objects: a replica's ClusterIP must lie inside it."""


Connection = RayConnection | SlurmConnection | KubernetesConnection

CONNECTION_BACKENDS: dict[type[Any], str] = {
    RayConnection: "ray",
    SlurmConnection: "slurm",
    KubernetesConnection: "kubernetes",
}
"""The backend each connection type belongs to; its fleet-file block has the same key."""
ENGINE_BACKENDS = frozenset(CONNECTION_BACKENDS.values())

_SLURM_NAME = re.compile(r"^[A-Za-z0-9._-]{1,64}$")
_KUBE_PREFIX = re.compile(r"^[a-z0-9]([a-z0-9-]{0,30})$")
_LABEL_KEY = re.compile(r"^([a-z0-9.-]{1,253}/)?[A-Za-z0-9]([A-Za-z0-9._-]{0,61}[A-Za-z0-9])?$")
_LABEL_VALUE = re.compile(r"^([A-Za-z0-9]([A-Za-z0-9._-]{0,61}[A-Za-z0-9])?)?$")
_DNS_SUBDOMAIN = re.compile(
    r"^(?=.{1,253}$)[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"
)
_TOLERATION_OPERATORS = frozenset({"Equal", "Exists"})
_TOLERATION_EFFECTS = frozenset({"", "NoSchedule", "PreferNoSchedule", "NoExecute"})


def backend_of(connection: Connection) -> str:
    """The backend name a connection belongs to (``ray``, ``slurm``, ``kubernetes``)."""
    return CONNECTION_BACKENDS[type(connection)]


def check_connection(backend: str, connection: Connection | None, where: str) -> None:
    """Check that ``connection`` fits a cluster of ``backend`` at fleet-file path ``where``.

    Engine backends need their own block; ``local``/``simulated`` must have none. Raises
    :class:`ValidationError` naming the field, e.g. ``clusters[0].ray.address``.
    """
    if connection is None:
        if backend in ENGINE_BACKENDS:
            raise ValidationError(
                f"a {backend} cluster needs a '{backend}' connection block",
                field=f"{where}.{backend}",
                hint=f"see docs/backends.md for the '{backend}:' block",
            )
        return
    own = backend_of(connection)
    if own != backend:
        raise ValidationError(
            f"a '{own}' block does not fit a cluster with backend {backend!r}",
            field=f"{where}.{own}",
            hint=f"remove the '{own}' block or set backend: {own}",
        )
    if isinstance(connection, RayConnection):
        _check_url(connection.address, f"{where}.ray.address", required=True)
        if connection.bwrap and not connection.bwrap.startswith("/"):
            raise ValidationError(
                f"bwrap {connection.bwrap!r} is not an absolute path",
                field=f"{where}.ray.bwrap",
                hint="bubblewrap's path on the Ray nodes, e.g. /usr/bin/bwrap",
            )
    elif isinstance(connection, SlurmConnection):
        _check_slurm(connection, f"{where}.slurm")
    else:
        _check_kube(connection, f"{where}.kubernetes")


def _check_url(url: str, field: str, *, required: bool) -> None:
    if not url and not required:
        return
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise ValidationError(f"{url!r} is not a URL: {exc}", field=field) from exc
    if parts.scheme not in {"http", "https"} or not parts.hostname:
        raise ValidationError(
            f"{url!r} is not an http(s) URL with a host",
            field=field,
            hint="e.g. http://ray-head.example:8265",
        )
    if parts.username or parts.password or parts.query or parts.fragment:
        raise ValidationError(
            f"{url!r} carries credentials, a query or a fragment",
            field=field,
            hint="give only scheme, host, port and path (no secrets in the fleet file)",
        )
    if port == 0:
        raise ValidationError(f"{url!r} has port 0", field=field)


def _check_slurm(conn: SlurmConnection, where: str) -> None:
    for name in SLURM_TENANT_FIELDS:
        _check_slurm_name(name, getattr(conn, name), where, required=name == "partition")
    seen: set[str] = set()
    for own in conn.tenants:
        at = f"{where}.tenants.{own.tenant}"
        if not TENANT_NAME.fullmatch(own.tenant) or own.tenant in seen:
            raise ValidationError(
                f"{own.tenant!r} is not a tenant id (or is given twice)",
                field=at,
                hint="3-40 characters: lowercase letters, digits and '-', starting with a letter",
            )
        seen.add(own.tenant)
        if not any(getattr(own, name) for name in SLURM_TENANT_FIELDS):
            raise ValidationError(
                f"tenant {own.tenant!r} sets none of partition, account, qos",
                field=at,
                hint="give at least one of them, or leave the tenant out",
            )
        for name in SLURM_TENANT_FIELDS:
            _check_slurm_name(name, getattr(own, name), at, required=False)
    if conn.bin_dir and (not conn.bin_dir.startswith("/") or "\x00" in conn.bin_dir):
        raise ValidationError(
            f"bin_dir {conn.bin_dir!r} is not an absolute path",
            field=f"{where}.bin_dir",
            hint="e.g. /usr/bin, or leave it out to use PATH",
        )
    _check_url(conn.slurmrestd_url, f"{where}.slurmrestd_url", required=False)


def _check_slurm_name(name: str, value: str, where: str, *, required: bool) -> None:
    if (value or required) and not _SLURM_NAME.match(value):
        raise ValidationError(
            f"{name} {value!r} is not a Slurm name",
            field=f"{where}.{name}",
            hint="letters, digits, '.', '_' and '-' (1-64); the block's partition is required",
        )


def _check_kube(conn: KubernetesConnection, where: str) -> None:
    if conn.kubeconfig and (not conn.kubeconfig.startswith("/") or "\x00" in conn.kubeconfig):
        raise ValidationError(
            f"kubeconfig {conn.kubeconfig!r} is not an absolute path",
            field=f"{where}.kubeconfig",
            hint="give the path of a kubeconfig file on the control plane's host",
        )
    if not _KUBE_PREFIX.match(conn.namespace_prefix):
        raise ValidationError(
            f"namespace_prefix {conn.namespace_prefix!r} cannot start a namespace name",
            field=f"{where}.namespace_prefix",
            hint="lower-case letters, digits and '-', starting with a letter or digit (<= 31)",
        )
    if (conn.job_api is KubeJobApi.KUEUE) != bool(conn.kueue_queue):
        raise ValidationError(
            "kueue_queue is needed with job_api: kueue, and only then",
            field=f"{where}.kueue_queue",
            hint="name the Kueue LocalQueue, or choose job_api: kueue",
        )
    if conn.dataset_claim and not _DNS_SUBDOMAIN.match(conn.dataset_claim):
        raise ValidationError(
            f"dataset_claim {conn.dataset_claim!r} is not a PersistentVolumeClaim name",
            field=f"{where}.dataset_claim",
            hint="a DNS-1123 subdomain: lower-case letters, digits, '-' and '.' (<= 253)",
        )
    if conn.kueue_queue and not _DNS_SUBDOMAIN.match(conn.kueue_queue):
        raise ValidationError(
            f"kueue_queue {conn.kueue_queue!r} is not a LocalQueue name",
            field=f"{where}.kueue_queue",
            hint="a DNS-1123 subdomain: lower-case letters, digits, '-' and '.' (<= 253)",
        )
    for key, value in conn.node_selector:
        if not _LABEL_KEY.match(key) or not _LABEL_VALUE.match(value):
            raise ValidationError(
                f"node_selector {key}={value!r} is not a Kubernetes label",
                field=f"{where}.node_selector",
            )
    for i, tol in enumerate(conn.tolerations):
        if tol.operator not in _TOLERATION_OPERATORS or tol.effect not in _TOLERATION_EFFECTS:
            raise ValidationError(
                f"toleration {tol.key!r}: operator {tol.operator!r}, effect {tol.effect!r}",
                field=f"{where}.tolerations[{i}]",
                hint="operator Equal or Exists; effect NoSchedule, PreferNoSchedule, NoExecute",
            )
    _check_url(conn.api_url, f"{where}.api_url", required=False)
    if conn.service_cidr:
        try:
            ipaddress.ip_network(conn.service_cidr)
        except ValueError as exc:
            raise ValidationError(
                f"service_cidr {conn.service_cidr!r} is not an IP network: {exc}",
                field=f"{where}.service_cidr",
                hint="the API server's --service-cluster-ip-range, e.g. 10.96.0.0/12",
            ) from exc


def connection_data(connection: Connection) -> dict[str, Any]:
    """``{"<backend>": {field: value}}``: the fleet-file block, as plain JSON-able data
    (a Ray block's unset ``bwrap`` and ``worker_uid`` are left out)."""
    block: dict[str, Any] = {}
    for f in fields(connection):
        value = getattr(connection, f.name)
        optional = isinstance(connection, RayConnection) and f.name in ("bwrap", "worker_uid")
        if optional and not value:
            continue
        if isinstance(value, enum.Enum):
            value = value.value
        elif f.name == "node_selector":
            value = dict(value)
        elif f.name == "tolerations":
            value = [{g.name: getattr(t, g.name) for g in fields(t)} for t in value]
        elif f.name == "tenants":
            value = {
                t.tenant: {k: getattr(t, k) for k in SLURM_TENANT_FIELDS if getattr(t, k)}
                for t in value
            }
        block[f.name] = value
    return {backend_of(connection): block}


def connection_from_data(data: Mapping[str, Any]) -> Connection:
    """The inverse of :func:`connection_data` (for data this module wrote; raises
    ``ValueError`` on anything else)."""
    if len(data) != 1:
        raise ValueError(f"a connection is one block, got keys {sorted(data)}")
    ((backend, block),) = data.items()
    if not isinstance(block, Mapping):
        raise ValueError(f"the {backend!r} block is not a mapping")
    if backend == "ray":
        uid = block.get("worker_uid")
        return RayConnection(
            address=str(block["address"]),
            bwrap=str(block.get("bwrap", "")),
            worker_uid=int(uid) if uid is not None else None,
        )
    if backend == "slurm":
        rest = {k: str(v) for k, v in block.items() if k != "tenants"}
        return SlurmConnection(**rest, tenants=slurm_tenants(block.get("tenants", {})))
    if backend == "kubernetes":
        rest = {k: v for k, v in block.items() if k not in _KUBE_STRUCTURED}
        return KubernetesConnection(
            **{k: str(v) for k, v in rest.items()},
            job_api=KubeJobApi(block.get("job_api", KubeJobApi.JOB.value)),
            node_selector=tuple(
                (str(k), str(v)) for k, v in block.get("node_selector", {}).items()
            ),
            tolerations=tuple(Toleration(**t) for t in block.get("tolerations", [])),
            hami=bool(block.get("hami", False)),
        )
    raise ValueError(f"unknown connection block {backend!r}")


def slurm_tenants(data: Mapping[str, Mapping[str, Any]]) -> tuple[SlurmTenant, ...]:
    """``{tenant: {partition, account, qos}}`` as the connection's sorted tuple."""
    return tuple(
        SlurmTenant(tenant=str(tenant), **{k: str(v) for k, v in own.items()})
        for tenant, own in sorted(data.items())
    )


_KUBE_STRUCTURED = frozenset({"job_api", "node_selector", "tolerations", "hami"})
