"""A streamed answer's events as the proxy forwards them: token counts, usage, the end of
the stream, and tool-call deltas put into OpenAI's shape.

OpenAI's delta rules for tool calls: the first delta of each tool call (per choice, per
``index``) carries ``id``, ``type`` and ``function.name``; later deltas of the same call
carry only ``index`` and ``function.arguments`` fragments. Engines differ (llama-cpp-python
repeats id and name in every chunk, which clients concatenate into
``get_weatherget_weather``); :func:`account` rewrites tool-call chunks to the rule whatever
the engine sent, and mints an id where the engine sent none.
"""

from __future__ import annotations

import enum
import json
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from suanwang.domain.usage import Outcome
from suanwang.gateway.sse import content_tokens

_FINISHED, _FINISHED_SPACED = b'"finish_reason":"', b'"finish_reason": "'
"""A finish reason that is a string, as compact and as spaced JSON (engines write one)."""


class StreamEnd(enum.Enum):
    COMPLETE = (200, Outcome.OK)
    UPSTREAM_ERROR = (502, Outcome.UPSTREAM_ERROR)
    TIMEOUT = (504, Outcome.TIMEOUT)
    DISCONNECT = (499, Outcome.CLIENT_DISCONNECT)


@dataclass(slots=True)
class Tally:
    """What the gateway saw of a streamed answer."""

    chunks: int = 0
    """Completion tokens received (one per choice with content or tool-call arguments in
    a chunk, as llama.cpp streams them)."""
    usage: Any = None
    last: bytes = b""
    """The JSON of the last chunk."""
    held: bytes = b""
    """Events received with the end of the stream, not forwarded yet."""
    finished: bool = False
    """A choice had a finish_reason: the engine ended the answer itself."""
    tool_calls: set[tuple[int, int]] = field(default_factory=set)
    """(choice, tool call) indexes whose first delta was forwarded."""


def forward(lines: list[bytes], tally: Tally) -> tuple[bytes, StreamEnd | None]:
    """The events of ``lines`` to forward, and how the stream ended if it did."""
    parts: list[bytes] = []
    end = None
    for line in lines:
        if line.startswith(b"error:"):
            end = StreamEnd.UPSTREAM_ERROR
            break
        if not line.startswith(b"data:"):
            continue
        data = line[5:].strip()
        if data == b"[DONE]":
            end = StreamEnd.COMPLETE
            break
        try:
            out = account(data, tally)
        except ValueError:
            out = None
        if out is None:
            end = StreamEnd.UPSTREAM_ERROR
            break
        if out:
            parts += (b"data: ", out, b"\n\n")
    return b"".join(parts), end


def ended_without_done(tally: Tally) -> StreamEnd:
    """An engine body that ended with no ``[DONE]``: complete only if the engine finished
    the answer (a finish_reason), else cut."""
    return StreamEnd.COMPLETE if tally.finished else StreamEnd.UPSTREAM_ERROR


def account(data: bytes, tally: Tally) -> bytes | None:
    """Count a chunk's tokens, keep its usage; the JSON to forward (b"" for none).

    None for an error chunk; ValueError for one that is not JSON.
    """
    if not tally.finished and (_FINISHED in data or _FINISHED_SPACED in data):
        tally.finished = True
    if b'"tool_calls"' in data:
        return _tool_chunk(data, tally)
    tokens = content_tokens(data)
    if tokens is not None:
        tally.chunks += tokens
        tally.last = data
        return data
    chunk = json.loads(data)
    if not isinstance(chunk, dict) or "error" in chunk:
        return None
    choices = chunk.get("choices") or []
    for choice in choices:
        if isinstance(choice, dict):
            delta = choice.get("delta")
            text = delta.get("content") if isinstance(delta, dict) else choice.get("text")
            if text:
                tally.chunks += 1
    return _with_usage(chunk, data, tally)


def _with_usage(chunk: dict[str, Any], data: bytes, tally: Tally) -> bytes:
    tally.last = data
    if chunk.get("usage") is None:
        return data
    tally.usage = merged_usage(tally.usage, chunk["usage"])
    if not chunk.get("choices"):
        return b""
    return json.dumps({**chunk, "usage": None}).encode()


def merged_usage(seen: Any, usage: Any) -> Any:
    """The usage of a stream that reports it more than once: llama-server sends one usage
    chunk per choice when ``n`` > 1 (each with the shared prompt), so completions add up
    and the prompt counts once."""
    if not (isinstance(seen, dict) and isinstance(usage, dict)):
        return usage
    numbers = [u.get(k) for u in (seen, usage) for k in ("prompt_tokens", "completion_tokens")]
    ints = [v for v in numbers if type(v) is int]
    if len(ints) != len(numbers):
        return usage
    prompt, completion = max(ints[0], ints[2]), ints[1] + ints[3]
    return {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
    }


def _tool_chunk(data: bytes, tally: Tally) -> bytes | None:
    """A chunk with tool-call deltas, rewritten to OpenAI's delta rules."""
    chunk = json.loads(data)
    if not isinstance(chunk, dict) or "error" in chunk:
        return None
    for choice in chunk.get("choices") or []:
        delta = choice.get("delta") if isinstance(choice, dict) else None
        if not isinstance(delta, dict):
            continue
        if delta.get("content"):
            tally.chunks += 1
        calls = delta.get("tool_calls")
        if isinstance(calls, list):
            delta["tool_calls"] = [
                _tool_delta(choice.get("index", 0), position, call, tally)
                for position, call in enumerate(calls)
                if isinstance(call, dict)
            ]
    return _with_usage(chunk, json.dumps(chunk).encode(), tally)


def _tool_delta(choice: Any, position: int, call: dict[str, Any], tally: Tally) -> dict[str, Any]:
    index = call.get("index", position)
    raw = call.get("function")
    function: dict[str, Any] = raw if isinstance(raw, dict) else {}
    arguments = function.get("arguments")
    if isinstance(arguments, str) and arguments:
        tally.chunks += 1
    key = (choice if type(choice) is int else 0, index if type(index) is int else position)
    if key in tally.tool_calls:
        out: dict[str, Any] = {"index": key[1]}
        if isinstance(arguments, str):
            out["function"] = {"arguments": arguments}
        return out
    tally.tool_calls.add(key)
    ident = call.get("id") if isinstance(call.get("id"), str) and call.get("id") else None
    first_function = {"name": function.get("name") or "", "arguments": arguments or ""}
    return {
        "index": key[1],
        "id": ident or f"call_{secrets.token_hex(12)}",
        "type": "function",
        "function": first_function,
    }


def usage_chunk(
    last: bytes,
    prompt: int,
    completion: int,
    extra: Mapping[str, Any] | None = None,
    *,
    with_usage: bool = True,
) -> bytes:
    """The usage event sent to a client that asked for it (``stream_options``), with the
    call's ``extra`` fields (an app's citations) when it has some."""
    try:
        fields = json.loads(last)
    except ValueError:
        fields = {}
    usage = {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
    }
    chunk: dict[str, Any] = {
        k: v for k, v in fields.items() if k in ("id", "object", "created", "model")
    }
    chunk["choices"] = []
    if with_usage:
        chunk["usage"] = usage
    chunk.update(extra or {})
    return b"data: " + json.dumps(chunk).encode() + b"\n\n"
