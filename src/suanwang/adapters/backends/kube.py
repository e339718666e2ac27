"""Kubernetes backend: each attempt is one Job (or JobSet, Volcano Job, Kueue-queued Job).

- **submit** renders the object the cluster's
  :class:`~suanwang.domain.connections.KubernetesConnection` asks for (``kube_render.py``)
  in the tenant's namespace (``namespace_prefix`` + tenant, created on first use with the
  restricted Pod Security Standard enforced), named ``suanwang-<job>-<attempt>`` and
  labelled with job, attempt and tenant, then creates it. A 409 AlreadyExists means an
  earlier submit of this attempt got through: its object is read back, never created twice.
  The handle stores the namespace, name, kind and the connection (poll, cancel and logs get
  only the handle).
- **poll** answers from a list-and-watch cache of the cluster's managed objects
  (``kube_watch.py``; 410 Gone relists), or asks the API server while that cache is not in
  sync. A failed run's exit code comes from its pods.
- **cancel** deletes the object with ``propagationPolicy=Background`` (its pods go too);
  **logs** read the first pod's container log (``limitBytes`` = offset + limit);
  **capacity** is every Ready, schedulable node with its chip from the allocatable
  device-plugin resource; **runs** lists the managed objects by label.

A connection error, a 5xx or 429 raise :class:`~suanwang.ports.EngineUnreachable` (the
control loop asks again); 401/403 too, and capacity reports the cluster unhealthy with the
reason, so its jobs stay queued. The ``kubernetes`` client is imported by these modules only.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from functools import partial
from typing import Any, TypeVar

from suanwang.adapters.backends.kube_client import ApiKind, KubeApi, KubeDenied, KubeRejected
from suanwang.adapters.backends.kube_render import (
    LABEL_ATTEMPT,
    LABEL_JOB,
    MANAGED_SELECTOR,
    KubeRun,
    dataset_volume,
    dns_label,
    namespace_manifest,
    namespace_of,
    render_run,
    run_env,
)
from suanwang.adapters.backends.kube_serve import (
    DEPLOYMENTS,
    create_replica,
    engine_image,
    is_replica,
    replica_run,
    service_cidrs,
)
from suanwang.adapters.backends.kube_status import exit_code, node_spec, object_state, run_refs
from suanwang.adapters.backends.kube_watch import JobCache, NotSynced
from suanwang.config import Settings
from suanwang.domain.chip_resources import resources_of
from suanwang.domain.connections import (
    Connection,
    KubeJobApi,
    KubernetesConnection,
    connection_data,
    connection_from_data,
)
from suanwang.domain.datasets import DATASET_MOUNT
from suanwang.domain.errors import DomainError
from suanwang.domain.jobs import AttemptState
from suanwang.domain.workloads import JobNetwork, Workload, job_area_parts
from suanwang.ports import (
    Clock,
    ClusterCapacity,
    EngineUnreachable,
    Handle,
    LaunchRequest,
    RunRef,
    RunStatus,
    TenantUids,
    run_name,
)

T = TypeVar("T")
NO_GATEWAY = (
    "could not start: network 'gateway' is not available on Kubernetes clusters "
    "(use network 'none', or a local cluster)"
)


class KubernetesBackend:
    """Runs attempts as Kubernetes Jobs (or JobSets, Volcano Jobs) through the API server."""

    name = "kubernetes"

    def __init__(
        self,
        clock: Clock,
        settings: Settings,
        *,
        tenant_uids: TenantUids | None = None,
        watch_s: int = 60,
    ) -> None:
        self.clock = clock
        self.image = settings.kube_image
        self._engine_images = dict(settings.kube_engine_images)
        self._tenant_uids = tenant_uids
        self._engine_uid = settings.engine_uid
        self._watch_s = watch_s
        self._lock = threading.Lock()
        self._apis: dict[KubernetesConnection, KubeApi] = {}
        self._caches: dict[tuple[KubernetesConnection, ApiKind], JobCache] = {}
        self._namespaces: set[tuple[KubernetesConnection, str]] = set()
        self._cidrs: dict[KubernetesConnection, tuple[str, ...]] = {}

    # --- the Backend port ---------------------------------------------------------------
    def refusal(self, workload: Workload) -> str | None:  # noqa: ARG002 (Backend protocol)
        """Jobs and inference replicas (``kube_serve.py``) both run here."""
        return None

    def submit(self, request: LaunchRequest) -> RunStatus:
        """Create the attempt's object unless it exists; its status either way."""
        connection = _kube(request.connection)
        handle: dict[str, Any] = {"cluster": request.cluster, **connection_data(connection)}
        if request.workload is Workload.PLATFORM_ENGINE:
            return self._submit_replica(request, connection, handle)
        try:
            run = self._run(request, connection)
            manifest = render_run(run, connection)
        except DomainError as exc:
            return _failed(handle, f"could not start: {exc.message}")
        except ValueError as exc:
            return _failed(handle, f"could not start: {exc}")
        kind = ApiKind.of(manifest)
        handle.update(
            namespace=run.namespace, name=run.name, api=[kind.group, kind.version, kind.plural]
        )
        api = self._api(connection)
        self._ensure_namespace(api, connection, run.namespace)
        try:
            obj, created = api.create(manifest)
        except KubeRejected as exc:
            with self._lock:  # e.g. the namespace was deleted: the next attempt recreates it
                self._namespaces.discard((connection, run.namespace))
            return _failed(handle, f"could not submit: {exc}")
        self._cache(connection, kind).put(obj)
        status = self._status(api, obj, handle)
        if not created:
            return status
        where = f"{run.namespace}/{run.name}"
        return RunStatus(status.state, handle, reason=f"created {manifest['kind']} {where}")

    def poll(self, job_id: str, attempt: int, handle: Handle) -> RunStatus:  # noqa: ARG002 (Backend protocol)
        """The attempt's state from its object (cache, else the API server)."""
        connection, kind, namespace, name = _target(handle)
        api = self._api(connection)
        try:
            obj = self._cache(connection, kind).get(namespace, name)
        except NotSynced:
            obj = None
        if obj is None:  # not in the cache (not synced, or not seen yet): ask the server
            obj = _asked(lambda: api.get(kind, namespace, name))
        if obj is None:
            reason = f"kubernetes no longer has {namespace}/{name}"
            return RunStatus(
                AttemptState.LOST, handle=dict(handle), reason=reason, ended_at=self.clock.now()
            )
        return self._status(api, obj, dict(handle))

    def cancel(self, job_id: str, attempt: int, handle: Handle) -> None:  # noqa: ARG002 (Backend protocol)
        """Delete the attempt's object and, in the background, its pods."""
        if "namespace" not in handle:  # the submit never got as far as naming it
            return
        connection, kind, namespace, name = _target(handle)
        api = self._api(connection)
        _asked(lambda: api.delete(kind, namespace, name))
        if is_replica(handle):
            _asked(lambda: api.delete_service(namespace, name))

    def logs(self, job_id: str, attempt: int, handle: Handle, offset: int, limit: int) -> bytes:
        """Up to ``limit`` bytes from ``offset`` of the first pod's log (b"" before it runs)."""
        if "namespace" not in handle or limit <= 0:
            return b""
        connection, _, namespace, _ = _target(handle)
        api = self._api(connection)
        pods = _asked(lambda: api.pods(namespace, _run_selector(job_id, attempt)))
        if not pods:
            return b""
        first = str(pods[0]["metadata"]["name"])
        data = _asked(lambda: api.pod_log(namespace, first, offset + limit))
        return data[offset : offset + limit]

    def capacity(self, cluster: str, connection: Connection | None) -> ClusterCapacity:  # noqa: ARG002 (Backend protocol)
        """Ready, schedulable nodes with their cards; unhealthy with the reason (also when
        the cluster does not serve the objects of its ``job_api``)."""
        try:
            kube = _kube(connection)
            api = self._api(kube)
            nodes = api.nodes()
            kind = _kind_of(kube.job_api)
            if not api.served(kind):
                reason = (
                    f"job_api {kube.job_api.value}: the cluster does not serve "
                    f"{kind.group}/{kind.version} {kind.plural} (is its controller installed?)"
                )
                return ClusterCapacity(healthy=False, reason=reason)
        except KubeDenied as exc:
            return ClusterCapacity(healthy=False, reason=f"credentials refused: {exc}")
        except (EngineUnreachable, ValueError) as exc:
            return ClusterCapacity(healthy=False, reason=str(exc))
        except KubeRejected as exc:
            return ClusterCapacity(healthy=False, reason=str(exc))
        specs = tuple(s for s in (node_spec(n) for n in nodes) if s is not None)
        if not specs:
            return ClusterCapacity(healthy=False, reason="kubernetes has no Ready node")
        return ClusterCapacity(healthy=True, nodes=specs)

    def runs(self, cluster: str, connection: Connection | None) -> list[RunRef]:
        """The managed objects of the cluster's job API and its replicas' Deployments, by
        their job and attempt labels."""
        kube = _kube(connection)
        api = self._api(kube)
        found: list[RunRef] = []
        for kind in (_kind_of(kube.job_api), DEPLOYMENTS):
            items, _ = _asked(partial(api.list_objects, kind, MANAGED_SELECTOR))
            found += run_refs(cluster, kube, kind, items)
        return found

    def close(self) -> None:
        """Stop the watch threads and close the clients."""
        with self._lock:
            caches, apis = list(self._caches.values()), list(self._apis.values())
            self._caches.clear()
            self._apis.clear()
        for cache in caches:
            cache.close()
        for api in apis:
            api.close()

    # --- helpers ------------------------------------------------------------------------
    def _run(self, request: LaunchRequest, connection: KubernetesConnection) -> KubeRun:
        if request.network is JobNetwork.GATEWAY:
            raise ValueError(NO_GATEWAY.removeprefix("could not start: "))
        if not request.command:
            raise ValueError("the kubernetes backend needs a command")
        resources_of(request.chip)  # ValidationError for a chip without names
        nodes = tuple(dict.fromkeys(p.node for p in request.placements))
        env = run_env(request)
        if request.dataset_dir is not None:
            env["SUANWANG_DATASET_DIR"] = DATASET_MOUNT
        uid = self._tenant_uids.uid_for(request.tenant) if self._tenant_uids else 65534
        return KubeRun(
            name=dns_label(run_name(request.job_id, request.attempt), "name"),
            namespace=namespace_of(connection, request.tenant),
            job_id=request.job_id,
            attempt=request.attempt,
            tenant=request.tenant,
            image=self.image,
            command=request.command,
            env=tuple(env.items()),
            chip=request.chip,
            nodes=max(1, len(nodes)),
            cards_per_node=max((p.cards for p in request.placements), default=1),
            working_parts=job_area_parts(request.working_dir),
            max_runtime_s=request.max_runtime_s,
            uid=uid,
            grace_s=request.grace_s,
            dataset=dataset_volume(connection, request.dataset_dir, request.tenant),
        )

    def _submit_replica(
        self, request: LaunchRequest, connection: KubernetesConnection, handle: dict[str, Any]
    ) -> RunStatus:
        """An inference replica: its Deployment and Service (``kube_serve.py``)."""
        image = engine_image(self._engine_images, self.image, request.engine, request.family)
        try:
            run = replica_run(request, connection, image, self._engine_uid or 65534)
        except DomainError as exc:
            return _failed(handle, f"could not start: {exc.message}")
        except ValueError as exc:
            return _failed(handle, f"could not start: {exc}")
        api = self._api(connection)
        try:
            cidrs = self._service_cidrs(api, connection)
        except ValueError as exc:
            return _failed(handle, f"could not start: {exc}")
        self._ensure_namespace(api, connection, run.namespace)
        try:
            obj, fields, created = create_replica(api, run, connection, cidrs)
        except KubeRejected as exc:
            with self._lock:
                self._namespaces.discard((connection, run.namespace))
            return _failed(handle, f"could not submit: {exc}")
        handle.update(fields)
        self._cache(connection, DEPLOYMENTS).put(obj)
        status = self._status(api, obj, handle)
        if not created:
            return status
        where = f"{run.namespace}/{run.name}"
        reason = f"created Deployment and Service {where} (ClusterIP {fields['service_ip']})"
        return RunStatus(status.state, handle, reason=reason)

    def _service_cidrs(self, api: KubeApi, connection: KubernetesConnection) -> tuple[str, ...]:
        with self._lock:
            known = self._cidrs.get(connection)
        if known is None:
            known = service_cidrs(api, connection)
            with self._lock:
                self._cidrs[connection] = known
        return known

    def _status(self, api: KubeApi, obj: dict[str, Any], handle: dict[str, Any]) -> RunStatus:
        seen = object_state(obj)
        code: int | None = None
        if seen.state is AttemptState.SUCCEEDED:
            code = 0
        elif seen.state is AttemptState.FAILED:
            labels = obj.get("metadata", {}).get("labels") or {}
            selector = _run_selector(str(labels.get(LABEL_JOB)), int(labels.get(LABEL_ATTEMPT, 0)))
            namespace = str(obj["metadata"]["namespace"])
            code = exit_code(_asked(lambda: api.pods(namespace, selector)))
            code = 1 if code in (None, 0) else code
        return RunStatus(
            seen.state,
            handle=handle,
            exit_code=code,
            reason=seen.reason,
            started_at=seen.started_at,
            ended_at=seen.ended_at,
        )

    def _api(self, connection: KubernetesConnection) -> KubeApi:
        with self._lock:
            found = self._apis.get(connection)
            if found is None:
                found = self._apis[connection] = KubeApi(connection)
            return found

    def _cache(self, connection: KubernetesConnection, kind: ApiKind) -> JobCache:
        api = self._api(connection)
        with self._lock:
            found = self._caches.get((connection, kind))
            if found is None:
                found = JobCache(api, kind, watch_s=self._watch_s)
                self._caches[(connection, kind)] = found
            return found

    def _ensure_namespace(
        self, api: KubeApi, connection: KubernetesConnection, namespace: str
    ) -> None:
        if (connection, namespace) in self._namespaces:
            return
        api.ensure_namespace(namespace_manifest(namespace))
        with self._lock:
            self._namespaces.add((connection, namespace))


