"""The transfer agents: registration, manual rotation (operator) and automatic renewal.

An agent's certificate comes from the control plane's CA at registration. The operator can
rotate it by hand (``suanwang agents rotate``: a new key and certificate to copy over), and
a running agent started with ``--control-url`` renews its own before expiry
(:meth:`Agents.renew`): the request is signed by the agent's current key and names its new
public key, so the control plane issues a certificate only to the holder of the agent's
current, unexpired certificate, only for that agent's name, and only once per certificate
(the serial must be the one issued last). Every issue is audited (``agent.register``,
``agent.rotate``; a renewal's actor is ``agent:NAME``).
"""

from __future__ import annotations

import structlog

from suanwang.domain.audit import AuditAction
from suanwang.domain.errors import Conflict, Forbidden, NotFound, ValidationError
from suanwang.domain.tenancy import Principal, Scope
from suanwang.domain.transfers import (
    DEFAULT_AGENT_CERT_S,
    MIN_AGENT_CERT_S,
    AgentRecord,
    AgentRenewal,
    IssuedCert,
    check_address,
    check_agent_name,
)
from suanwang.ports import AgentAuthority, Clock, UnitOfWork, UnitOfWorkFactory
from suanwang.services import audit

log = structlog.get_logger("suanwang.agents")


class Agents:
    """Registering transfer agents and rotating their certificates (operator), and the
    agents' own renewals."""

    def __init__(self, uows: UnitOfWorkFactory, clock: Clock, authority: AgentAuthority) -> None:
        self._uows, self._clock, self._authority = uows, clock, authority
        self._last_check: float | None = None

    def register(
        self,
        principal: Principal,
        name: str,
        region: str,
        address: str,
        valid_s: float = DEFAULT_AGENT_CERT_S,
    ) -> tuple[AgentRecord, IssuedCert]:
        check_agent_name(name)
        host, _ = check_address(address)
        _check_lifetime(valid_s)
        with self._uows() as uow:
            if region not in {r.name for r in uow.fleet.regions()}:
                raise ValidationError(f"no region {region[:64]!r}", field="region")
            if any(a.name == name for a in uow.datasets.agents()):
                raise Conflict(
                    f"agent {name!r} is registered", field="name", hint="rotate its certificate"
                )
        issued = self._authority.issue_agent(name, host, valid_s)
        now = self._clock.now()
        agent = AgentRecord(name, region, address, issued.serial, issued.not_after, now)
        with self._uows() as uow:
            self._save(uow, principal, agent, AuditAction.AGENT_REGISTER)
        return agent, issued

    def rotate(
        self, principal: Principal, name: str, valid_s: float = DEFAULT_AGENT_CERT_S
    ) -> tuple[AgentRecord, IssuedCert]:
        _check_lifetime(valid_s)
        with self._uows() as uow:
            found = next((a for a in uow.datasets.agents() if a.name == name), None)
        if found is None:
            raise NotFound(f"no agent {name[:64]!r}", field="name")
        issued = self._authority.issue_agent(name, check_address(found.address)[0], valid_s)
        agent = _rotated(found, issued, self._clock.now())
        with self._uows() as uow:
            self._save(uow, principal, agent, AuditAction.AGENT_ROTATE)
        return agent, issued

    def renew(self, name: str, renewal: AgentRenewal) -> tuple[AgentRecord, IssuedCert]:
        """An agent's own renewal (see the module's docstring): a certificate for the new
        public key, as long-lived as the one it replaces; Forbidden when the request does not
        prove agent ``name``'s current certificate."""
        if renewal.name != name:
            raise Forbidden(f"a certificate of {renewal.name[:64]!r} cannot renew {name[:64]!r}")
        serial = self._authority.verify_renewal(renewal)  # Forbidden unless it proves itself
        with self._uows() as uow:
            uow.lock_scheduler()  # one renewal per certificate, even when two race
            found = next((a for a in uow.datasets.agents() if a.name == name), None)
            if found is None or found.cert_serial != serial:
                raise Forbidden(
                    "this is not the agent's current certificate",
                    field="cert_pem",
                    hint="a replaced certificate cannot renew; the operator rotates it",
                )
            last = found.rotated_at or found.registered_at
            if renewal.at <= last:
                raise Forbidden("the request is older than the last renewal", field="at")
            lifetime = min(max(found.cert_not_after - last, MIN_AGENT_CERT_S), DEFAULT_AGENT_CERT_S)
            host = check_address(found.address)[0]
            issued = self._authority.issue_agent(name, host, lifetime, renewal.public_key_pem)
            agent = _rotated(found, issued, self._clock.now())
            actor = Principal(f"agent:{name}", Scope.READ_ONLY, None)
            self._save(uow, actor, agent, AuditAction.AGENT_ROTATE, automatic=True)
        log.info("agent certificate renewed", agent=name, not_after=agent.cert_not_after)
        return agent, issued

    def registered(self, principal: Principal) -> list[AgentRecord]:
        if not principal.is_operator:
            raise Forbidden("only the operator sees the agents", field="Authorization")
        return self._all()

    def _all(self) -> list[AgentRecord]:
        with self._uows() as uow:
            return uow.datasets.agents()

    def check(self) -> list[AgentRecord]:
        """Agents whose certificate is due for rotation (logged as warnings, hourly): an
        agent that renews itself never shows here."""
        now = self._clock.now()
        if self._last_check is not None and now - self._last_check < 3600:
            return []
        self._last_check = now
        due = [a for a in self._all() if a.due_for_rotation(now)]
        for agent in due:
            log.warning(
                "agent certificate due for rotation: start the agent with --control-url, "
                "or suanwang agents rotate NAME",
                agent=agent.name,
                expires_in_s=round(agent.cert_not_after - now),
            )
        return due

    def _save(
        self,
        uow: UnitOfWork,
        principal: Principal,
        agent: AgentRecord,
        action: AuditAction,
        automatic: bool = False,
    ) -> None:
        uow.datasets.put_agent(agent)
        after: dict[str, object] = {
            "region": agent.region, "address": agent.address, "cert_serial": agent.cert_serial,
            "not_after": agent.cert_not_after,
        }  # fmt: skip
        if automatic:
            after["automatic"] = True
        audit.record(
            uow, principal, action, agent.name, tenant=None, at=self._clock.now(), after=after
        )
        uow.commit()


def _rotated(found: AgentRecord, issued: IssuedCert, now: float) -> AgentRecord:
    return AgentRecord(
        found.name, found.region, found.address, issued.serial, issued.not_after,
        found.registered_at, now,
    )  # fmt: skip


def _check_lifetime(valid_s: float) -> None:
    if not MIN_AGENT_CERT_S <= valid_s <= 365 * 86400:
        raise ValidationError(
            f"invalid certificate lifetime {valid_s!r} s",
            field="valid_s",
            hint=f"from {MIN_AGENT_CERT_S:g} s to 365 days",
        )
