"""Ray backend: each attempt is one Ray job, submitted through the Job Submission API.

- **submit** renders the job (``ray_submit.py``): submission id ``suanwang-<job>-<attempt>``,
  entrypoint the argv quoted with ``shlex.join``, the cards as ``entrypoint_resources``
  (``{"Ascend910B": 8}``), a runtime env with the job's variables and suanwang's
  ``SUANWANG_*`` only; a multi-node job is one Ray job whose driver holds a placement
  group of one bundle per node (``STRICT_SPREAD``, or ``PACK`` when the job asks). Ray
  refuses a second job with one submission id, and submit asks for the id first: a retried
  submit finds the run instead of starting another. The address and the submission id go
  into the handle, so a restarted control plane re-attaches.
- **poll** is ``get_job_info`` (PENDING -> starting, RUNNING -> running, SUCCEEDED,
  FAILED with Ray's message, STOPPED -> cancelled; an id Ray does not know -> lost);
  **cancel** is ``stop_job``; **logs** slice ``get_job_logs``; **runs** are the jobs of
  ``list_jobs`` named ``suanwang-...``.
- **capacity** reads the live nodes from the dashboard's state API (``GET /api/v0/nodes``,
  no ``ray.init`` in the control plane): each node's chip is its custom resource.
- A tenant job runs inside bubblewrap on its node, without network (``ray_submit.py``);
  bwrap's path there is the fleet block's ``bwrap``, else where this process finds it
  (``shutil.which``), else ``bwrap`` on the node's PATH. In sandbox mode a node without it
  fails the job with the reason; in single-user-dev mode the job then runs unconfined.
- A tenant job's dataset replica is bound read-only at ``/data/input`` by that bubblewrap,
  which runs as the Ray workers' uid: with ``ray.worker_uid`` set (and the storage on a
  filesystem this host and the nodes share at one path) the backend gives that uid search on
  the tenant's dataset directories first (``dataset_access.py``) and fails the attempt
  with the reason if the uid still cannot reach the replica.
- A platform engine placed on one node is pinned there (label ``ray.io/node-id``); the
  node's address is the handle's ``host`` and the run's ``SUANWANG_NODE_ADDRESS``.

While Ray cannot be asked (address unreachable, dashboard down) submit/poll/cancel/logs
raise :class:`~suanwang.ports.EngineUnreachable` and capacity answers unhealthy with the
reason; nothing fails for it. Only this module imports ``ray`` (lazily, when the backend
is built), so the core runs without it.
"""

from __future__ import annotations

import importlib
import re
import shutil
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol, TypeVar

import httpx

from suanwang.adapters.backends.dataset_access import open_replica
from suanwang.adapters.backends.ray_state import (
    RayAnswerError,
    RayJob,
    RayNode,
    capacity_of,
    job_of,
    named,
    nodes_of,
    status_of,
)
from suanwang.adapters.backends.ray_submit import Confine, Pin, problem, render
from suanwang.adapters.backends.ray_submit import nodes_of as placed_nodes
from suanwang.adapters.backends.sandbox import IsolationMode, root_layout
from suanwang.config import Settings
from suanwang.domain.connections import Connection, RayConnection
from suanwang.domain.jobs import AttemptState
from suanwang.domain.workloads import Workload
from suanwang.ports import (
    Clock,
    ClusterCapacity,
    EngineUnreachable,
    Handle,
    LaunchRequest,
    RunRef,
    RunStatus,
    parse_run_name,
    run_name,
)

TIMEOUT_S = 10.0
"""How long one question to the dashboard may take before Ray counts as unreachable."""


class JobClient(Protocol):
    """The part of ``ray.job_submission.JobSubmissionClient`` this backend uses."""

    def submit_job(self, **kwargs: Any) -> str: ...

    def get_job_info(self, job_id: str) -> Any: ...

    def stop_job(self, job_id: str) -> bool: ...

    def get_job_logs(self, job_id: str) -> str: ...

    def list_jobs(self) -> list[Any]: ...


ClientFactory = Callable[[str], JobClient]
FetchJson = Callable[[str], Any]
"""``GET url`` -> its JSON body (raises ``httpx.HTTPError`` when it cannot)."""


T = TypeVar("T")
_STATUS = re.compile(r"status code (\d{3})")


class _UnknownJob(Exception):
    """Ray answered 404 for a submission id."""


class _Refused(Exception):
    """Ray refused the request (a 4xx other than 404: bad or duplicate submission)."""


def ray_client_factory() -> ClientFactory:
    """``JobSubmissionClient`` with bounded requests (imports ``ray`` now: ImportError if
    it is not installed)."""
    return bounded(importlib.import_module("ray.job_submission").JobSubmissionClient)


