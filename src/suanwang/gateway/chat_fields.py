"""Checks of OpenAI's optional request fields, as OpenAI itself checks them (400 naming the
param), before any engine sees them: engines answer these with a 5xx or ignore them.

:func:`check_fields` covers sampling (penalties, ``seed``, ``stop``, ``logprobs``),
``user``, tools, ``tool_choice``, ``response_format`` and the tool-call fields of messages.
"""

from __future__ import annotations

import re
from typing import Any

from suanwang.gateway.errors import bad_request

MAX_TOOLS = 128
MAX_STOP = 4
MAX_TOP_LOGPROBS = 20
_NAME = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
_CHOICES = ("none", "auto", "required")
_FORMATS = ("text", "json_object", "json_schema")


def check_fields(body: dict[str, Any], chat: bool) -> None:
    """Raise a 400 GatewayError for the first field OpenAI would refuse."""
    for name in ("presence_penalty", "frequency_penalty"):
        _range(body, name, -2.0, 2.0)
    user = body.get("user")
    if user is not None and (not isinstance(user, str) or len(user) > 256):
        raise bad_request("'user' must be a string of at most 256 characters", "user")
    seed = body.get("seed")
    if seed is not None and (type(seed) is not int or not -(2**63) <= seed < 2**63):
        raise bad_request("'seed' must be a 64-bit integer", "seed")
    _stop(body.get("stop"))
    logprobs = body.get("logprobs")
    if chat and logprobs is not None and not isinstance(logprobs, bool):
        raise bad_request("'logprobs' must be true or false", "logprobs")
    top = body.get("top_logprobs")
    if top is not None:
        if type(top) is not int or not 0 <= top <= MAX_TOP_LOGPROBS:
            message = f"'top_logprobs' must be an integer between 0 and {MAX_TOP_LOGPROBS}"
            raise bad_request(message, "top_logprobs")
        if logprobs is not True:
            raise bad_request("'top_logprobs' needs 'logprobs': true", "top_logprobs")
    parallel = body.get("parallel_tool_calls")
    if parallel is not None and not isinstance(parallel, bool):
        raise bad_request("'parallel_tool_calls' must be true or false", "parallel_tool_calls")
    if chat:
        names = _tools(body.get("tools"))
        _tool_choice(body.get("tool_choice"), names)
        _response_format(body.get("response_format"))


def check_tool_calls(message: dict[str, Any], i: int) -> None:
    """An assistant message's ``tool_calls`` and a tool message's ``tool_call_id``."""
    calls = message.get("tool_calls")
    if calls is not None:
        if message.get("role") != "assistant" or not isinstance(calls, list):
            raise bad_request("only assistant messages carry a list of 'tool_calls'", _m(i))
        for j, call in enumerate(calls):
            function = call.get("function") if isinstance(call, dict) else None
            if (
                not isinstance(function, dict)
                or not isinstance(call.get("id"), str)
                or not isinstance(function.get("name"), str)
                or not isinstance(function.get("arguments"), str)
            ):
                message_text = "a tool call needs 'id' and 'function' with 'name' and 'arguments'"
                raise bad_request(message_text, f"{_m(i)}.tool_calls[{j}]")
    if message.get("role") == "tool" and not isinstance(message.get("tool_call_id"), str):
        raise bad_request("a tool message needs 'tool_call_id'", f"{_m(i)}.tool_call_id")


def tool_choice_name(choice: Any) -> str | None:
    """The function a named ``tool_choice`` asks for (None for auto/none/required)."""
    if isinstance(choice, dict):
        function = choice.get("function")
        if isinstance(function, dict) and isinstance(function.get("name"), str):
            return str(function["name"])
    return None


def _m(i: int) -> str:
    return f"messages[{i}]"


def _range(body: dict[str, Any], name: str, low: float, high: float) -> None:
    value = body.get(name)
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, int | float) or not low <= value <= high:
        raise bad_request(f"'{name}' must be a number between {low} and {high}", name)


def _stop(stop: Any) -> None:
    if stop is None or isinstance(stop, str):
        return
    if (
        not isinstance(stop, list)
        or len(stop) > MAX_STOP
        or not all(isinstance(s, str) and s for s in stop)
    ):
        message = f"'stop' must be a string or a list of at most {MAX_STOP} non-empty strings"
        raise bad_request(message, "stop")


def _tools(tools: Any) -> set[str]:
    if tools is None:
        return set()
    if not isinstance(tools, list) or len(tools) > MAX_TOOLS:
        raise bad_request(f"'tools' must be a list of at most {MAX_TOOLS} tools", "tools")
    names: set[str] = set()
    for i, tool in enumerate(tools):
        function = tool.get("function") if isinstance(tool, dict) else None
        if not isinstance(tool, dict) or tool.get("type") != "function":
            raise bad_request("each tool needs 'type': 'function'", f"tools[{i}].type")
        if not isinstance(function, dict) or not _NAME.match(str(function.get("name", ""))):
            hint = "a name of 1-64 letters, digits, '_' or '-'"
            raise bad_request(f"each tool needs 'function.name': {hint}", f"tools[{i}].function")
        parameters = function.get("parameters")
        if parameters is not None and not isinstance(parameters, dict):
            message = "'parameters' must be a JSON schema object"
            raise bad_request(message, f"tools[{i}].function.parameters")
        names.add(function["name"])
    return names


def _tool_choice(choice: Any, names: set[str]) -> None:
    if choice is None:
        return
    if isinstance(choice, str):
        if choice not in _CHOICES:
            message = f"'tool_choice' must be one of {list(_CHOICES)} or a named function"
            raise bad_request(message, "tool_choice")
        if choice == "required" and not names:
            raise bad_request("'tool_choice': 'required' needs 'tools'", "tool_choice")
        return
    name = tool_choice_name(choice)
    if not isinstance(choice, dict) or choice.get("type") != "function" or name is None:
        hint = '{"type": "function", "function": {"name": ...}}'
        raise bad_request(f"a named 'tool_choice' has the shape {hint}", "tool_choice")
    if name not in names:
        raise bad_request(f"'tool_choice' names {name!r}, which is not in 'tools'", "tool_choice")


def _response_format(fmt: Any) -> None:
    if fmt is None:
        return
    kind = fmt.get("type") if isinstance(fmt, dict) else None
    if kind not in _FORMATS:
        message = f"'response_format.type' must be one of {list(_FORMATS)}"
        raise bad_request(message, "response_format")
    if kind == "json_schema":
        spec = fmt.get("json_schema")
        if not isinstance(spec, dict) or not _NAME.match(str(spec.get("name", ""))):
            message = "'json_schema' needs a 'name' (1-64 letters, digits, '_' or '-')"
            raise bad_request(message, "response_format.json_schema")
        if not isinstance(spec.get("schema", {}), dict):
            message = "'json_schema.schema' must be a JSON schema object"
            raise bad_request(message, "response_format.json_schema.schema")
