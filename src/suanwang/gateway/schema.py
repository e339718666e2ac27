"""Validation of OpenAI request bodies before any engine sees them.

:func:`parse_call` checks the fields the gateway and the engines rely on, computes an
upper bound of the prompt's tokens (UTF-8 bytes plus per-message overhead: a BPE token is
at least one byte) and the completion bound, and returns the body to forward: with
``max_tokens`` set (the caller's, or the documented cap), ``stream_options.include_usage``
always asked of the engine when streaming, and client-supplied endpoints removed.

A body is refused (400) before any of that if it is not JSON, nests deeper than
``MAX_NESTING`` (json's RecursionError, or a depth that later encoding would trip on),
holds a number past Python's int-string conversion limit, or holds a string that is not
Unicode text (a lone surrogate such as ``"\\ud800"``, which cannot be re-encoded).
"""

from __future__ import annotations

import hashlib
import json
import sys
from collections.abc import Callable, Collection, Iterator, Mapping
from dataclasses import dataclass
from dataclasses import field as dataclass_field
from typing import Any

from suanwang.domain.serving import ModelKind, ModelSpec
from suanwang.gateway.chat_fields import check_fields, check_tool_calls
from suanwang.gateway.errors import bad_request

ROLES = frozenset({"system", "user", "assistant", "tool", "developer", "function"})
PER_MESSAGE_TOKENS = 8
PER_REQUEST_TOKENS = 16
MAX_CHOICES = 8
TOOLS_TEMPLATE_TOKENS = 512
"""Upper bound of the text a chat template wraps tools in (instructions, tags)."""
_DROPPED = ("api_base", "base_url", "api_key", "stream_options")
MAX_NESTING = 64
"""Deepest nesting of objects and arrays in a body (tools' JSON schemas need a dozen)."""
_JOIN_AT = 16
"""Past this many strings in one container, checking them joined is cheaper."""
_SEARCH_HUGE_NUMBER_BELOW = 256 * 1024
"""Bodies this large are parsed a second time to name a too-long number's param."""


@dataclass(frozen=True, slots=True)
class Call:
    """One validated request."""

    endpoint: str
    kind: ModelKind
    model: str
    body: dict[str, Any]
    """What is forwarded upstream."""
    stream: bool
    include_usage: bool
    """Whether the client asked for the usage chunk."""
    max_completion: int
    """Upper bound of completion tokens (max_tokens x n; 0 for embeddings)."""
    prompt_bound: int
    prompt_text: str
    affinity: str
    """Session/prefix key for routing: ``user``, else a hash of the first message."""
    extra: Mapping[str, Any] = dataclass_field(default_factory=dict)
    """Fields added to the answer object (an app's ``citations``): to a plain answer, and
    to the last chunk of a stream."""

    @property
    def reserve_tokens(self) -> int:
        return self.prompt_bound + self.max_completion


def parse_call(endpoint: str, raw: bytes, default_max_tokens: int) -> Call:
    """Parse and check ``raw`` for ``endpoint``, or raise a 400 GatewayError."""
    body = load_json(raw)
    if not isinstance(body, dict):
        raise bad_request("the body must be a JSON object", code="invalid_json")
    model = body.get("model")
    if not isinstance(model, str) or not 0 < len(model) <= 128:
        raise bad_request("'model' is required: a model name (see GET /v1/models)", "model")
    for field in _DROPPED:
        if field != "stream_options":
            body.pop(field, None)
    if endpoint == "embeddings":
        return _embeddings(body, model)
    stream = _bool(body, "stream")
    options = body.get("stream_options")
    if options is not None and (not isinstance(options, dict) or not stream):
        raise bad_request("'stream_options' is only allowed with stream: true", "stream_options")
    include_usage = bool(options and options.get("include_usage") is True)
    if endpoint == "chat/completions":
        text, overhead = _messages(body.get("messages"))
        overhead += _tools_overhead(body.get("tools"))
        kind = ModelKind.CHAT
    else:
        text, overhead = _prompt(body.get("prompt")), 0
        kind = ModelKind.CHAT
    n = _int(body, "n", 1, MAX_CHOICES) or 1
    asked = _int(body, "max_completion_tokens", 1, 10**7) or _int(body, "max_tokens", 1, 10**7)
    body.pop("max_completion_tokens", None)
    body["max_tokens"] = max_tokens = asked or default_max_tokens
    body.pop("stream_options", None)
    if stream:
        body["stream_options"] = {"include_usage": True}
    _number(body, "temperature", 0.0, 2.0)
    _number(body, "top_p", 0.0, 1.0)
    check_fields(body, chat=endpoint == "chat/completions")
    first = body["messages"][0] if endpoint == "chat/completions" else {"content": text[:512]}
    return Call(
        endpoint=endpoint,
        kind=kind,
        model=model,
        body=body,
        stream=stream,
        include_usage=include_usage,
        max_completion=max_tokens * n,
        prompt_bound=len(text.encode()) + overhead + PER_REQUEST_TOKENS,
        prompt_text=text,
        affinity=_affinity(body, first),
    )


