"""Tool calling through a JSON-schema grammar, for engines whose chat template cannot.

llama-server renders tools only through a chat template that supports them, and parses
tool calls only from such a template's output; with another template (SmolLM2's, say) it
drops the tools silently and the model answers in prose, ``tool_choice: required`` or
not. For such engines the gateway does what llama.cpp's older generic handler did:

- request: the tools are described in a system message, and ``response_format`` becomes a
  JSON schema that the engine enforces with its grammar: ``{"tool_call": {"name", "arguments"}}``
  with one branch per allowed tool (the named one for a named ``tool_choice``, all for
  ``required``), or, for ``auto``, that or ``{"response": "..."}``; earlier tool calls and
  tool results in the conversation are written as the same JSON and as user messages;
- answer: the JSON is turned back into ``tool_calls`` (finish reason ``tool_calls``) or
  into content; streamed, the answer is collected and sent as OpenAI's deltas at the end
  (one delta with the id, type, name and arguments, then the finish).
"""

from __future__ import annotations

import json
import secrets
from typing import Any

from suanwang.gateway.chat_fields import tool_choice_name

SCHEMA_NAME = "tool_call"


def grammar_body(body: dict[str, Any]) -> dict[str, Any]:
    """``body`` with its tools as a system message and a JSON-schema response format."""
    tools = body.get("tools") or []
    choice = body.get("tool_choice", "auto")
    out = {
        k: v for k, v in body.items() if k not in ("tools", "tool_choice", "parallel_tool_calls")
    }
    if not tools or choice == "none":
        out["messages"] = history_as_text(body["messages"], as_json=False)
        return out
    messages = history_as_text(body["messages"], as_json=True)
    named = tool_choice_name(choice)
    allowed = [t for t in tools if named is None or t["function"]["name"] == named]
    calls = [
        {
            "type": "object",
            "properties": {
                "name": {"const": t["function"]["name"]},
                "arguments": t["function"].get("parameters") or {"type": "object"},
            },
            "required": ["name", "arguments"],
        }
        for t in allowed
    ]
    call = {
        "type": "object",
        "properties": {"tool_call": {"anyOf": calls}},
        "required": ["tool_call"],
    }
    reply = {
        "type": "object",
        "properties": {"response": {"type": "string"}},
        "required": ["response"],
    }
    schema = call if choice != "auto" or named else {"anyOf": [call, reply]}
    out["messages"] = [{"role": "system", "content": _instructions(allowed, choice)}, *messages]
    out["response_format"] = {
        "type": "json_schema",
        "json_schema": {"name": SCHEMA_NAME, "schema": schema},
    }
    return out


def _instructions(tools: list[dict[str, Any]], choice: Any) -> str:
    described = json.dumps([t["function"] for t in tools], ensure_ascii=False)
    must = "You must call one of them" if choice != "auto" else "You may call one of them"
    return (
        f"You have these tools (JSON): {described}\n{must} by answering with JSON: "
        '{"tool_call": {"name": "<tool name>", "arguments": {...}}}'
        + ("" if choice != "auto" else ', or answer the user with {"response": "<text>"}')
        + "."
    )


def history_as_text(messages: list[dict[str, Any]], as_json: bool) -> list[dict[str, Any]]:
    """Tool calls and results as text the model reads. ``as_json`` (tools asked again):
    assistant tool calls as the JSON the grammar produces. Otherwise (the model is to
    answer in words) the calls are left out and each result is a user message naming the
    call, so the model answers with it instead of imitating a call."""
    out: list[dict[str, Any]] = []
    calls_by_id: dict[str, dict[str, Any]] = {}
    for message in messages:
        calls = message.get("tool_calls")
        if message["role"] == "assistant" and calls:
            calls_by_id.update({c["id"]: c["function"] for c in calls})
            call = calls[0]["function"]
            if as_json:
                text = json.dumps({"tool_call": {"name": call["name"], "arguments": _args(call)}})
                out.append({"role": "assistant", "content": text})
            elif isinstance(message.get("content"), str) and message["content"]:
                out.append({"role": "assistant", "content": message["content"]})
        elif message["role"] == "tool":
            out.append({"role": "user", "content": _result(message, calls_by_id)})
        else:
            out.append(message)
    return out


def _result(message: dict[str, Any], calls: dict[str, dict[str, Any]]) -> str:
    call = calls.get(message.get("tool_call_id", ""))
    where = f"{call['name']}({call['arguments']})" if call else "the tool"
    content = message.get("content")
    text = content if isinstance(content, str) else json.dumps(content)
    return f"Result of {where}: {text}"


def _args(function: dict[str, Any]) -> Any:
    try:
        return json.loads(function["arguments"])
    except ValueError:
        return function["arguments"]


def as_tool_calls(answer: Any) -> Any:
    """A non-streamed answer whose choices' JSON content becomes tool calls or text."""
    if not isinstance(answer, dict):
        return answer
    for choice in answer.get("choices") or []:
        message = choice.get("message") if isinstance(choice, dict) else None
        if isinstance(message, dict) and isinstance(message.get("content"), str):
            new, finish = _message_of(message["content"])
            if new is not None:
                choice["message"] = {**message, **new}
                choice["finish_reason"] = finish or choice.get("finish_reason")
    return answer


def _message_of(content: str) -> tuple[dict[str, Any] | None, str | None]:
    """The message fields for a grammar-shaped answer (None if it is not one)."""
    try:
        parsed = json.loads(content)
    except ValueError:
        return None, None
    if not isinstance(parsed, dict):
        return None, None
    call = parsed.get("tool_call")
    if isinstance(call, dict) and isinstance(call.get("name"), str):
        arguments = json.dumps(call.get("arguments", {}), ensure_ascii=False)
        tool_call = {
            "id": f"call_{secrets.token_hex(12)}",
            "type": "function",
            "function": {"name": call["name"], "arguments": arguments},
        }
        return {"content": None, "tool_calls": [tool_call]}, "tool_calls"
    if isinstance(parsed.get("response"), str):
        return {"content": parsed["response"]}, None
    return None, None


def stream_as_tool_calls(events: bytes) -> bytes:
    """Forwardable events of a collected grammar-shaped stream, rewritten: per choice one
    delta with the whole tool call (or the text), then one with the finish reason."""
    chunks = [json.loads(line[5:]) for line in events.split(b"\n") if line.startswith(b"data:")]
    if not chunks:
        return events
    meta = {k: v for k, v in chunks[0].items() if k in ("id", "object", "created", "model")}
    texts: dict[int, str] = {}
    finishes: dict[int, Any] = {}
    for chunk in chunks:
        for choice in chunk.get("choices") or []:
            index = choice.get("index", 0)
            delta = choice.get("delta") or {}
            texts[index] = texts.get(index, "") + (delta.get("content") or "")
            if choice.get("finish_reason"):
                finishes[index] = choice["finish_reason"]
    out: list[bytes] = []
    for index, text in sorted(texts.items()):
        new, finish = _message_of(text)
        delta = {"role": "assistant", **(new or {"content": text})}
        if "tool_calls" in delta:
            delta["tool_calls"] = [{"index": 0, **delta["tool_calls"][0]}]
        end = finish or finishes.get(index)
        out += [
            _event({**meta, "choices": [{"index": index, "delta": delta, "finish_reason": None}]}),
            _event({**meta, "choices": [{"index": index, "delta": {}, "finish_reason": end}]}),
        ]
    return b"".join(out)


def _event(chunk: dict[str, Any]) -> bytes:
    return b"data: " + json.dumps(chunk, ensure_ascii=False).encode() + b"\n\n"
