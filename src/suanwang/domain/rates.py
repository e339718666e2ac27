"""Bandwidth caps: parsing a rate a person types, and the cap a transfer actually gets.

``parse_rate`` reads ``200MiB/s``, ``100M``, ``1G``, ``500MiB/s``, ``800Mbit/s``, ``1.5Gbps``
or a plain number of bytes per second. Decimal prefixes (k, M, G, T) are powers of 1000,
binary ones (Ki, Mi, Gi, Ti) powers of 1024; ``B`` or nothing means bytes, ``b``/``bit``/
``bps`` bits. A cap is strictly positive.

``effective_cap``: a transfer over a WAN link the operator capped gets at most the link's
cap (and shares it with every other transfer on that link); a tenant's own cap can only
lower it. Pure: no I/O.
"""

from __future__ import annotations

import math
import re

from suanwang.domain.errors import ValidationError

_RATE = re.compile(
    r"^\s*(?P<num>\d+(?:\.\d+)?|\.\d+)\s*(?P<prefix>[kKMGT]i?)?"
    r"(?P<unit>B|b|bit|bits|bps|Bps)?(?:\s*/\s*s)?\s*$"
)
_POWER = {"k": 1, "K": 1, "M": 2, "G": 3, "T": 4}
MAX_RATE_BYTES_PER_S = 1e13
"""10 TB/s: anything above is a typo, not a cap."""
RATE_HINT = "a positive rate such as 200MiB/s, 100M, 1G or 800Mbit/s"


def parse_rate(text: str, field: str = "max_rate") -> float:
    """Bytes per second from ``text``; ValidationError naming ``field`` otherwise."""
    found = _RATE.match(text) if len(text) <= 64 else None
    if found is None:
        raise ValidationError(f"invalid rate {text[:64]!r}", field=field, hint=RATE_HINT)
    value = float(found["num"])
    prefix = found["prefix"] or ""
    if prefix:
        base = 1024 if prefix.endswith("i") else 1000
        value *= base ** _POWER[prefix[0]]
    if (found["unit"] or "B") in ("b", "bit", "bits", "bps"):
        value /= 8
    return check_rate(value, field)


def check_rate(value: float, field: str = "max_bytes_per_s") -> float:
    """``value`` if it is a usable cap (positive, finite, at most 10 TB/s)."""
    if not math.isfinite(value) or not 0 < value <= MAX_RATE_BYTES_PER_S:
        raise ValidationError(
            f"invalid rate {value!r} bytes/s", field=field, hint=f"{RATE_HINT} (at most 10 TB/s)"
        )
    return value


def effective_cap(transfer_cap: float | None, link_cap: float | None) -> float | None:
    """The rate a transfer may use: the lower of its own cap and its link's (None: uncapped)."""
    caps = [c for c in (transfer_cap, link_cap) if c]
    return min(caps) if caps else None


def format_rate(bytes_per_s: float) -> str:
    """``4.0 MiB/s`` style, for people."""
    for unit, size in (("GiB/s", 1024**3), ("MiB/s", 1024**2), ("KiB/s", 1024)):
        if bytes_per_s >= size:
            return f"{bytes_per_s / size:,.1f} {unit}"
    return f"{bytes_per_s:,.0f} B/s"
