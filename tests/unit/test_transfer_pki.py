"""The transfer PKI: mutual TLS against the CA, roles, expiry, rotation."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from suanwang.transfer import (
    Agent,
    AgentClient,
    AgentConfig,
    AgentError,
    AgentUnavailable,
    needs_rotation,
    not_after,
)
from suanwang.transfer.pki import issue, new_ca, role_of
from transfer_support import Pki


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return Pki(tmp_path_factory.mktemp("pki"))


@pytest.fixture(scope="module")
def agent(pki: Pki, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    root = tmp_path_factory.mktemp("root")
    a = Agent(AgentConfig("r1", root, pki.identity("agent-1", "agent"), root / ".suanwang-journal"))
    port = a.bind("127.0.0.1", 0)
    t = threading.Thread(target=a.serve_forever, daemon=True)
    t.start()
    yield f"127.0.0.1:{port}"
    a.stop()


def test_a_control_certificate_from_the_ca_is_served(pki: Pki, agent: str) -> None:
    client = AgentClient(agent, pki.identity("ctl", "control", hosts=[]))
    with pytest.raises(AgentError) as err:
        client.status("nothing-here")
    assert err.value.code == "not_found"


def test_a_certificate_from_another_ca_is_refused(agent: str, tmp_path: Path) -> None:
    other = Pki(tmp_path / "other")
    client = AgentClient(agent, other.identity("ctl", "control", hosts=[]), timeout_s=5)
    with pytest.raises(AgentUnavailable):
        client.status("x")


def test_an_expired_certificate_is_refused(pki: Pki, agent: str) -> None:
    old = pki.identity("ctl-old", "control", hosts=[], now=time.time() - 7200, valid_s=3600)
    with pytest.raises(AgentUnavailable):
        AgentClient(agent, old, timeout_s=5).status("x")


def test_an_agent_certificate_cannot_drive_the_control_api(pki: Pki, agent: str) -> None:
    client = AgentClient(agent, pki.identity("agent-2", "agent"))
    with pytest.raises(AgentError) as err:
        client.status("x")
    assert "not allowed" in err.value.message


def test_a_control_certificate_cannot_send_data(pki: Pki, agent: str) -> None:
    from suanwang.transfer import wire
    from suanwang.transfer.tls import client_context, connect

    ctl = pki.identity("ctl", "control", hosts=[])
    sock = connect(client_context(ctl), "127.0.0.1", int(agent.split(":")[1]), timeout_s=5)
    with sock:
        wire.send(
            sock,
            wire.Kind.OPEN,
            {"transfer_id": "t", "dst": "x", "files": [], "chunk_size": 1 << 20},
        )
        reply = wire.recv(sock)
    assert reply.kind is wire.Kind.ERROR
    assert "not a control request" in reply.meta["message"]


def test_an_agent_reached_at_an_address_not_in_its_certificate_is_refused(
    pki: Pki, tmp_path: Path
) -> None:
    a = Agent(
        AgentConfig(
            "r2", tmp_path, pki.identity("agent-far", "agent", hosts=["10.9.9.9"]), tmp_path / "j"
        )
    )
    port = a.bind("127.0.0.1", 0)
    threading.Thread(target=a.serve_forever, daemon=True).start()
    try:
        with pytest.raises(AgentUnavailable):
            AgentClient(f"127.0.0.1:{port}", pki.identity("ctl", "control", hosts=[]), 5).status(
                "x"
            )
    finally:
        a.stop()


def test_roles_expiry_and_rotation() -> None:
    now = 1_800_000_000.0
    ca_cert, ca_key = new_ca("ca", now)
    cert, _ = issue(
        ca_cert,
        ca_key,
        "a",
        hosts=["10.0.0.1", "agent.local"],
        role="agent",
        now=now,
        valid_s=30 * 86400,
    )
    assert role_of(cert) == "agent"
    assert not_after(cert) == pytest.approx(now + 30 * 86400, abs=1)
    assert not needs_rotation(cert, now, before_s=7 * 86400)
    assert needs_rotation(cert, now + 24 * 86400, before_s=7 * 86400)
    ctl, _ = issue(ca_cert, ca_key, "c", hosts=[], role="control", now=now, valid_s=60)
    assert role_of(ctl) == "control"


def test_a_kept_alive_client_reuses_its_connection_and_redials_a_broken_one(
    pki: Pki, agent: str
) -> None:
    client = AgentClient(agent, pki.identity("ctl", "control", hosts=[]), keep_alive=True)
    try:
        for _ in range(2):
            with pytest.raises(AgentError):
                client.status("nothing")
        sock = client._sock
        assert sock is not None
        sock.close()  # broken under it: the next call dials again
        client._sock = sock
        with pytest.raises(AgentError):
            client.status("nothing")
        assert client._sock is not sock
    finally:
        client.close()
