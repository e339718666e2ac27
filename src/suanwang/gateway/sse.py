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


def content_tokens(data: bytes) -> int | None:
    """Choices with non-empty content in one chunk, or None if it must be parsed as JSON.

    Same rule as the JSON reading: a choice counts when its ``delta.content`` (chat) or, with
    no delta, its ``text`` (completions) is non-empty. Answers only for chunks with at most
    one delta and one content field, no usage other than ``null`` and no ``error`` key.
    """
    if data[:1] != b"{" or data[-1:] != b"}":
        return None
    deltas = contents = texts = tokens = 0
    for key, quote, first in _FIELDS.findall(data):
        if key == b"delta":
            if quote or first != b"{":
                return None
            deltas += 1
        elif key == b"usage":
            if quote or first != b"n":  # null
                return None
        elif key == b"error":
            return None
        else:
            if quote:
                tokens += first != b'"'  # a non-empty string
            elif first != b"n":  # neither a string nor null
                return None
            if key == b"content":
                contents += 1
            else:
                texts += 1
    if deltas > 1 or contents + texts > 1 or contents > deltas or (texts and deltas):
        return None
    return tokens


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
