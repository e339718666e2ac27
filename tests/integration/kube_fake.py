"""A fake Kubernetes API server: a small HTTP server that answers as the API reference says.

No cluster can run here, so the Kubernetes backend's calls are tested against this server
through the real ``kubernetes`` client. It keeps objects in memory and answers:

- create (``POST``): 201 with the object (uid, resourceVersion, creationTimestamp set);
  ``409 AlreadyExists`` as a ``Status`` if the name is taken; ``404 NotFound`` if the
  namespace does not exist;
- get / list (``GET``, ``labelSelector`` of ``k=v`` terms), cluster-wide or namespaced;
- watch (``?watch=true&resourceVersion=N&timeoutSeconds=S``): a chunked stream of JSON
  lines ``{"type": ADDED|MODIFIED|DELETED|BOOKMARK, "object": ...}`` after version N, open
  until S seconds pass; a version older than the compaction point gets an ``ERROR`` event
  whose object is a ``Status`` with code 410 (Expired), as the watch cache answers;
- delete: a ``Status`` Success; the propagation policy is recorded; pods go too;
- pod logs (``limitBytes``), nodes, services (a ClusterIP allocated from
  :attr:`FakeKube.service_cidr` on create, as the API server does), namespaces, and the
  ``kubernetes`` ServiceCIDR object (networking.k8s.io/v1) naming that range.

Errors are ``Status`` objects. A test can make the next matching requests fail
(:meth:`FakeKube.fail`), require a bearer token (401 otherwise), and play the controllers:
:meth:`FakeKube.start` runs a job's pods, :meth:`FakeKube.finish` ends it with an exit code
and a log, :meth:`FakeKube.compact` expires old versions. This module holds the state and
those controls; kube_fake_server.py the HTTP side (``fake_kube()`` starts one).
"""

from __future__ import annotations

import ipaddress
import json
import threading
import time
from dataclasses import dataclass, field
from typing import Any


def now_rfc3339() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def status(code: int, reason: str, message: str) -> dict[str, Any]:
    return {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": message,
        "reason": reason,
        "code": code,
    }


def matches(labels: dict[str, str], selector: str) -> bool:
    for term in filter(None, selector.split(",")):
        key, _, value = term.partition("=")
        if labels.get(key) != value:
            return False
    return True


@dataclass
class Failure:
    method: str
    path_part: str
    code: int
    times: int


