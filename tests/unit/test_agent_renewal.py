"""An agent renews its own certificate: only with its current, unexpired certificate, only
for its own name, only once per certificate, and the private key never leaves it."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from fakes import FakeClock, FakeDatabase

from suanwang.adapters.crypto import FernetBox
from suanwang.adapters.transfer_plane import TransferCA
from suanwang.domain.audit import AuditAction
from suanwang.domain.errors import Forbidden
from suanwang.domain.fleet import RegionSpec
from suanwang.domain.ids import RegionName
from suanwang.domain.tenancy import Principal, Scope
from suanwang.domain.transfers import AgentRenewal
from suanwang.services.agents import Agents
from suanwang.transfer import pki
from suanwang.transfer.renewal import (
    ROTATE_BEFORE_S,
    RenewalRefused,
    Renewer,
    make_request,
    rotate_before_s,
    verify_request,
)
from suanwang.transfer.tls import Identity

OP = Principal("op", Scope.OPERATOR, None)
T0 = 1_700_000_000.0


def world(tmp_path: Path) -> tuple[FakeDatabase, FakeClock, TransferCA, Agents]:
    db, clock = FakeDatabase(), FakeClock()
    clock.at = T0
    with db() as uow:
        uow.t.regions["sh"] = RegionSpec(RegionName("sh"), "sh")
        uow.commit()
    ca = TransferCA(tmp_path, FernetBox(key_file=tmp_path / "credentials.key"), clock)
    return db, clock, ca, Agents(db, clock, ca)  # type: ignore[arg-type]


def renewal(cert: str, key: str, at: float) -> tuple[AgentRenewal, bytes]:
    request, new_key = make_request(cert.encode(), key.encode(), at)
    return AgentRenewal(**request.to_json()), new_key


def test_a_renewal_gives_a_certificate_for_the_agents_new_key_once(tmp_path: Path) -> None:
    db, clock, _, agents = world(tmp_path)
    agent, issued = agents.register(OP, "agent-sh", "sh", "127.0.0.1:7700", valid_s=30.0)
    clock.at += 25
    request, new_key = renewal(issued.cert_pem, issued.key_pem, clock.at)
    renewed, cert = agents.renew("agent-sh", request)
    assert cert.key_pem == ""  # the key never left the agent
    new = x509.load_pem_x509_certificate(cert.cert_pem.encode())
    spki = serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    assert new.public_key().public_bytes(*spki) == request.public_key_pem.encode()
    assert pki.role_of(cert.cert_pem.encode()) == "agent"
    assert renewed.cert_serial != agent.cert_serial
    assert renewed.cert_not_after == pytest.approx(clock.at + 30, abs=1)  # same lifetime
    with db() as uow:
        entry = uow.t.audit[-1]
    assert entry.action is AuditAction.AGENT_ROTATE
    assert entry.actor.key_id == "agent:agent-sh"
    assert entry.after is not None
    assert entry.after["automatic"] is True
    # the replaced certificate cannot renew again (nor can a replay of the request)
    clock.at += 1
    with pytest.raises(Forbidden, match="current certificate"):
        agents.renew("agent-sh", renewal(issued.cert_pem, issued.key_pem, clock.at)[0])
    with pytest.raises(Forbidden):
        agents.renew("agent-sh", request)
    # the new one can, with the new key
    again, _ = agents.renew("agent-sh", renewal(cert.cert_pem, new_key.decode(), clock.at)[0])
    assert again.cert_serial != renewed.cert_serial


def test_expired_foreign_and_forged_requests_get_nothing(tmp_path: Path) -> None:
    _, clock, _, agents = world(tmp_path)
    _, sh = agents.register(OP, "agent-sh", "sh", "127.0.0.1:7700", valid_s=30.0)
    _, other = agents.register(OP, "agent-nx", "sh", "127.0.0.1:7701", valid_s=30.0)
    # a hostile agent cannot renew another agent's name, with its own or the other's cert
    hostile, _ = renewal(other.cert_pem, other.key_pem, clock.at)
    with pytest.raises(Forbidden):
        agents.renew("agent-sh", hostile)
    with pytest.raises(Forbidden):
        agents.renew("agent-sh", dataclasses.replace(hostile, name="agent-sh"))
    # a stolen certificate without its key: the signature does not match
    forged, _ = renewal(other.cert_pem, other.key_pem, clock.at)
    with pytest.raises(Forbidden, match="signature"):
        agents.renew("agent-sh", dataclasses.replace(forged, name="agent-sh", cert_pem=sh.cert_pem))
    # a certificate from another CA
    (tmp_path / "other").mkdir()
    _, _, _, elsewhere = world(tmp_path / "other")
    _, foreign = elsewhere.register(OP, "agent-sh", "sh", "127.0.0.1:7700", valid_s=30.0)
    with pytest.raises(Forbidden, match="not issued by this CA"):
        agents.renew("agent-sh", renewal(foreign.cert_pem, foreign.key_pem, clock.at)[0])
    # an expired certificate, with its key
    clock.at += 31
    with pytest.raises(Forbidden, match="expired"):
        agents.renew("agent-sh", renewal(sh.cert_pem, sh.key_pem, clock.at)[0])
    # a request from the past (more than 5 minutes off)
    clock.at -= 31
    stale, _ = renewal(sh.cert_pem, sh.key_pem, clock.at - 400)
    with pytest.raises(Forbidden, match="5 minutes"):
        agents.renew("agent-sh", stale)


def test_rotate_before_is_seven_days_or_a_third_of_the_lifetime(tmp_path: Path) -> None:
    _, _, ca, _ = world(tmp_path)
    short = ca.issue_agent("a", "127.0.0.1", 30.0).cert_pem.encode()
    long = ca.issue_agent("a", "127.0.0.1", 90 * 86400.0).cert_pem.encode()
    assert rotate_before_s(short) == pytest.approx(10)
    assert rotate_before_s(long) == ROTATE_BEFORE_S


def test_the_renewer_writes_the_new_files_and_reloads(tmp_path: Path) -> None:
    _, clock, ca, agents = world(tmp_path)
    _, issued = agents.register(OP, "agent-sh", "sh", "127.0.0.1:7700", valid_s=30.0)
    files = Identity(tmp_path / "a.pem", tmp_path / "a.key", tmp_path / "ca.pem")
    files.cert_file.write_text(issued.cert_pem)
    files.key_file.write_text(issued.key_pem)
    files.ca_file.write_text(issued.ca_pem)
    reloads: list[int] = []

    def post(name: str, body: dict[str, object]) -> dict[str, object]:
        _, cert = agents.renew(name, AgentRenewal(**body))  # type: ignore[arg-type]
        return {"cert_pem": cert.cert_pem}

    renewer = Renewer(files, post, lambda: reloads.append(1), lambda: clock.at)
    assert not renewer.renew_if_due()  # a 30 s certificate renews in its last 10 s
    clock.at += 21
    assert renewer.renew_if_due()
    assert reloads == [1]
    assert files.cert_file.read_text() != issued.cert_pem
    assert files.key_file.stat().st_mode & 0o777 == 0o600
    assert not renewer.due()

    def wrong_key(name: str, body: dict[str, object]) -> dict[str, object]:
        return {"cert_pem": ca.issue_agent(name, "127.0.0.1", 30.0).cert_pem}

    clock.at += 25
    before = files.cert_file.read_bytes()
    with pytest.raises(RenewalRefused, match="another key"):
        Renewer(files, wrong_key, lambda: None, lambda: clock.at).renew_if_due()
    assert files.cert_file.read_bytes() == before  # nothing written


def test_verify_request_refuses_a_control_certificate(tmp_path: Path) -> None:
    _, clock, ca, _ = world(tmp_path)
    control = ca.control_identity()
    request, _ = make_request(
        control.cert_file.read_bytes(), control.key_file.read_bytes(), clock.at
    )
    with pytest.raises(RenewalRefused, match="not agent"):
        verify_request(control.ca_file.read_bytes(), request, clock.at)