def load_json(raw: bytes) -> Any:
    """The JSON value in ``raw``, refused with a 400 that says what is wrong with it."""
    try:
        body = json.loads(raw)
    except RecursionError:
        raise _too_deep() from None
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise bad_request(f"the body is not valid JSON: {exc}", code="invalid_json") from exc
    except ValueError as exc:  # only the int-string conversion limit is left
        where = _path_of_huge_number(raw)
        message = f"a number has more than {sys.get_int_max_str_digits()} digits"
        raise bad_request(message, where, "invalid_json") from exc
    try:
        _check_tree(body)
    except UnicodeEncodeError:
        where = _first_path(body, _not_unicode) or ""  # a key may hold the surrogate:
        where = where.encode(errors="backslashreplace").decode()  # the param is text
        message = "a string holds a lone surrogate escape (such as \\ud800), not text"
        raise bad_request(message, where or None, "invalid_unicode") from None
    return body


def _too_deep() -> Exception:
    message = f"the body nests objects and arrays deeper than {MAX_NESTING} levels"
    return bad_request(message, None, "invalid_json")


def _check_tree(body: Any) -> None:
    """Refuse nesting past MAX_NESTING (400) and raise UnicodeEncodeError for a key or
    string that is not text, level by level without recursion. A container without
    strings or containers (a token list) costs one C-speed pass over its types."""
    level: list[Any] = [body] if type(body) is list or type(body) is dict else []
    for _ in range(MAX_NESTING):
        deeper: list[Any] = []
        for node in level:
            if type(node) is dict:
                _check_text(node, only_strings=True)  # JSON keys are strings
                children = node.values()
            else:
                children = node
            kinds = set(map(type, children))
            if str in kinds:
                _check_text(children, only_strings=len(kinds) == 1)
            if list in kinds or dict in kinds:
                deeper += [c for c in children if type(c) is list or type(c) is dict]
        if not deeper:
            return
        level = deeper
    raise _too_deep()


def _check_text(items: Collection[Any], *, only_strings: bool) -> None:
    """UnicodeEncodeError if a string among ``items`` holds a lone surrogate. ``isascii``
    is O(1), so only non-ASCII text is encoded; many strings are joined and checked once."""
    if only_strings and len(items) > _JOIN_AT:
        joined = "".join(items)
        if not joined.isascii():
            joined.encode()
        return
    for item in items:
        if type(item) is str and not item.isascii():
            item.encode()


def _not_unicode(value: Any) -> bool:
    if type(value) is not str or value.isascii():
        return False
    try:
        value.encode()
    except UnicodeEncodeError:
        return True
    return False


def _path_of_huge_number(raw: bytes) -> str | None:
    """Where the first number past the int-string conversion limit is, as a param (None
    for a body too large to parse twice cheaply, or one that fails further on)."""
    if len(raw) > _SEARCH_HUGE_NUMBER_BELOW:
        return None
    limit = sys.get_int_max_str_digits()
    huge = object()

    def parse_int(text: str) -> object:
        return huge if len(text.lstrip("-")) > limit else int(text)

    try:
        body = json.loads(raw, parse_int=parse_int)
    except (RecursionError, ValueError):
        return None
    return _first_path(body, lambda value: value is huge) or None


def _first_path(body: Any, bad: Callable[[Any], bool]) -> str | None:
    """The param path (``messages[0].content``) of the first key or value that is ``bad``;
    ``""`` for the body itself, None if there is none."""
    stack: list[tuple[str, Any, Any]] = [("", None, body)]
    while stack:
        path, key, node = stack.pop()
        if bad(key) or bad(node):
            return path
        stack.extend(reversed(list(_children(path, node))))
    return None


def _children(path: str, node: Any) -> Iterator[tuple[str, Any, Any]]:
    if isinstance(node, dict):
        for key, value in node.items():
            yield (f"{path}.{key}" if path else str(key)), key, value
    elif isinstance(node, list):
        for i, value in enumerate(node):
            yield f"{path}[{i}]", None, value


