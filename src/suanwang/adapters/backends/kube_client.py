"""The Kubernetes API calls of the backend, through the official ``kubernetes`` client.

Objects travel as plain dicts (the API's JSON): jobs of every ``job_api`` and Deployments
go through the client's generic ``CustomObjectsApi`` (``/apis/<group>/<version>/...``),
the core objects (namespaces, services, pods, logs, nodes) through ``CoreV1Api`` with the
JSON read as is. Errors are sorted once, in :func:`_call`:

- a connection error, a 5xx or 429: :class:`~suanwang.ports.EngineUnreachable` (ask again);
- 401 / 403: :class:`KubeDenied` (also an ``EngineUnreachable``: the cluster shows
  unhealthy with the reason, jobs wait);
- 404 where the caller expects it (``get``, ``delete``): None / nothing;
- 409 AlreadyExists on create: the object exists (a retried submit), read back;
- anything else (400, 422 Invalid): :class:`KubeRejected`, which fails the attempt.

Only this module and its siblings ``kube*.py`` import ``kubernetes``.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, TypeVar

import urllib3
from kubernetes import client as k8s
from kubernetes import config as k8s_config
from kubernetes import watch as k8s_watch
from kubernetes.config.config_exception import ConfigException

from suanwang.domain.connections import KubernetesConnection
from suanwang.ports import EngineUnreachable

T = TypeVar("T")
TIMEOUT = (3.0, 15.0)
"""(connect, read) seconds of every non-watch call."""


class KubeDenied(EngineUnreachable):
    """The API server refused our credentials (401) or permissions (403)."""

    def __init__(self, message: str, status: int) -> None:
        super().__init__(message)
        self.status = status


class KubeRejected(Exception):
    """The API server refused the request itself (bad object, 400/422)."""


@dataclass(frozen=True, slots=True)
class ApiKind:
    """Where objects of one kind live: ``/apis/<group>/<version>/namespaces/<ns>/<plural>``."""

    group: str
    version: str
    plural: str

    @staticmethod
    def of(manifest: dict[str, Any]) -> ApiKind:
        group, _, version = str(manifest["apiVersion"]).rpartition("/")
        plurals = {"Job": "jobs", "JobSet": "jobsets", "Deployment": "deployments"}
        return ApiKind(group, version, plurals[str(manifest["kind"])])


def status_message(exc: k8s.ApiException) -> str:
    """The ``Status`` object's reason and message (or the HTTP reason)."""
    try:
        body = json.loads(exc.body or "{}")
    except (TypeError, ValueError):
        body = {}
    if isinstance(body, dict) and body.get("message"):
        return f"{exc.status} {body.get('reason', '')}: {body['message']}".replace(" :", ":")
    return f"{exc.status} {exc.reason}"


def _call(what: str, fn: Callable[[], T]) -> T:
    """Run one API call, sorting its errors as the module docstring says."""
    try:
        return fn()
    except k8s.ApiException as exc:
        status = exc.status or 0
        detail = f"kubernetes {what}: {status_message(exc)}"
        if status in (401, 403):
            raise KubeDenied(detail, status) from exc
        if status >= 500 or status in (0, 429):
            raise EngineUnreachable(detail) from exc
        raise
    except (urllib3.exceptions.HTTPError, OSError) as exc:
        raise EngineUnreachable(f"kubernetes {what}: cannot reach the API server: {exc}") from exc


def api_client(connection: KubernetesConnection) -> k8s.ApiClient:
    """A client for the cluster: kubeconfig (path, context) or in-cluster config, with
    ``api_url`` overriding the server; EngineUnreachable if no configuration loads."""
    cfg = k8s.Configuration()
    try:
        if connection.kubeconfig or connection.context:
            k8s_config.load_kube_config(
                config_file=connection.kubeconfig or None,
                context=connection.context or None,
                client_configuration=cfg,
                persist_config=False,
            )
        elif not connection.api_url:
            try:
                k8s_config.load_incluster_config(client_configuration=cfg)
            except ConfigException:
                k8s_config.load_kube_config(client_configuration=cfg, persist_config=False)
    except (ConfigException, OSError, ValueError) as exc:
        raise EngineUnreachable(f"kubernetes: cannot load the cluster's config: {exc}") from exc
    if connection.api_url:
        cfg.host = connection.api_url.rstrip("/")
    cfg.retries = False
    return k8s.ApiClient(cfg)


