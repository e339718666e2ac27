"""Request translation: a validated call made into what one engine accepts, or refused.

:func:`plan_for` is pure. For an engine without the feature (see :mod:`.capabilities`):

- ``developer`` messages become ``system`` ones; text content parts are joined into one
  string (other part types are refused when the body is parsed);
- a named ``tool_choice`` becomes ``required`` over that one tool (same result: the model
  must call that function); tools themselves reach the model through the engine's chat
  template, or through a JSON-schema grammar the gateway sets up (:mod:`.tool_grammar`),
  or are refused (``param: tools``) by engines with neither;
- ``n`` > 1 becomes n engine calls whose choices the proxy merges into one answer (usage:
  the prompt once, completions summed, as OpenAI counts); streamed, it is refused;
- ``response_format`` json_schema / json_object and ``logprobs`` are refused (``param``
  named, code ``unsupported_parameter``) where the engine cannot honour them: a model asked
  for JSON that silently gets free text is worse than a clear 400.

Passthrough engines (``openai-compatible``) get the body unchanged.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from suanwang.gateway.capabilities import Capabilities, capabilities_of
from suanwang.gateway.chat_fields import tool_choice_name
from suanwang.gateway.errors import GatewayError, bad_request
from suanwang.gateway.routing import Slot
from suanwang.gateway.schema import Call
from suanwang.gateway.tool_grammar import grammar_body

UNSUPPORTED = "unsupported_parameter"


@dataclass(frozen=True, slots=True)
class Plan:
    """What to send to one replica for one call."""

    body: dict[str, Any]
    """The body of each engine call."""
    calls: int = 1
    """Engine calls whose choices are merged into one answer (``n`` the engine lacks)."""
    tool_grammar: bool = False
    """Tools asked through a JSON-schema grammar: the answer's JSON becomes tool calls."""


@dataclass(slots=True)
class Routes:
    """The replicas that can serve a call, and what each one is sent."""

    slots: list[Slot]
    plans: dict[str, Plan]
    """By replica id."""
    calls: int
    """Engine calls merged into one answer (``n`` on engines without it)."""


def routes_for(call: Call, slots: list[Slot]) -> Routes:
    """The replicas able to serve ``call`` (fewest engine calls first), or the 400 of
    the first engine that cannot."""
    by_engine: dict[str, Plan | GatewayError] = {}
    plans: dict[str, Plan] = {}
    refused: GatewayError | None = None
    for slot in slots:
        caps = capabilities_of(slot.replica)
        plan = by_engine.get(caps.engine)
        if plan is None:
            try:
                plan = plan_for(call, caps)
            except GatewayError as error:
                plan = error
            by_engine[caps.engine] = plan
        if isinstance(plan, GatewayError):
            refused = refused or plan
        else:
            plans[slot.replica.replica_id] = plan
    if not plans:
        assert refused is not None
        raise refused
    calls = min(p.calls for p in plans.values())
    usable = [s for s in slots if plans.get(s.replica.replica_id, Plan({}, 0)).calls == calls]
    return Routes(usable, plans, calls)


def plan_for(call: Call, caps: Capabilities) -> Plan:
    """The engine calls for ``call`` on an engine with ``caps``, or a 400 GatewayError."""
    if caps.passthrough or call.endpoint == "embeddings":
        return Plan(call.body)
    body = call.body
    for field in caps.refused_fields & body.keys():
        message = f"'{field}' is not an OpenAI parameter: use 'response_format'"
        raise bad_request(message, field, UNSUPPORTED)
    changes: dict[str, Any] = {}
    grammar = False
    chat = call.endpoint == "chat/completions"
    if chat and not caps.tools and caps.tools_by_grammar and _uses_tools(body):
        grammar = bool(body.get("tools")) and body.get("tool_choice") != "none"
        if grammar and body.get("response_format") is not None:
            message = f"the {caps.engine} engine cannot combine tools with response_format"
            raise bad_request(message, "response_format", UNSUPPORTED)
        body = grammar_body(body)
        changes["messages"] = body["messages"]
    if call.endpoint == "chat/completions":
        messages = _messages(body["messages"], caps)
        if messages is not body["messages"]:
            changes["messages"] = messages
        changes.update(_tools(body, caps))
        _response_format(body.get("response_format"), caps)
    if body.get("logprobs") not in (None, False, 0) and not caps.logprobs:
        raise _unsupported("logprobs", caps)
    n = body.get("n") or 1
    calls = 1
    if n > 1 and not (caps.n_stream if call.stream else caps.n):
        if call.stream:
            message = f"the {caps.engine} engine streams one choice: send 'n' > 1 unstreamed"
            raise bad_request(message, "n", UNSUPPORTED)
        changes["n"] = None
        calls = n
    if not changes:
        return Plan(body, calls, grammar)
    merged = {**body, **changes}
    return Plan({k: v for k, v in merged.items() if v is not None}, calls, grammar)


def _uses_tools(body: dict[str, Any]) -> bool:
    return bool(body.get("tools")) or any(
        m.get("tool_calls") or m["role"] == "tool" for m in body["messages"]
    )


def _messages(messages: list[dict[str, Any]], caps: Capabilities) -> list[dict[str, Any]]:
    """``messages`` with roles and content the engine knows (the same list if unchanged)."""
    out: list[dict[str, Any]] | None = None
    for i, message in enumerate(messages):
        new = message
        if message["role"] == "developer" and not caps.developer_role:
            new = {**new, "role": "system"}
        content = message.get("content")
        if isinstance(content, list) and not caps.content_parts:
            new = {**new, "content": "\n".join(part["text"] for part in content)}
        if not caps.tools and (message.get("tool_calls") or message["role"] == "tool"):
            raise _unsupported(f"messages[{i}]", caps, "tool calls")
        if new is not message and out is None:
            out = list(messages[:i])
        if out is not None:
            out.append(new)
    return messages if out is None else out


def _tools(body: dict[str, Any], caps: Capabilities) -> dict[str, Any]:
    """Changes to ``tools`` and ``tool_choice`` (None removes a field)."""
    tools, choice = body.get("tools"), body.get("tool_choice")
    if not tools:
        return {}
    if choice == "none" and not caps.tools:
        return {"tools": None, "tool_choice": None, "parallel_tool_calls": None}
    if not caps.tools:
        raise _unsupported("tools", caps, "tool calling")
    name = tool_choice_name(choice)
    if name is None or caps.named_tool_choice:
        return {}
    only = [t for t in tools if t["function"]["name"] == name]
    return {"tools": only, "tool_choice": "required"}


def _response_format(fmt: Any, caps: Capabilities) -> None:
    kind = fmt.get("type") if isinstance(fmt, dict) else None
    if (kind == "json_schema" and not caps.json_schema) or (
        kind == "json_object" and not caps.json_object
    ):
        raise _unsupported("response_format", caps, f"response_format {kind}")


def _unsupported(param: str, caps: Capabilities, what: str | None = None) -> GatewayError:
    feature = what or param
    message = f"the {caps.engine} engine serving this model does not support {feature}"
    return bad_request(message, param, UNSUPPORTED)