def bounded(base: type[Any]) -> ClientFactory:
    """``base`` (a ``JobSubmissionClient``) whose every HTTP request times out after
    :data:`TIMEOUT_S`: Ray's client sends its requests without a timeout, so a black-holed
    address would hold the control loop for minutes."""

    class BoundedClient(base):  # type: ignore[misc]
        def _do_request(self, *args: Any, **kwargs: Any) -> Any:
            kwargs.setdefault("timeout", TIMEOUT_S)
            return super()._do_request(*args, **kwargs)

    factory: ClientFactory = BoundedClient
    return factory


def fetch_json(url: str) -> Any:
    """``GET url`` with a bounded timeout; the JSON body of a 2xx answer."""
    response = httpx.get(url, timeout=TIMEOUT_S)
    response.raise_for_status()
    return response.json()


class RayBackend:
    """Runs attempts as Ray jobs on the cluster at the connection's address."""

    name = "ray"

    def __init__(
        self,
        clock: Clock,
        settings: Settings,
        *,
        client_factory: ClientFactory | None = None,
        fetch: FetchJson = fetch_json,
        bwrap: str | None = None,
    ) -> None:
        self.clock = clock
        self._sandboxed = IsolationMode(settings.local_isolation) is IsolationMode.SANDBOX
        self._bwrap = bwrap or shutil.which("bwrap") or "bwrap"
        self._layout = root_layout()
        self._factory = client_factory or ray_client_factory()
        self._fetch = fetch
        self._lock = threading.Lock()
        self._clients: dict[str, JobClient] = {}

    # --- the Backend port ---------------------------------------------------------------
    def refusal(self, workload: Workload) -> str | None:  # noqa: ARG002 (Backend protocol)
        """None: any workload may go to Ray (the engine runs it as the Ray workers' user)."""
        return None

    def submit(self, request: LaunchRequest) -> RunStatus:
        """Submit the attempt as a Ray job unless Ray already has it; its status either way."""
        address = _ray(request.connection).address
        name = run_name(request.job_id, request.attempt)
        handle: dict[str, Any] = {
            "cluster": request.cluster,
            "address": address,
            "submission_id": name,
        }
        refused = problem(request)
        if refused is not None:
            return RunStatus(AttemptState.FAILED, handle=handle, reason=refused, exit_code=127)
        client = self._client(address)
        pin = self._pin(address, request)
        if pin is not None:  # checked by the control plane before routing (domain/endpoints.py)
            handle["node"], handle["host"] = pin.name, pin.address
        known = self._info(address, client, name)
        if known is not None:
            return status_of(known, handle)
        blocked = _open_dataset(request)
        if blocked is not None:
            return RunStatus(AttemptState.FAILED, handle=handle, reason=blocked, exit_code=127)
        try:  # EngineUnreachable: the job may exist, the next try asks for it by id
            self._call(
                address,
                lambda: client.submit_job(**render(request, pin, self._confine(request)).kwargs()),
            )
        except ValueError as exc:  # the client refused the runtime env before sending it
            return RunStatus(AttemptState.FAILED, handle=handle, reason=f"could not submit: {exc}")
        except (_UnknownJob, _Refused) as exc:
            known = self._info(address, client, name)  # a concurrent submit of this attempt
            if known is not None:
                return status_of(known, handle)
            return RunStatus(AttemptState.FAILED, handle=handle, reason=f"could not submit: {exc}")
        return RunStatus(
            AttemptState.STARTING, handle=handle, reason=f"submitted as ray job {name}"
        )

    def poll(self, job_id: str, attempt: int, handle: Handle) -> RunStatus:
        """The attempt's state from Ray; lost if Ray does not know its submission id."""
        address, name = _where(job_id, attempt, handle)
        known = self._info(address, self._client(address), name) if address else None
        if known is None:
            reason = f"ray no longer knows job {name}"
            return RunStatus(
                AttemptState.LOST, handle=dict(handle), reason=reason, ended_at=self.clock.now()
            )
        return status_of(known, dict(handle))

    def cancel(self, job_id: str, attempt: int, handle: Handle) -> None:
        """``stop_job`` (Ray stops the entrypoint, then kills it); a no-op for an unknown
        or finished job."""
        address, name = _where(job_id, attempt, handle)
        if not address:
            return  # never submitted
        client = self._client(address)
        try:
            self._call(address, lambda: client.stop_job(name))
        except _UnknownJob:
            return

    def logs(self, job_id: str, attempt: int, handle: Handle, offset: int, limit: int) -> bytes:
        """Up to ``limit`` bytes of the job's logs from ``offset`` (empty for an unknown job)."""
        address, name = _where(job_id, attempt, handle)
        if not address:
            return b""  # never submitted
        client = self._client(address)
        try:
            text = self._call(address, lambda: client.get_job_logs(name))
        except _UnknownJob:
            return b""
        data = str(text).encode("utf-8", errors="replace")
        return data[max(offset, 0) : max(offset, 0) + max(limit, 0)]

    def capacity(self, cluster: str, connection: Connection | None) -> ClusterCapacity:  # noqa: ARG002 (Backend protocol)
        """Live nodes with their chip and cards (unhealthy with the reason)."""
        try:
            address = _ray(connection).address
            return capacity_of(self._nodes(address))
        except (ValueError, EngineUnreachable) as exc:
            return ClusterCapacity(healthy=False, reason=str(exc))

    def runs(self, cluster: str, connection: Connection | None) -> list[RunRef]:
        """Jobs Ray holds whose submission id is ``suanwang-<job>-<attempt>``."""
        address = _ray(connection).address
        client = self._client(address)
        found: list[RunRef] = []
        for details in self._call(address, client.list_jobs):
            job = job_of(details)
            parsed = parse_run_name(job.submission_id)
            if parsed is None:
                continue
            handle = {"cluster": cluster, "address": address, "submission_id": job.submission_id}
            found.append(RunRef(parsed[0], parsed[1], handle, alive=not job.state.ended))
        return found

    # --- helpers ------------------------------------------------------------------------
    def _client(self, address: str) -> JobClient:
        """The cached client of ``address`` (built once the dashboard answered)."""
        with self._lock:
            client = self._clients.get(address)
        if client is not None:
            return client
        self._get_json(address, "/api/version")
        client = self._call(address, lambda: self._factory(address))
        with self._lock:
            return self._clients.setdefault(address, client)

    def _info(self, address: str, client: JobClient, name: str) -> RayJob | None:
        try:
            return job_of(self._call(address, lambda: client.get_job_info(name)))
        except _UnknownJob:
            return None

    def _call(self, address: str, ask: Callable[[], T]) -> T:
        """``ask()``, its failures as :class:`EngineUnreachable` (transport errors, 5xx),
        ``_UnknownJob`` (404) or ``_Refused`` (another 4xx)."""
        try:
            return ask()
        except OSError as exc:  # ConnectionError, requests' transport errors
            raise EngineUnreachable(f"ray at {address} is unreachable: {exc}") from exc
        except RuntimeError as exc:  # the client's "Request failed with status code N: ..."
            found = _STATUS.search(str(exc))
            code = int(found.group(1)) if found else 0
            if code == 404:
                raise _UnknownJob(str(exc)) from exc
            if 400 <= code < 500:
                raise _Refused(str(exc)) from exc
            raise EngineUnreachable(f"ray at {address}: {exc}") from exc

    def _get_json(self, address: str, path: str) -> Any:
        try:
            return self._fetch(address.rstrip("/") + path)
        except (httpx.HTTPError, ValueError) as exc:
            raise EngineUnreachable(f"ray dashboard at {address} is unreachable: {exc}") from exc

    def _nodes(self, address: str) -> list[RayNode]:
        answer = self._get_json(address, "/api/v0/nodes?limit=10000&detail=true")
        try:
            return nodes_of(answer)
        except RayAnswerError as exc:
            raise EngineUnreachable(f"ray at {address}: {exc}") from exc

    def _pin(self, address: str, request: LaunchRequest) -> Pin | None:
        """Where a platform engine placed on one node must run (None for other runs)."""
        nodes = placed_nodes(request)
        if request.workload is not Workload.PLATFORM_ENGINE or len(nodes) != 1:
            return None
        node = named(self._nodes(address)).get(nodes[0])
        if node is None:
            raise EngineUnreachable(f"ray at {address} has no live node {nodes[0]!r}")
        return Pin(node.node_id, node.address, nodes[0])

    def _confine(self, request: LaunchRequest) -> Confine:
        """How ``request`` is confined if it is a tenant job (see ``ray_submit.py``)."""
        bwrap = _ray(request.connection).bwrap or self._bwrap
        return Confine(bwrap, self._layout, required=self._sandboxed)


def _open_dataset(request: LaunchRequest) -> str | None:
    """Let the Ray workers' uid (``ray.worker_uid``) reach the job's dataset replica, where
    the storage is on this host's filesystem (a tenant job's bubblewrap binds it as that
    uid); None when there is nothing to do, else why the job cannot start."""
    uid = _ray(request.connection).worker_uid
    if request.dataset_dir is None or uid is None:
        return None
    if request.workload is not Workload.TENANT_JOB:
        return None  # platform engines run unconfined as the workers' uid: no dataset bind
    return open_replica(Path(request.dataset_dir), uid)


def _ray(connection: Connection | None) -> RayConnection:
    if not isinstance(connection, RayConnection):
        raise ValueError(f"a ray cluster needs a ray connection, not {connection!r}")
    return connection


def _where(job_id: str, attempt: int, handle: Handle) -> tuple[str, str]:
    """The dashboard address ("" if the attempt was never submitted) and submission id
    stored in ``handle``."""
    address = handle.get("address")
    name = handle.get("submission_id")
    return (
        address if isinstance(address, str) else "",
        name if isinstance(name, str) and name else run_name(job_id, attempt),
    )
