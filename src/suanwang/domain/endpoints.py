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

On Kubernetes the engine runs in a pod behind a ClusterIP Service the backend created:
the host is the Service's ClusterIP as the API server answered the create (``"service_ip"``),
and it must lie inside the cluster's Service range the backend read (``"service_cidrs"``);
the handle's port (required there) must be the replica's. The pod's own IP is never used:
a pod restarted by Kubernetes gets another one, and the Service follows it.

Pure: no I/O.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping, Sequence

NODE_ADDRESS_ENV = "SUANWANG_NODE_ADDRESS"
"""Set by an engine backend for platform engines: the IP of the node they run on (they
listen there; :func:`placed_endpoint` checks the backend's report of it)."""
MAX_PORT = 65535
KUBERNETES = "kubernetes"
NODE_ADDRESS = "the node's address"


class EndpointRejected(ValueError):
    """The backend's report does not name the node and port the control plane placed."""


def placed_endpoint(
    handle: Mapping[str, object],
    placed_nodes: Sequence[str],
    port: int | None,
    backend: str = "",
) -> str:
    """``http://<host>:<port>`` of a replica's run from its attempt's ``handle``.

    ``placed_nodes`` are the node names of the attempt's placement (a replica has one);
    ``port`` is the replica's port; ``backend`` the attempt's (``kubernetes``: the Service
    rule). Raises :class:`EndpointRejected` with the reason.
    """
    if port is None or not 0 < port <= MAX_PORT:
        raise EndpointRejected(f"the replica has no valid port ({port!r})")
    nodes = sorted(set(placed_nodes))
    if len(nodes) != 1:
        raise EndpointRejected(f"an engine replica runs on one node, not {nodes or 'none'}")
    if backend == KUBERNETES:
        return _url(_cluster_ip(handle, port), port)
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
    return _url(host, port)


IpAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


def _url(host: IpAddress, port: int) -> str:
    shown = f"[{host}]" if host.version == 6 else str(host)
    return f"http://{shown}:{port}"


def _cluster_ip(handle: Mapping[str, object], port: int) -> IpAddress:
    """The Service's ClusterIP from a Kubernetes handle, inside the Service range."""
    host = _unicast_ip(handle.get("service_ip"), "the Service's ClusterIP")
    if host.is_loopback:
        raise EndpointRejected(f"the Service's ClusterIP {host} is a loopback address")
    cidrs = handle.get("service_cidrs")
    if not isinstance(cidrs, list | tuple) or not cidrs:
        raise EndpointRejected("the backend did not report the cluster's Service range")
    try:
        networks = [ipaddress.ip_network(str(c)) for c in cidrs]
    except ValueError as exc:
        raise EndpointRejected(f"the cluster's Service range is not valid: {exc}") from None
    if not any(host in net for net in networks):
        shown = ", ".join(str(n) for n in networks)
        raise EndpointRejected(f"the ClusterIP {host} is outside the Service range {shown}")
    reported = handle.get("port")
    if reported != port:
        raise EndpointRejected(
            f"the backend reports Service port {reported!r}, but the replica's is {port}"
        )
    return host


def _unicast_ip(value: object, what: str = "") -> IpAddress:
    if not isinstance(value, str) or not value:
        raise EndpointRejected(f"the backend did not report {what or NODE_ADDRESS}")
    what = what or "the node address"
    try:
        host = ipaddress.ip_address(value)
    except ValueError:
        raise EndpointRejected(f"{what} {value!r} is not an IP address") from None
    if host.is_unspecified or host.is_multicast or host.is_reserved or host.is_link_local:
        # link-local includes cloud metadata services (169.254.169.254)
        raise EndpointRejected(f"{what} {value} cannot be routed to")
    return host
