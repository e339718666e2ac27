"""External endpoints: OpenAI-compatible servers suanwang does not run, served as deployments.

An operator registers a base URL (an existing vLLM or MindIE cluster, a partner's model API)
and, optionally, a credential. It becomes a deployment of engine :data:`OPENAI_COMPATIBLE`
on the pseudo-cluster :data:`EXTERNAL_CLUSTER` with one replica that has no job: the
gateway routes, limits and meters it like any replica; the platform health-checks it.

The base URL is checked against server-side request forgery (suite R8) by
:func:`check_base_url`: http(s) only, no credentials or query in the URL, and no loopback,
link-local (169.254.169.254 included), private, shared, multicast, reserved or unspecified
address, written literally (IPv4, IPv6, IPv4-mapped IPv6) or behind a host name (every
address the resolver gives is checked). ``allow_private_network`` is the operator's
explicit, recorded exemption (an endpoint on 127.0.0.1 needs it). Pure: the resolver is
passed in.
"""

from __future__ import annotations

import enum
import ipaddress
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from urllib.parse import urlsplit

from suanwang.domain.changes import UNCHANGED, Unchanged
from suanwang.domain.errors import ValidationError
from suanwang.domain.serving import ModelKind, TokenPrice

OPENAI_COMPATIBLE = "openai-compatible"
"""The engine name of every external deployment."""
EXTERNAL_CLUSTER = "external"
"""The cluster name external deployments show (no cluster of ours runs them)."""
MODEL_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:/-]{0,127}$")
"""A model name as clients call it, or as the upstream expects it."""
MAX_URL = 256
MAX_CREDENTIAL = 4096
EXEMPTION = "allow_private_network"
_NUMERIC_HOST = re.compile(r"^(0x[0-9a-f]+|[0-9]+)(\.(0x[0-9a-f]+|[0-9]+))*\.?$", re.IGNORECASE)

Resolver = Callable[[str], Sequence[str]]
"""Host name -> its IP addresses (raises ``OSError`` or ``ValueError`` when it cannot)."""


class HealthCheck(enum.StrEnum):
    """What the platform probes on an external endpoint (chosen per deployment)."""

    HEALTH = "health"
    """``GET <root>/health``: vLLM, SGLang, TGI, llama.cpp's server."""
    MODELS = "models"
    """``GET <base>/v1/models`` with the credential: any OpenAI-compatible API."""

    def path(self) -> str:
        return "/health" if self is HealthCheck.HEALTH else "/v1/models"


@dataclass(frozen=True, slots=True)
class ExternalEndpoint:
    """What is stored of an external deployment besides its deployment row.

    ``sealed_credential`` is the credential encrypted by a
    :class:`~suanwang.ports.SecretBox` (never the credential itself); ``None`` for none.
    """

    deployment: str
    base_url: str
    upstream_model: str | None
    health: HealthCheck
    kind: ModelKind
    price: TokenPrice
    allow_private_network: bool
    sealed_credential: str | None
    created_at: float
    updated_at: float

    @property
    def has_credential(self) -> bool:
        return self.sealed_credential is not None


@dataclass(frozen=True, slots=True)
class ExternalChange:
    """Fields of an external endpoint to set (see :mod:`.changes`)."""

    base_url: str | Unchanged = UNCHANGED
    upstream_model: str | Unchanged | None = UNCHANGED
    health: HealthCheck | Unchanged = UNCHANGED
    price: TokenPrice | Unchanged = UNCHANGED
    allow_private_network: bool | Unchanged = UNCHANGED
    sealed_credential: str | Unchanged | None = UNCHANGED


def check_model_name(name: str, field: str = "model") -> str:
    if not MODEL_NAME.fullmatch(name):
        raise ValidationError(
            f"invalid model name {name[:40]!r}",
            field=field,
            hint="1-128 characters: letters, digits and . _ : / -, starting with a letter or digit",
        )
    return name


def check_credential(credential: str) -> str:
    """A bearer credential: printable ASCII without spaces, at most :data:`MAX_CREDENTIAL`."""
    if not 0 < len(credential) <= MAX_CREDENTIAL or not all("!" <= c <= "~" for c in credential):
        raise ValidationError(
            "the credential must be 1-4096 printable ASCII characters without spaces",
            field="credential",
            hint="the token the upstream expects after 'Authorization: Bearer'",
        )
    return credential


def check_base_url(url: str, resolve: Resolver, *, allow_private_network: bool) -> str:
    """``url`` without a trailing slash, if it is a safe upstream (see the module docstring).

    Raises :class:`ValidationError` naming ``base_url`` and the rule broken.
    """
    if len(url) > MAX_URL:
        raise _bad_url(f"the base URL is longer than {MAX_URL} characters")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise _bad_url(f"invalid base URL ({exc})") from None
    if parts.scheme not in ("http", "https"):
        raise _bad_url("the base URL must start with http:// or https://")
    if parts.username is not None or parts.password is not None or "@" in parts.netloc:
        raise _bad_url("the base URL may not carry credentials", "pass the credential separately")
    if parts.query or parts.fragment:
        raise _bad_url("the base URL may not have a query or fragment")
    host = (parts.hostname or "").rstrip(".")
    if not host or port == 0:
        raise _bad_url("the base URL has no host (or port 0)")
    if any(c.isspace() or c in "\\%" for c in url):
        raise _bad_url("the base URL may not contain spaces, backslashes or % escapes")
    if _NUMERIC_HOST.fullmatch(host) and not _is_ip(host):
        raise _bad_url(
            f"{host!r} is an IP address in a non-standard form",
            "write IPv4 addresses as four decimal numbers (e.g. 203.0.113.7)",
        )
    if not allow_private_network:  # exempt: the name may resolve only where the gateway runs
        for address in _addresses(host, resolve):
            _check_public(address, host)
    return url.rstrip("/")


def _addresses(host: str, resolve: Resolver) -> list[ipaddress.IPv4Address | ipaddress.IPv6Address]:
    if _is_ip(host):
        return [ipaddress.ip_address(host)]
    try:
        resolved = list(resolve(host))
    except (OSError, ValueError) as exc:  # ValueError: UnicodeError for a bad IDNA label
        raise _bad_url(f"{host!r} does not resolve ({exc.__class__.__name__})") from None
    if not resolved:
        raise _bad_url(f"{host!r} does not resolve")
    addresses = []
    for text in resolved:
        try:
            addresses.append(ipaddress.ip_address(text.split("%", 1)[0]))
        except ValueError:
            raise _bad_url(f"{host!r} resolved to an invalid address") from None
    return addresses


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def _check_public(address: ipaddress.IPv4Address | ipaddress.IPv6Address, host: str) -> None:
    if isinstance(address, ipaddress.IPv6Address):
        mapped = address.ipv4_mapped or address.sixtofour
        if mapped is not None:
            _check_public(mapped, host)
    if not address.is_global or address.is_multicast or address.is_unspecified:
        shown = host if str(address) == host else f"{host} ({address})"
        raise _bad_url(
            f"{shown} is a loopback, private, link-local or reserved address",
            f"an endpoint on this machine or a private network needs the operator's explicit "
            f"exemption: {EXEMPTION}=true (CLI: --allow-private-network)",
        )


def _bad_url(message: str, hint: str | None = None) -> ValidationError:
    return ValidationError(
        message, field="base_url", hint=hint or "e.g. https://models.example.com/v1"
    )