class KubeApi:
    """The calls suanwang makes on one cluster (every method may raise as :func:`_call`)."""

    def __init__(self, connection: KubernetesConnection) -> None:
        self.client = api_client(connection)
        self.objects = k8s.CustomObjectsApi(self.client)
        self.core = k8s.CoreV1Api(self.client)

    def close(self) -> None:
        self.client.close()

    def _json(self, response: Any) -> Any:
        return json.loads(response.data or b"null")

    def ensure_namespace(self, manifest: dict[str, Any]) -> None:
        """Create the namespace unless it exists. Forbidden (403) is left to the object's
        create: an operator may pre-create tenant namespaces and grant no more; if the
        namespace is missing, that create fails with NotFound, naming it."""
        try:
            _call(
                "create namespace",
                lambda: self.core.create_namespace(manifest, _request_timeout=TIMEOUT),
            )
        except KubeDenied as exc:
            if exc.status != 403:
                raise
        except k8s.ApiException as exc:
            if exc.status != 409:
                raise KubeRejected(f"kubernetes create namespace: {status_message(exc)}") from exc

    def create(self, manifest: dict[str, Any]) -> tuple[dict[str, Any], bool]:
        """Create ``manifest``; ``(object, True)``, or the existing one and False on 409."""
        kind = ApiKind.of(manifest)
        meta = manifest["metadata"]
        try:
            made = _call(
                f"create {meta['name']}",
                lambda: self.objects.create_namespaced_custom_object(
                    kind.group,
                    kind.version,
                    meta["namespace"],
                    kind.plural,
                    manifest,
                    _request_timeout=TIMEOUT,
                ),
            )
            return dict(made), True
        except k8s.ApiException as exc:
            if exc.status != 409:
                raise KubeRejected(
                    f"kubernetes refused {meta['name']}: {status_message(exc)}"
                ) from exc
        found = self.get(kind, meta["namespace"], meta["name"])
        if found is None:  # deleted between the 409 and the read: the next try creates it
            raise EngineUnreachable(f"kubernetes: {meta['name']} vanished after 409")
        return found, False

    def create_service(self, manifest: dict[str, Any]) -> dict[str, Any]:
        """Create a Service unless it exists; the Service as the API server keeps it (its
        ``spec.clusterIP`` allocated), read back after a 409."""
        meta = manifest["metadata"]
        try:
            return dict(
                _call(
                    f"create service {meta['name']}",
                    lambda: self._json(
                        self.core.create_namespaced_service(
                            meta["namespace"],
                            manifest,
                            _preload_content=False,
                            _request_timeout=TIMEOUT,
                        )
                    ),
                )
            )
        except k8s.ApiException as exc:
            if exc.status != 409:
                raise KubeRejected(
                    f"kubernetes refused {meta['name']}: {status_message(exc)}"
                ) from exc
        found = self.get_service(meta["namespace"], meta["name"])
        if found is None:  # deleted between the 409 and the read: the next try creates it
            raise EngineUnreachable(f"kubernetes: service {meta['name']} vanished after 409")
        return found

    def get_service(self, namespace: str, name: str) -> dict[str, Any] | None:
        """The Service, or None if it does not exist."""
        try:
            found = _call(
                f"get service {name}",
                lambda: self._json(
                    self.core.read_namespaced_service(
                        name, namespace, _preload_content=False, _request_timeout=TIMEOUT
                    )
                ),
            )
        except k8s.ApiException as exc:
            if exc.status == 404:
                return None
            raise KubeRejected(f"kubernetes get service {name}: {status_message(exc)}") from exc
        return dict(found)

    def get_cluster_object(self, kind: ApiKind, name: str) -> dict[str, Any] | None:
        """A cluster-scoped object, or None if it (or its kind) is not there."""
        try:
            found = _call(
                f"get {kind.plural}/{name}",
                lambda: self.objects.get_cluster_custom_object(
                    kind.group, kind.version, kind.plural, name, _request_timeout=TIMEOUT
                ),
            )
        except k8s.ApiException as exc:
            if exc.status == 404:
                return None
            raise KubeRejected(f"kubernetes get {name}: {status_message(exc)}") from exc
        return dict(found)

    def get(self, kind: ApiKind, namespace: str, name: str) -> dict[str, Any] | None:
        """The object, or None if it does not exist."""
        try:
            found = _call(
                f"get {name}",
                lambda: self.objects.get_namespaced_custom_object(
                    kind.group,
                    kind.version,
                    namespace,
                    kind.plural,
                    name,
                    _request_timeout=TIMEOUT,
                ),
            )
        except k8s.ApiException as exc:
            if exc.status == 404:
                return None
            raise KubeRejected(f"kubernetes get {name}: {status_message(exc)}") from exc
        return dict(found)

    def served(self, kind: ApiKind) -> bool:
        """Whether the API server serves ``kind`` (a JobSet or Volcano cluster without its
        CRDs answers 404)."""
        try:
            _call(
                f"list {kind.plural}",
                lambda: self.objects.list_cluster_custom_object(
                    kind.group, kind.version, kind.plural, limit=1, _request_timeout=TIMEOUT
                ),
            )
        except k8s.ApiException as exc:
            if exc.status == 404:
                return False
            raise KubeRejected(f"kubernetes list {kind.plural}: {status_message(exc)}") from exc
        return True

    def list_objects(self, kind: ApiKind, selector: str) -> tuple[list[dict[str, Any]], str]:
        """Objects of ``kind`` in every namespace matching ``selector``, and the list's
        resourceVersion (to watch from)."""
        found = _call(
            f"list {kind.plural}",
            lambda: self.objects.list_cluster_custom_object(
                kind.group,
                kind.version,
                kind.plural,
                label_selector=selector,
                _request_timeout=TIMEOUT,
            ),
        )
        items = [dict(i) for i in found.get("items", [])]
        return items, str(found.get("metadata", {}).get("resourceVersion", ""))

    def watch(
        self,
        kind: ApiKind,
        selector: str,
        resource_version: str,
        timeout_s: int,
        stopper: list[Any],
    ) -> Iterator[tuple[str, dict[str, Any]]]:
        """``(type, object)`` events after ``resource_version`` until the server ends the
        watch (``timeout_s``); an expired version raises ApiException 410 (relist then).
        ``stopper`` receives the Watch, so another thread can stop it."""
        watcher = k8s_watch.Watch()
        stopper.append(watcher)
        stream = watcher.stream(
            self.objects.list_cluster_custom_object,
            kind.group,
            kind.version,
            kind.plural,
            label_selector=selector,
            resource_version=resource_version,
            timeout_seconds=timeout_s,
            allow_watch_bookmarks=True,
            _request_timeout=(TIMEOUT[0], timeout_s + TIMEOUT[1]),
        )
        for event in stream:  # custom objects come as dicts (the client's return type: object)
            yield str(event["type"]), dict(event["raw_object"])

    def delete(self, kind: ApiKind, namespace: str, name: str) -> None:
        """Delete the object and (in the background) its pods; nothing if it is gone."""
        body = k8s.V1DeleteOptions(propagation_policy="Background")
        try:
            _call(
                f"delete {name}",
                lambda: self.objects.delete_namespaced_custom_object(
                    kind.group,
                    kind.version,
                    namespace,
                    kind.plural,
                    name,
                    propagation_policy="Background",
                    body=body,
                    _request_timeout=TIMEOUT,
                ),
            )
        except k8s.ApiException as exc:
            if exc.status != 404:
                raise KubeRejected(f"kubernetes delete {name}: {status_message(exc)}") from exc

    def delete_service(self, namespace: str, name: str) -> None:
        """Delete the Service (the API answers with it, read as is); nothing if it is gone."""
        try:
            _call(
                f"delete service {name}",
                lambda: self.core.delete_namespaced_service(
                    name, namespace, _preload_content=False, _request_timeout=TIMEOUT
                ),
            )
        except k8s.ApiException as exc:
            if exc.status != 404:
                raise KubeRejected(f"kubernetes delete {name}: {status_message(exc)}") from exc

    def pods(self, namespace: str, selector: str) -> list[dict[str, Any]]:
        """The pods of ``namespace`` matching ``selector``, as dicts, by name."""
        found = _call(
            "list pods",
            lambda: self._json(
                self.core.list_namespaced_pod(
                    namespace,
                    label_selector=selector,
                    _preload_content=False,
                    _request_timeout=TIMEOUT,
                )
            ),
        )
        return sorted(found.get("items", []), key=lambda p: str(p["metadata"]["name"]))

    def pod_log(self, namespace: str, pod: str, limit_bytes: int) -> bytes:
        """The first ``limit_bytes`` of the pod's container log (b"" if it has none yet)."""
        try:
            response = _call(
                f"log of {pod}",
                lambda: self.core.read_namespaced_pod_log(
                    pod,
                    namespace,
                    limit_bytes=limit_bytes,
                    _preload_content=False,
                    _request_timeout=TIMEOUT,
                ),
            )
        except k8s.ApiException as exc:
            if exc.status in (400, 404):  # container not started yet / pod gone
                return b""
            raise KubeRejected(f"kubernetes log of {pod}: {status_message(exc)}") from exc
        return bytes(response.data or b"")

    def nodes(self) -> list[dict[str, Any]]:
        """Every node of the cluster, as dicts."""
        found = _call(
            "list nodes",
            lambda: self._json(
                self.core.list_node(_preload_content=False, _request_timeout=TIMEOUT)
            ),
        )
        return list(found.get("items", []))
