"""Where a replica on an engine backend (Slurm, Ray, Kubernetes) answers, and whether to trust it.

A replica on this machine listens on ``127.0.0.1:<port>``, both chosen by the control
plane. On an engine backend the *node* is chosen by the engine at submit time, so the
endpoint is assembled from two halves the control plane trusts:

- the **host**: the address of the node the backend placed the engine on, as the backend
  itself reports it in the attempt's handle (``"node"``: the node's name; ``"host"``: its
  IP address, e.g. Slurm's ``NodeAddr`` from slurmctld), written by the backend at submit
  and stored by the control loop. The engine is told it in :data:`NODE_ADDRESS_ENV` and
  listens there;
- the **port**: the one the control plane gave the replica (it is in the engine's command).

:func:`placed_endpoint` validates both before the gateway may route to the replica: the
handle's node must be the node the scheduler placed the attempt on, the host a literal
unicast IP address (no name to resolve later, no wildcard), and a port in the handle, if
any, the replica's own. Anything else is refused with the reason (the replica is marked
unhealthy and its run stopped): an address that a tenant or the job itself chose can never
become a route.

Pure: no I/O.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping, Sequence

NODE_ADDRESS_ENV = "SUANWANG_NODE_ADDRESS"
"""Set by an engine backend for platform engines: the IP of the node they run on (they
listen there; :func:`placed_endpoint` checks the backend's report of it)."""
MAX_PORT = 65535


class EndpointRejected(ValueError):
    """The backend's report does not name the node and port the control plane placed."""


def placed_endpoint(
    handle: Mapping[str, object], placed_nodes: Sequence[str], port: int | None
) -> str:
    """``http://<host>:<port>`` of a replica's run from its attempt's ``handle``.

    ``placed_nodes`` are the node names of the attempt's placement (a replica has one);
    ``port`` is the replica's port. Raises :class:`EndpointRejected` with the reason.
    """
    if port is None or not 0 < port <= MAX_PORT:
        raise EndpointRejected(f"the replica has no valid port ({port!r})")
    nodes = sorted(set(placed_nodes))
    if len(nodes) != 1:
        raise EndpointRejected(f"an engine replica runs on one node, not {nodes or 'none'}")
    node = handle.get("node")
    if node is None:
        raise EndpointRejected("the backend did not report the node the engine runs on")
    if node != nodes[0]:
        raise EndpointRejected(
            f"the backend reports node {node!r}, but the engine was placed on {nodes[0]!r}"
        )
    host = _unicast_ip(handle.get("host"))
    reported = handle.get("port")
    if reported is not None and reported != port:
        raise EndpointRejected(
            f"the backend reports port {reported!r}, but the replica's is {port}"
        )
    shown = f"[{host}]" if host.version == 6 else str(host)
    return f"http://{shown}:{port}"


def _unicast_ip(value: object) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    if not isinstance(value, str) or not value:
        raise EndpointRejected("the backend did not report the node's address")
    try:
        host = ipaddress.ip_address(value)
    except ValueError:
        raise EndpointRejected(f"the node address {value!r} is not an IP address") from None
    if host.is_unspecified or host.is_multicast or host.is_reserved or host.is_link_local:
        # link-local includes cloud metadata services (169.254.169.254)
        raise EndpointRejected(f"the node address {value} cannot be routed to")
    return host
