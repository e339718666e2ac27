"""Engine answers classified: whose fault, retried or not, and the caller's error.

=========================  ===========================  =========  =======================
engine answer              verdict                      retried    breaker (ejection)
=========================  ===========================  =========  =======================
2xx                        OK                           no         success (closes)
400, 413, 422, 501 and     REFUSED: the caller's        no         success (engine alive)
4xx not listed below       request; 400 to the caller
                           with OpenAI's code
429, 503, 408              BUSY (slots full, model      yes        no change
                           loading)
401, 403                   REJECTED: the replica        yes        failure
                           refused the platform's
                           credentials (an external
                           endpoint's key); 502
                           upstream_auth if every
                           replica does
404, 405                   FAILED: replica              yes        failure
                           misconfigured
500, 502, 504, other 5xx   FAILED                       yes        failure
=========================  ===========================  =========  =======================

llama-server answers a stream's first error as a plain HTTP error (its prompt checks run
before the 200); an engine that streams an error as its first event after a 200 gets the
same treatment: REFUSED, before any byte reaches the client.
"""

from __future__ import annotations

import enum
import json
import re
from typing import Any

from suanwang.gateway.errors import GatewayError

_CONTEXT = re.compile(
    r"context (length|size|window)|maximum model length|model's context|exceed_context",
    re.IGNORECASE,
)
_CODE = re.compile(r"^[a-z][a-z0-9_]{2,48}$")
CONTEXT_LENGTH_EXCEEDED = "context_length_exceeded"
ENGINE_CODES = frozenset({CONTEXT_LENGTH_EXCEEDED, "invalid_value", "unsupported_parameter"})
"""The codes a refusal can carry (bounded: they label a metric)."""


class Verdict(enum.Enum):
    OK = "ok"
    REFUSED = "refused"
    BUSY = "busy"
    FAILED = "failed"
    REJECTED = "rejected"
    """The engine refused the platform's credentials (401/403): a failure of the replica,
    not of the caller's request."""


def classify(status: int) -> Verdict:
    """What an engine's HTTP status says about the engine and the request."""
    if status < 400:
        return Verdict.OK
    if status in (408, 429, 503):
        return Verdict.BUSY
    if status == 501:  # llama-server's not_supported_error: a feature of this request
        return Verdict.REFUSED
    if status in (401, 403):
        return Verdict.REJECTED
    if status in (404, 405) or status >= 500:
        return Verdict.FAILED
    return Verdict.REFUSED


def refusal(body: bytes | Any) -> GatewayError:
    """The 400 for an engine's refusal of the request, in OpenAI's shape.

    ``body`` is the engine's answer (bytes) or its parsed error event. The code is
    ``context_length_exceeded`` for an over-long prompt (llama.cpp, vLLM, SGLang and OpenAI
    wordings), else the engine's own code if OpenAI uses it, else ``invalid_value``.
    """
    error = _error_of(body)
    message = str(error.get("message") or "the engine refused the request")[:500]
    kind, code, param = error.get("type"), error.get("code"), error.get("param")
    if _CONTEXT.search(f"{kind} {code} {message}"):
        text = f"the prompt does not fit the model's context: {message}"
        return GatewayError(400, text, code=CONTEXT_LENGTH_EXCEEDED, param="messages")
    own = code if isinstance(code, str) and code in ENGINE_CODES else "invalid_value"
    where = param if isinstance(param, str) and _CODE.match(param) else None
    return GatewayError(400, f"the engine refused the request: {message}", code=own, param=where)


def error_event(data: bytes) -> Any:
    """The error object of a streamed event, or None for an ordinary chunk."""
    if b'"error"' not in data:
        return None
    try:
        chunk = json.loads(data)
    except ValueError:
        return None
    return chunk if isinstance(chunk, dict) and "error" in chunk else None


def _error_of(body: bytes | Any) -> dict[str, Any]:
    parsed = body
    if isinstance(body, bytes):
        try:
            parsed = json.loads(body)
        except ValueError:
            return {"message": body[:200].decode(errors="replace")}
    if not isinstance(parsed, dict):
        return {}
    error = parsed.get("error", parsed)
    if isinstance(error, str):
        return {"message": error}
    return error if isinstance(error, dict) else {}
