"""Before/after values of a fleet apply for the audit log.

Objects are named as :class:`~suanwang.services.fleet.ApplyResult` names them
(``region/r``, ``cluster/c``, ``node/c/n``, ``wan-link/a--b``). ``before`` holds the stored
values of what the apply updated or deleted, ``after`` the new values of what it created or
updated; each side lists at most :data:`MAX_OBJECTS` objects and counts the rest in
``omitted`` (a 10,000-node cluster would otherwise make one entry of a megabyte).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from suanwang.domain.connections import Connection, connection_data
from suanwang.domain.fleet import FleetSpec, WanLinkSpec
from suanwang.ports import UnitOfWork

if TYPE_CHECKING:
    from suanwang.services.fleet import ApplyResult

MAX_OBJECTS = 100
FleetState = dict[str, dict[str, Any]]


def link_name(region_a: str, region_b: str) -> str:
    a, b = sorted((region_a, region_b))
    return f"wan-link/{a}--{b}"


def stored_state(uow: UnitOfWork, spec: FleetSpec) -> FleetState:
    """The stored values of every object ``spec`` names (read before the apply changes them)."""
    state: FleetState = {
        f"region/{r.name}": {"display_name": r.display_name} for r in uow.fleet.regions()
    }
    named = {c.name for c in spec.clusters}
    for c in uow.fleet.clusters():
        if c.name in named:
            state[f"cluster/{c.name}"] = {
                "region": c.region,
                "kind": c.kind,
                "backend": c.backend,
                "description": c.description,
                "connection": _connection(c.connection),
            }
            for n in uow.fleet.nodes(c.name):
                state[f"node/{c.name}/{n.name}"] = _node(n.chip, n.cards, n.network_group)
    for w in uow.fleet.wan_links():
        state[link_name(w.region_a, w.region_b)] = _link(w)
    return state


def spec_state(spec: FleetSpec) -> FleetState:
    """The values ``spec`` asks for, named like :func:`stored_state`."""
    state: FleetState = {f"region/{r.name}": {"display_name": r.display_name} for r in spec.regions}
    for c in spec.clusters:
        state[f"cluster/{c.name}"] = {
            "region": c.region,
            "kind": c.kind.value,
            "backend": c.backend,
            "description": c.description,
            "connection": _connection(c.connection),
        }
        for n in c.nodes:
            state[f"node/{c.name}/{n.name}"] = _node(n.chip, n.cards, n.network_group)
    for w in spec.wan_links:
        state[link_name(w.region_a, w.region_b)] = _link(w)
    return state


def _connection(connection: Connection | None) -> dict[str, Any] | None:
    """The connection block as the fleet file has it (no secrets: a kubeconfig is a path)."""
    return None if connection is None else connection_data(connection)


def change_values(
    result: ApplyResult, old: FleetState, new: FleetState
) -> tuple[dict[str, Any], dict[str, Any]]:
    """(before, after) of the objects the apply changed."""
    before = _capped((n, old.get(n)) for n in [*result.updated, *result.deleted])
    after = _capped((n, new.get(n)) for n in [*result.created, *result.updated])
    return before, after


def _capped(items: Iterable[tuple[str, dict[str, Any] | None]]) -> dict[str, Any]:
    listed = list(items)
    value: dict[str, Any] = dict(listed[:MAX_OBJECTS])
    if len(listed) > MAX_OBJECTS:
        value["omitted"] = len(listed) - MAX_OBJECTS
    return value


def _node(chip: str, cards: int, network_group: str) -> dict[str, Any]:
    return {"chip": chip, "cards": cards, "network_group": network_group}


def _link(w: WanLinkSpec) -> dict[str, Any]:
    return {
        "bandwidth_gbps": w.bandwidth_gbps,
        "rtt_ms": w.rtt_ms,
        "distance_km": w.distance_km,
        "transfer_cap_bytes_per_s": w.transfer_cap_bytes_per_s,
    }
