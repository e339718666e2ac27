"""Agents renew their own certificates before expiry, against a real API server.

The control plane (uvicorn on 127.0.0.1, SQLite) registers two agents with 12-second
certificates; the agents (subprocesses started with ``--control-url``) renew them in their
last third (4 s before expiry) by themselves. A transfer running across the renewal is not
dropped; a transfer after it works; the replaced certificate is refused once it expires
(by the agents' TLS) and cannot renew (by the control plane); a hostile agent cannot renew
another agent's name; every renewal is audited as ``agent.rotate``.
"""

from __future__ import annotations

import os
import socket
import ssl
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import uvicorn

from suanwang.bootstrap import build_app
from suanwang.config import Settings
from suanwang.domain.audit import AuditAction, AuditQuery
from suanwang.domain.datasets import DatasetFormat
from suanwang.domain.tenancy import Principal, Scope
from suanwang.domain.transfers import TransferState
from suanwang.services.platform import Platform
from suanwang.transfer import Identity, wire
from suanwang.transfer.renewal import make_request
from suanwang.transfer.tls import client_context, connect, split_address
from transfer_support import AgentProcess

OP = Principal("op", Scope.OPERATOR, None)
MIB = 1 << 20
LIFETIME_S = 12.0
FLEET = """
regions: [{name: sh}, {name: nx}]
clusters: []
wan_links: [{between: [sh, nx], bandwidth_gbps: 1, rtt_ms: 1, distance_km: 10}]
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def data_connection(identity: Identity, address: str) -> str:
    """Connect to an agent as agent ``identity`` and ABORT a transfer that is not there:
    the answer's kind (OK) once the agent accepted the certificate."""
    host, port = split_address(address)
    with connect(client_context(identity), host, port, timeout_s=5.0) as sock:
        wire.send(sock, wire.Kind.ABORT, {"transfer_id": "nothing"})
        return wire.recv(sock).kind.name


class Plane:
    def __init__(self, tmp_path: Path) -> None:
        settings = Settings(data_dir=tmp_path / "data", database_url=f"sqlite:///{tmp_path}/db")
        self.app = build_app(settings, control=False)
        self.platform: Platform = self.app.state.platform
        self.url = f"http://127.0.0.1:{free_port()}"
        port = int(self.url.rsplit(":", 1)[1])
        config = uvicorn.Config(self.app, host="127.0.0.1", port=port, log_level="warning")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.thread.start()
        deadline = time.monotonic() + 20
        while not self.server.started:
            assert time.monotonic() < deadline
            time.sleep(0.05)
        self.platform.fleet.apply_yaml(FLEET)
        self.storage, self.certs = settings.storage_dir, tmp_path
        self.agents: dict[str, AgentProcess] = {}
        self.first: dict[str, Identity] = {}

    def start_agent(self, region: str) -> None:
        root = self.storage / region
        root.mkdir(parents=True, exist_ok=True, mode=0o700)
        port = free_port()
        name = f"agent-{region}"
        _, issued = self.platform.agents.register(
            OP, name, region, f"127.0.0.1:{port}", valid_s=LIFETIME_S
        )
        live: list[Path] = []
        first: list[Path] = []
        for kind, text in (
            ("cert", issued.cert_pem),
            ("key", issued.key_pem),
            ("ca", issued.ca_pem),
        ):
            for where, paths in (("live", live), ("first", first)):
                path = self.certs / f"{region}.{kind}.{where}.pem"
                path.write_text(text)
                path.chmod(0o600)
                paths.append(path)
        self.first[region] = Identity(*first)  # a copy of the original, to try it later
        extra = ["--control-url", self.url, "--renew-check-s", "0.3"]
        agent = AgentProcess(region, root, Identity(*live), port, extra_args=extra)
        agent.start()
        self.agents[region] = agent

    def stop(self) -> None:
        for agent in self.agents.values():
            agent.stop()
        self.server.should_exit = True
        self.thread.join(10)
        self.platform.uows.engine.dispose()  # type: ignore[attr-defined]


@pytest.fixture
def plane(tmp_path: Path) -> Iterator[Plane]:
    built = Plane(tmp_path)
    try:
        yield built
    finally:
        built.stop()


def copy(plane: Plane, who: Principal, name: str, max_rate: float | None = None) -> str:
    return plane.platform.transfers.copy(who, name, "nx", max_rate).id


