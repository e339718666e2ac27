"""The OpenAI-compatible gateway: its own ASGI app, runnable as several stateless processes.

Public surface: :class:`GatewayApp` built from a :class:`Gateway` of injected
collaborators and a :class:`GatewayConfig`; the two limiters; :class:`Router`;
:class:`Upstreams`; :class:`KeyAuthenticator`. Wiring lives in ``suanwang.bootstrap``.
"""

from suanwang.gateway.app import Gateway, GatewayApp, GatewayConfig
from suanwang.gateway.auth import KeyAuthenticator
from suanwang.gateway.limits import InProcessLimiter
from suanwang.gateway.redis_limits import RedisLimiter
from suanwang.gateway.routing import Router
from suanwang.gateway.upstream import Timeouts, Upstreams

__all__ = [
    "Gateway",
    "GatewayApp",
    "GatewayConfig",
    "InProcessLimiter",
    "KeyAuthenticator",
    "RedisLimiter",
    "Router",
    "Timeouts",
    "Upstreams",
]
