"""Reading an engine's server-sent events with bytes operations (the streaming hot path).

An engine streams ``data: {json}`` lines, one chunk per token for llama.cpp. The gateway
needs three things from them: the content tokens (billed when the engine reports no
usage, or implausible usage), the usage chunk, and error chunks; everything else is
forwarded unchanged. ``json.loads`` on every chunk was a large part of the gateway's CPU
per streamed request, so :func:`content_tokens` reads the usual chunk shape by bytes alone
and answers None for anything it cannot judge exactly (usage, errors, several choices,
odd values), which the caller then parses as JSON.

Why a bytes search is safe here: in JSON, a key is a string followed by ``:``, and text
inside a string cannot contain an unescaped ``"``, so ``"content":`` can only be a key,
never part of the generated text.
"""

from __future__ import annotations

import re

_FIELDS = re.compile(rb'"(delta|content|text|usage|error)"\s*:\s*("?)(.?)', re.DOTALL)
_FIRST_CHOICE = re.compile(rb'"choices"\s*:\s*\[\s*\{')


def content_tokens(data: bytes) -> int | None:
    """Choices with non-empty content in one chunk, or None if it must be parsed as JSON.

    Same rule as the JSON reading: a choice counts when its ``delta.content`` (chat) or, with
    no delta, its ``text`` (completions) is non-empty. Answers only for chunks with no usage
    other than ``null``, no ``error`` key and at most one content or text field, which must
    then sit directly in the delta of the first choice (chat) or in the first choice itself
    (completions): the layout OpenAI-compatible engines send.
    """
    if data[:1] != b"{" or data[-1:] != b"}":
        return None
    deltas: list[tuple[int, int]] = []  # where each delta key starts and its object opens
    found = None  # (is text, where the field starts, deltas before it), if non-empty
    fields = 0
    for match in _FIELDS.finditer(data):
        key, quote, first = match.groups()
        if key == b"delta":
            if quote or first != b"{":
                return None
            deltas.append((match.start(), match.end()))
        elif key == b"usage":
            if quote or first != b"n":  # null
                return None
        elif key == b"error" or not (quote or first == b"n"):
            return None  # an error, or content that is neither a string nor null
        else:
            fields += 1
            if quote and first != b'"':
                found = (key == b"text", match.start(), len(deltas))
    if fields > 1:
        return None
    return 0 if found is None else _counts(data, found, deltas)


def _counts(data: bytes, found: tuple[bool, int, int], deltas: list[tuple[int, int]]) -> int | None:
    """1 if the one non-empty field is where the rule looks, None if unsure."""
    text, at, before = found
    choice = _FIRST_CHOICE.search(data)
    if choice is None:
        return None
    if text:
        return 1 if not deltas and _direct(data, choice.end(), at) else None
    if before == 0:
        return None
    key, opens = deltas[before - 1]
    return 1 if _direct(data, choice.end(), key) and _direct(data, opens, at) else None


def _direct(data: bytes, start: int, stop: int) -> bool:
    """No object opens or closes between ``start`` and ``stop`` (so both are one level)."""
    return data.find(b"{", start, stop) < 0 and data.find(b"}", start, stop) < 0


class SseLines:
    """Splits the pieces of a body, as they arrive, into complete lines (without ``\\n``)."""

    def __init__(self) -> None:
        self._pending = b""

    def feed(self, piece: bytes) -> list[bytes]:
        lines = (self._pending + piece if self._pending else piece).split(b"\n")
        self._pending = lines.pop()
        return lines

    def rest(self) -> list[bytes]:
        """The unterminated last line, if any (call at the end of the body)."""
        pending, self._pending = self._pending, b""
        return [pending] if pending else []