@dataclass
class FakeKube:
    """The server's state; every method is thread-safe (one lock, one condition)."""

    token: str = ""
    objects: dict[tuple[str, str, str], dict[str, Any]] = field(default_factory=dict)
    """(group/version/plural or 'v1/<plural>', namespace, name) -> object."""
    events: list[tuple[int, str, str, dict[str, Any]]] = field(default_factory=list)
    logs: dict[tuple[str, str], bytes] = field(default_factory=dict)
    nodes: list[dict[str, Any]] = field(default_factory=list)
    deletes: list[tuple[str, str, str]] = field(default_factory=list)
    """(name, namespace, propagationPolicy) of every delete."""
    requests: list[tuple[str, str]] = field(default_factory=list)
    version: int = 100
    compacted: int = 0
    failures: list[Failure] = field(default_factory=list)
    cond: threading.Condition = field(default_factory=threading.Condition)
    url: str = ""
    unserved: set[str] = field(default_factory=set)
    """API groups/versions (``jobset.x-k8s.io/v1alpha2``) answered with 404, as a cluster
    without those CRDs does."""
    started: dict[str, float] = field(default_factory=dict)
    """Jobs :meth:`tick` started, by name: when (monotonic)."""
    service_cidr: str = "10.96.0.0/12"
    next_ip: int = 10

    def __post_init__(self) -> None:
        cidr = {
            "apiVersion": "networking.k8s.io/v1",
            "kind": "ServiceCIDR",
            "metadata": {"name": "kubernetes"},
            "spec": {"cidrs": [self.service_cidr]},
        }
        self.objects[("networking.k8s.io/v1/servicecidrs", "", "kubernetes")] = cidr

    def cluster_ip(self) -> str:
        """The next free ClusterIP of :attr:`service_cidr` (call under the lock)."""
        self.next_ip += 1
        return str(ipaddress.ip_network(self.service_cidr)[self.next_ip])

    def available(self, name: str) -> None:
        """A replica's Deployment controller: its pod runs and the Deployment is available."""
        key, obj = self.find(name)
        with self.cond:
            obj = json.loads(json.dumps(obj))
            obj["status"] = {"replicas": 1, "readyReplicas": 1, "availableReplicas": 1}
            self._store(key, obj, "MODIFIED")
            labels = obj["spec"]["template"]["metadata"]["labels"]
            pod = {
                "apiVersion": "v1",
                "kind": "Pod",
                "metadata": {"name": f"{name}-5d8f-abcde", "namespace": key[1], "labels": labels},
                "status": {
                    "phase": "Running",
                    "podIP": "10.244.1.7",
                    "containerStatuses": [{"name": "run", "state": {"running": {}}}],
                },
            }
            self.objects[("v1/pods", key[1], pod["metadata"]["name"])] = pod
            argv = " ".join(obj["spec"]["template"]["spec"]["containers"][0]["command"])
            self.logs[(key[1], pod["metadata"]["name"])] = f"serving: {argv}\n".encode()

    # --- test controls ------------------------------------------------------------------
    def fail(self, method: str, path_part: str, code: int, times: int = 1) -> None:
        """Answer the next ``times`` requests of ``method`` whose path contains
        ``path_part`` with ``code`` (a Status; 0 = drop the connection)."""
        with self.cond:
            self.failures.append(Failure(method, path_part, code, times))

    def compact(self) -> None:
        """Expire every version seen so far after an unrelated write (a watch resumed from
        any of them gets 410 Gone; a fresh list's version still works)."""
        with self.cond:
            self.version += 1
            self.compacted = self.version

    def find(self, name: str) -> tuple[tuple[str, str, str], dict[str, Any]]:
        with self.cond:
            for key, obj in self.objects.items():
                if key[2] == name and not key[0].startswith("v1/"):
                    return key, obj
        raise KeyError(name)

    def start(self, name: str) -> None:
        """The job's controller: its pods run."""
        key, obj = self.find(name)
        with self.cond:
            obj = json.loads(json.dumps(obj))
            if obj["apiVersion"].startswith("batch.volcano.sh"):
                obj["status"] = {"state": {"phase": "Running", "lastTransitionTime": now_rfc3339()}}
            elif obj["kind"] == "JobSet":
                obj["status"] = {"replicatedJobsStatus": [{"name": "workers", "active": 1}]}
            else:
                obj["status"] = {"active": 1, "startTime": now_rfc3339()}
            self._store(key, obj, "MODIFIED")
            labels = obj["metadata"]["labels"]
            pod = {
                "apiVersion": "v1",
                "kind": "Pod",
                "metadata": {"name": f"{name}-0-abcde", "namespace": key[1], "labels": labels},
                "status": {
                    "phase": "Running",
                    "containerStatuses": [{"name": "run", "state": {"running": {}}}],
                },
            }
            self.objects[("v1/pods", key[1], pod["metadata"]["name"])] = pod

    def finish(self, name: str, exit_code: int = 0, log: bytes = b"") -> None:
        """The job ends: its pod terminated with ``exit_code`` after writing ``log``."""
        key, obj = self.find(name)
        with self.cond:
            obj = json.loads(json.dumps(obj))
            at = now_rfc3339()
            ok = exit_code == 0
            if obj["apiVersion"].startswith("batch.volcano.sh"):
                phase = "Completed" if ok else "Failed"
                obj["status"] = {"state": {"phase": phase, "lastTransitionTime": at}}
            else:
                kind = ("Completed" if obj["kind"] == "JobSet" else "Complete") if ok else "Failed"
                cond = {"type": kind, "status": "True", "lastTransitionTime": at}
                if not ok:
                    cond.update(
                        reason="BackoffLimitExceeded",
                        message="Job has reached the specified backoff limit",
                    )
                obj["status"] = {"conditions": [cond], "startTime": at}
                if ok:
                    obj["status"]["completionTime"] = at
            self._store(key, obj, "MODIFIED")
            for pkey, pod in self.objects.items():
                if (
                    pkey[0] == "v1/pods"
                    and pkey[1] == key[1]
                    and pod["metadata"]["labels"] == obj["metadata"]["labels"]
                ):
                    term = {
                        "terminated": {
                            "exitCode": exit_code,
                            "reason": "Completed" if ok else "Error",
                        }
                    }
                    pod["status"] = {
                        "phase": "Succeeded" if ok else "Failed",
                        "containerStatuses": [{"name": "run", "state": term}],
                    }
                    self.logs[(key[1], pkey[2])] = log

    def node(
        self,
        name: str,
        allocatable: dict[str, str],
        *,
        labels: dict[str, str] | None = None,
        ready: bool = True,
        unschedulable: bool = False,
    ) -> None:
        self.nodes.append(
            {
                "apiVersion": "v1",
                "kind": "Node",
                "metadata": {"name": name, "labels": labels or {}},
                "spec": {"unschedulable": unschedulable},
                "status": {
                    "allocatable": {"cpu": "16", **allocatable},
                    "conditions": [{"type": "Ready", "status": "True" if ready else "False"}],
                },
            }
        )

    def tick(self) -> None:
        """A job controller and kubelet in one: start each new (unsuspended) job; end it
        once it ran for its env ``SIM_SECONDS`` (default 0.5) with exit code ``SIM_EXIT``
        and the log ``ran: <argv>``; make each new Deployment available (:meth:`available`).
        The live tests run this every 0.1 s."""
        for obj in self.managed("deployments"):
            if not obj.get("status", {}).get("availableReplicas"):
                self.available(obj["metadata"]["name"])
        for obj in self.managed():
            name = obj["metadata"]["name"]
            if obj.get("spec", {}).get("suspend"):
                continue
            pod = obj["spec"]["template"]["spec"]
            env = {e["name"]: e.get("value", "") for e in pod["containers"][0].get("env", [])}
            if name not in self.started:
                self.started[name] = time.monotonic()
                self.start(name)
                continue
            ran = time.monotonic() - self.started[name]
            if ran >= float(env.get("SIM_SECONDS", "0.5")) and "conditions" not in obj["status"]:
                argv = " ".join(pod["containers"][0]["command"])
                self.finish(name, int(env.get("SIM_EXIT", "0")), f"ran: {argv}\n".encode())

    def managed(self, plural: str = "jobs") -> list[dict[str, Any]]:
        with self.cond:
            return [
                o
                for k, o in self.objects.items()
                if k[0].endswith("/" + plural) and not k[0].startswith("v1/")
            ]

    # --- state changes ------------------------------------------------------------------
    def _store(self, key: tuple[str, str, str], obj: dict[str, Any], kind: str) -> None:
        self.version += 1
        obj["metadata"]["resourceVersion"] = str(self.version)
        if kind == "DELETED":
            self.objects.pop(key, None)
        else:
            self.objects[key] = obj
        self.events.append((self.version, kind, key[0], json.loads(json.dumps(obj))))
        self.cond.notify_all()
