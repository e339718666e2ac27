"""Step 5: PII scrubbing with typed placeholders (pure).

What is scrubbed, in this order (a placeholder is never matched by a later pattern):

- ``[ID_CN]`` resident ID numbers (GB 11643-1999): 17 digits and a check digit (``0-9`` or
  ``X``) computed with ISO 7064 MOD 11-2, a birth date (positions 7-14) that exists and lies
  in 1900-2099, a region code whose first digit is 1-8;
- ``[BANK_CARD]`` 13-19 digits, written whole or in groups of 4 separated by one space or
  dash, passing the Luhn check and starting with an issuer prefix (3, 4, 5, 6 or 2-series
  MasterCard 22-27);
- ``[PHONE_CN]`` mainland mobile numbers ``1[3-9]`` + 9 digits, optionally after ``+86``,
  ``86`` or ``0086`` and split 3-4-4 by spaces or dashes;
- ``[EMAIL]`` addresses;
- ``[IPV4]`` dotted quads with every octet 0-255 and no leading zero;
- ``[IPV6]`` addresses that :class:`ipaddress.IPv6Address` accepts (at least two groups).

Numbers that fail their checksum or date are not PII and stay as written. Every number pattern
is anchored so that it never matches inside a longer run of digits (a 12-digit number holds
no phone number, a 20-digit one no card).
"""

from __future__ import annotations

import ipaddress
import re
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date

from suanwang.corpus.documents import Doc, Kept, Outcome

_ID_WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
_ID_CHECK = "10X98765432"
_CARD_PREFIX = re.compile(r"^(?:3|4|5|6|2[2-7])")

_ID_RE = re.compile(r"(?<![0-9])[1-8][0-9]{16}[0-9Xx](?![0-9A-Za-z])")
_CARD_RE = re.compile(r"(?<![0-9])(?:(?:[0-9]{4}[ -]){3,4}[0-9]{1,4}|[0-9]{13,19})(?![0-9Xx])")
_PHONE_RE = re.compile(
    r"(?<![0-9+])(?:(?:\+|00)?86[ -]?)?1[3-9][0-9](?:[0-9]{8}|[ -][0-9]{4}[ -][0-9]{4})(?![0-9Xx])"
)
_EMAIL_RE = re.compile(
    r"(?<![A-Za-z0-9._%+-])[A-Za-z0-9][A-Za-z0-9._%+-]*@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*"
    r"\.[A-Za-z]{2,}(?![A-Za-z])"
)
_IPV4_RE = re.compile(r"(?<![0-9.])(?:[0-9]{1,3}\.){3}[0-9]{1,3}(?![0-9]|\.[0-9])")
_IPV6_RE = re.compile(
    r"(?<![0-9A-Za-z:])[0-9A-Fa-f]{0,4}(?::[0-9A-Fa-f]{0,4}){2,7}(?![0-9A-Za-z:])"
)


def id_cn_valid(number: str) -> bool:
    """Whether ``number`` is a GB 11643-1999 resident ID (check digit and birth date)."""
    if len(number) != 18 or not number[:17].isdigit() or number[0] not in "12345678":
        return False
    total = sum(int(d) * w for d, w in zip(number[:17], _ID_WEIGHTS, strict=True))
    if _ID_CHECK[total % 11] != number[17].upper():
        return False
    return _valid_date(number[6:14])


def _valid_date(digits: str) -> bool:
    year, month, day = int(digits[:4]), int(digits[4:6]), int(digits[6:8])
    if not 1900 <= year <= 2099:
        return False
    try:
        date(year, month, day)
    except ValueError:
        return False
    return True


def luhn_valid(digits: str) -> bool:
    """Whether the digit string passes the Luhn (mod 10) check."""
    total = 0
    for index, char in enumerate(reversed(digits)):
        value = int(char)
        if index % 2:
            value = value * 2 - 9 if value > 4 else value * 2
        total += value
    return total % 10 == 0


def bank_card_valid(number: str) -> bool:
    """13-19 digits (separators ignored), an issuer prefix and a valid Luhn check digit."""
    digits = number.replace(" ", "").replace("-", "")
    return (
        digits.isdigit()
        and 13 <= len(digits) <= 19
        and _CARD_PREFIX.match(digits) is not None
        and luhn_valid(digits)
    )


def ipv4_valid(text: str) -> bool:
    """Four decimal octets 0-255 without leading zeros."""
    parts = text.split(".")
    return len(parts) == 4 and all(
        p.isdigit() and int(p) <= 255 and (p == "0" or not p.startswith("0")) for p in parts
    )


def ipv6_valid(text: str) -> bool:
    """An IPv6 address with at least one hex digit (``::`` alone is not scrubbed)."""
    if not any(c in "0123456789abcdefABCDEF" for c in text):
        return False
    try:
        ipaddress.IPv6Address(text)
    except ValueError:
        return False
    return True


@dataclass(frozen=True, slots=True)
class PiiRule:
    """One PII type: its placeholder, candidate pattern and validator."""

    kind: str
    pattern: re.Pattern[str]
    valid: Callable[[str], bool]


RULES = (
    PiiRule("ID_CN", _ID_RE, id_cn_valid),
    PiiRule("BANK_CARD", _CARD_RE, bank_card_valid),
    PiiRule("PHONE_CN", _PHONE_RE, lambda _: True),
    PiiRule("EMAIL", _EMAIL_RE, lambda _: True),
    PiiRule("IPV4", _IPV4_RE, ipv4_valid),
    PiiRule("IPV6", _IPV6_RE, ipv6_valid),
)
KINDS = tuple(rule.kind for rule in RULES)


def scrub(text: str, kinds: frozenset[str] = frozenset(KINDS)) -> tuple[str, Counter[str]]:
    """``text`` with every valid PII match replaced by ``[KIND]``, and the counts by kind."""
    counts: Counter[str] = Counter()
    for rule in RULES:
        if rule.kind not in kinds:
            continue

        def replace(match: re.Match[str], rule: PiiRule = rule) -> str:
            if not rule.valid(match.group(0)):
                return match.group(0)
            counts[rule.kind] += 1
            return f"[{rule.kind}]"

        text = rule.pattern.sub(replace, text)
    return text, counts


@dataclass(frozen=True, slots=True)
class PiiConfig:
    """Which PII types are scrubbed (default: all)."""

    kinds: tuple[str, ...] = KINDS


class PiiScrubber:
    """Replaces PII in each document; never removes a document."""

    name = "pii"

    def __init__(self, config: PiiConfig) -> None:
        self._kinds = frozenset(config.kinds)

    def apply(self, doc: Doc) -> Outcome:
        text, counts = scrub(doc.text, self._kinds)
        if not counts:
            return Kept(doc)
        return Kept(doc.with_text(text), tuple(sorted(counts.items())))
