"""The control plane's transfer CA: its key sealed at rest, agent certificates issued with
the agent's address and role, the control certificate re-issued before it expires, and the
rotation warning for agents."""

from __future__ import annotations

from pathlib import Path

from cryptography import x509
from fakes import FakeClock, FakeDatabase

from suanwang.adapters.crypto import FernetBox
from suanwang.adapters.transfer_plane import CA_CERT, CA_KEY, CONTROL_CERT, TransferCA
from suanwang.domain.tenancy import Principal, Scope
from suanwang.domain.transfers import ROTATE_BEFORE_S
from suanwang.services.agents import Agents
from suanwang.transfer import pki

OP = Principal("op", Scope.OPERATOR, None)


def test_the_ca_key_is_sealed_and_certificates_carry_role_and_address(tmp_path: Path) -> None:
    clock = FakeClock()
    clock.at = 1_700_000_000.0
    ca = TransferCA(tmp_path, FernetBox(key_file=tmp_path / "credentials.key"), clock)
    issued = ca.issue_agent("agent-sh", "10.0.0.5")
    assert b"PRIVATE KEY" not in (tmp_path / CA_KEY).read_bytes()
    assert (tmp_path / CA_KEY).stat().st_mode & 0o777 == 0o600
    cert = issued.cert_pem.encode()
    assert pki.role_of(cert) == "agent"
    assert issued.ca_pem == (tmp_path / CA_CERT).read_text()
    sans = x509.load_pem_x509_certificate(cert).extensions.get_extension_for_class(
        x509.SubjectAlternativeName
    )
    assert [str(ip) for ip in sans.value.get_values_for_type(x509.IPAddress)] == ["10.0.0.5"]
    assert issued.not_after == pki.not_after(cert)

    first = ca.control_identity()
    control = first.cert_file.read_bytes()
    assert pki.role_of(control) == "control"
    assert ca.control_identity().cert_file.read_bytes() == control  # not due: kept
    clock.at = pki.not_after(control) - ROTATE_BEFORE_S + 1
    assert (tmp_path / CONTROL_CERT).read_bytes() == control
    renewed = ca.control_identity().cert_file.read_bytes()
    assert renewed != control
    assert pki.not_after(renewed) > pki.not_after(control)


def test_agents_due_for_rotation_are_reported(tmp_path: Path) -> None:
    db, clock = FakeDatabase(), FakeClock()
    clock.at = 1_700_000_000.0
    with db() as uow:
        from suanwang.domain.fleet import RegionSpec

        uow.t.regions["sh"] = RegionSpec("sh", "sh")
        uow.commit()
    ca = TransferCA(tmp_path, FernetBox(key_file=tmp_path / "credentials.key"), clock)
    agents = Agents(db, clock, ca)  # type: ignore[arg-type]
    agent, _ = agents.register(OP, "agent-sh", "sh", "127.0.0.1:7700")
    assert agents.check() == []
    clock.at = agent.cert_not_after - ROTATE_BEFORE_S + 3600
    (due,) = agents.check()
    assert due.name == "agent-sh"
    rotated, issued = agents.rotate(OP, "agent-sh")
    assert rotated.cert_serial != agent.cert_serial
    assert rotated.cert_not_after > agent.cert_not_after
    assert rotated.rotated_at == clock.at
    assert pki.role_of(issued.cert_pem.encode()) == "agent"