def _embeddings(body: dict[str, Any], model: str) -> Call:
    items = body.get("input")
    if isinstance(items, str):
        items = [items]
    if not isinstance(items, list) or not items or len(items) > 2048:
        raise bad_request("'input' must be a string or a list of 1-2048 strings", "input")
    size = 0
    texts: list[str] = []
    for item in items:
        if isinstance(item, str) and item:
            texts.append(item)
            size += len(item.encode()) + 2
        elif isinstance(item, int) and not isinstance(item, bool):
            size += 1
        elif isinstance(item, list) and item and all(type(t) is int for t in item):
            size += len(item) + 2
        else:
            raise bad_request("each 'input' item must be a non-empty string or token list", "input")
    encoding = body.get("encoding_format", "float")
    if encoding not in ("float", "base64"):
        raise bad_request("'encoding_format' must be 'float' or 'base64'", "encoding_format")
    text = "\n".join(texts)
    return Call(
        endpoint="embeddings",
        kind=ModelKind.EMBEDDING,
        model=model,
        body=body,
        stream=False,
        include_usage=False,
        max_completion=0,
        prompt_bound=size + PER_REQUEST_TOKENS,
        prompt_text=text,
        affinity=_affinity(body, {"content": text[:512]}),
    )


def _messages(messages: Any) -> tuple[str, int]:
    if not isinstance(messages, list) or not messages:
        raise bad_request("'messages' is required: a non-empty list of messages", "messages")
    parts: list[str] = []
    for i, message in enumerate(messages):
        if not isinstance(message, dict) or message.get("role") not in ROLES:
            raise bad_request(
                f"messages[{i}] needs a 'role' among {sorted(ROLES)}", f"messages[{i}].role"
            )
        check_tool_calls(message, i)
        content = message.get("content")
        if isinstance(content, str):
            parts.append(content)
        elif isinstance(content, list):
            for part in content:
                if not (isinstance(part, dict) and part.get("type") == "text"):
                    raise bad_request("only text content parts are supported", f"messages[{i}]")
                if not isinstance(part.get("text"), str):
                    raise bad_request("a text part needs 'text'", f"messages[{i}].content")
                parts.append(part["text"])
        elif content is not None or message["role"] != "assistant":
            raise bad_request(f"messages[{i}].content must be a string", f"messages[{i}].content")
    extra = json.dumps(
        [{k: v for k, v in m.items() if k != "content"} for m in messages], ensure_ascii=False
    )
    return "\n".join(parts), len(extra.encode()) + PER_MESSAGE_TOKENS * len(messages)


def _tools_overhead(tools: Any) -> int:
    """What tools add to a prompt: their JSON (a token is at least a byte) and the words
    a chat template puts around them."""
    if not tools:
        return 0
    return len(json.dumps(tools, ensure_ascii=False).encode()) + TOOLS_TEMPLATE_TOKENS


def _prompt(prompt: Any) -> str:
    if isinstance(prompt, str) and prompt:
        return prompt
    if isinstance(prompt, list) and prompt and all(isinstance(p, str) for p in prompt):
        if len(prompt) > 1:
            raise bad_request("send one prompt per request", "prompt")
        return str(prompt[0])
    raise bad_request("'prompt' is required: a non-empty string", "prompt")


def _bool(body: dict[str, Any], name: str) -> bool:
    value = body.get(name, False)
    if value is None:
        return False
    if not isinstance(value, bool):
        raise bad_request(f"'{name}' must be true or false", name)
    return value


def _int(body: dict[str, Any], name: str, low: int, high: int) -> int | None:
    value = body.get(name)
    if value is None:
        return None
    if type(value) is not int or not low <= value <= high:
        raise bad_request(f"'{name}' must be an integer between {low} and {high}", name)
    return value


def _number(body: dict[str, Any], name: str, low: float, high: float) -> None:
    value = body.get(name)
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, int | float) or not low <= value <= high:
        raise bad_request(f"'{name}' must be a number between {low} and {high}", name)


def _affinity(body: dict[str, Any], first: dict[str, Any]) -> str:
    user = body.get("user")
    if isinstance(user, str) and user:
        return user
    content = first.get("content")
    text = content if isinstance(content, str) else json.dumps(content)
    return hashlib.blake2b(text[:512].encode(), digest_size=8).hexdigest()


def check_model(call: Call, spec: ModelSpec) -> None:
    """A call that does not fit the model it names (kind, context length): a 400."""
    if spec.kind is not call.kind:
        route = "/v1/embeddings" if spec.kind is ModelKind.EMBEDDING else "/v1/chat/completions"
        raise bad_request(
            f"{spec.name!r} is a {spec.kind} model: call it on {route}", "model", "wrong_model_kind"
        )
    asked = call.body.get("max_tokens")
    if type(asked) is int and asked > spec.context_length:  # each choice has its own context
        raise bad_request(
            f"max_tokens exceeds the context length of {spec.name!r} ({spec.context_length})",
            "max_tokens",
            "context_length_exceeded",
        )