def _asked(fn: Callable[[], T]) -> T:
    """Run an API read; a refusal of the request itself also means "ask again later"."""
    try:
        return fn()
    except KubeRejected as exc:
        raise EngineUnreachable(str(exc)) from exc


def _run_selector(job_id: str, attempt: int) -> str:
    return f"{LABEL_JOB}={job_id},{LABEL_ATTEMPT}={attempt}"


def _failed(handle: dict[str, Any], reason: str) -> RunStatus:
    return RunStatus(AttemptState.FAILED, handle=handle, reason=reason, exit_code=127)


def _kube(connection: Connection | None) -> KubernetesConnection:
    if not isinstance(connection, KubernetesConnection):
        raise ValueError(f"a kubernetes cluster needs a kubernetes connection, not {connection!r}")
    return connection


def _kind_of(job_api: KubeJobApi) -> ApiKind:
    if job_api is KubeJobApi.JOBSET:
        return ApiKind("jobset.x-k8s.io", "v1alpha2", "jobsets")
    if job_api is KubeJobApi.VOLCANO:
        return ApiKind("batch.volcano.sh", "v1alpha1", "jobs")
    return ApiKind("batch", "v1", "jobs")


def _target(handle: Handle) -> tuple[KubernetesConnection, ApiKind, str, str]:
    """The connection, kind, namespace and name a handle written by submit names."""
    connection = _kube(connection_from_data({"kubernetes": handle["kubernetes"]}))
    group, version, plural = (str(x) for x in handle["api"])
    return (
        connection,
        ApiKind(group, version, plural),
        str(handle["namespace"]),
        str(handle["name"]),
    )