def wait_verified(plane: Plane, who: Principal, tid: str) -> None:
    deadline = time.monotonic() + 60
    while (t := plane.platform.transfers.get(who, tid)).state.active:
        assert time.monotonic() < deadline, t
        plane.platform.transfers.tick()
        time.sleep(0.1)
    assert t.state is TransferState.VERIFIED, t.error


def test_agents_renew_their_certificates_and_only_their_own(plane: Plane) -> None:
    p = plane.platform
    start = time.time()
    for region in ("sh", "nx"):
        plane.start_agent(region)
    registered = {a.name: a.cert_serial for a in p.agents.registered(OP)}
    p.tenancy.create_tenant("acme", "Acme", {})
    key = p.tenancy.create_key(
        OP, tenant="acme", scope=Scope.TENANT_ADMIN, name="", expires_in_s=None
    )
    acme = p.tenancy.authenticate(key.secret)
    for name in ("before", "after"):
        made = p.datasets.create(acme, name, DatasetFormat.BINARY, "sh")
        upload = p.datasets.begin_file(acme, made.id, "x.bin")
        upload.write(os.urandom(8 * MIB))
        p.datasets.finish_file(acme, upload)
        p.datasets.seal(acme, made.id)

    # a 1 MiB/s transfer of 8 MiB runs across the renewal (8 s after registration)
    running = copy(plane, acme, "before", MIB)
    deadline = time.monotonic() + 30
    while any(a.cert_serial == registered[a.name] for a in p.agents.registered(OP)):
        assert time.monotonic() < deadline, p.agents.registered(OP)
        p.transfers.tick()
        time.sleep(0.1)

    # the replaced certificate, not yet expired, cannot renew again; a hostile agent (nx,
    # with its own current certificate) cannot renew agent-sh's name
    sh = plane.first["sh"]
    assert time.time() < start + LIFETIME_S
    stale, _ = make_request(sh.cert_file.read_bytes(), sh.key_file.read_bytes(), time.time())
    answer = httpx.post(f"{plane.url}/api/v1/agents/agent-sh/renew", json=stale.to_json())
    assert answer.status_code == 403, answer.text
    assert "current certificate" in answer.json()["detail"]
    nx = plane.agents["nx"].identity
    hostile, _ = make_request(nx.cert_file.read_bytes(), nx.key_file.read_bytes(), time.time())
    for name in ("agent-sh", "agent-nx"):  # the URL's name, then the body's, is not its own
        body = hostile.to_json() | {"name": "agent-sh"} if name == "agent-nx" else hostile.to_json()
        answer = httpx.post(f"{plane.url}/api/v1/agents/{name}/renew", json=body)
        assert answer.status_code == 403, answer.text

    wait_verified(plane, acme, running)
    during = p.transfers.get(acme, running)
    renewed = {a.name: a for a in p.agents.registered(OP)}
    for name in registered:
        assert during.started_at < (renewed[name].rotated_at or 0) < (during.ended_at or 0)
    assert during.chunks_resent == 0  # nothing dropped
    with p.uows() as uow:
        entries = uow.audit.entries(AuditQuery(action=AuditAction.AGENT_ROTATE))
    assert {e.actor.key_id for e in entries} >= {"agent:agent-sh", "agent:agent-nx"}

    # a transfer after the renewal works
    wait_verified(plane, acme, copy(plane, acme, "after"))

    # once expired, the original certificate is refused by the agents' TLS; the renewed
    # one is accepted
    nx_address = plane.agents["nx"].address
    assert data_connection(plane.agents["sh"].identity, nx_address) == "OK"
    time.sleep(max(0.0, start + LIFETIME_S + 1 - time.time()))
    with pytest.raises((ssl.SSLError, OSError, wire.PeerClosed)):
        data_connection(sh, nx_address)
    assert data_connection(plane.agents["sh"].identity, nx_address) == "OK"


def test_copy_request_caps_are_validated(plane: Plane) -> None:
    p = plane.platform
    p.tenancy.create_tenant("acme", "Acme", {})
    key = p.tenancy.create_key(
        OP, tenant="acme", scope=Scope.TENANT_ADMIN, name="", expires_in_s=None
    )
    headers = {"Authorization": f"Bearer {key.secret}"}
    for bad in (0, -5, "fast", 1e20):
        answer = httpx.post(
            f"{plane.url}/api/v1/datasets/nothing/copy",
            json={"region": "nx", "max_bytes_per_s": bad},
            headers=headers,
        )
        assert answer.status_code == 422, answer.text
        assert "max_bytes_per_s" in answer.json()["field"], answer.json()
