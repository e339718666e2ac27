"""Non-streamed answers: merging the engine calls of one request, counting their tokens."""

from __future__ import annotations

from typing import Any

from suanwang.gateway.errors import GatewayError
from suanwang.gateway.metering import estimate_tokens
from suanwang.gateway.schema import Call


def merge_choices(answers: list[Any]) -> Any:
    """One answer from several single-choice answers (``n`` made of n engine calls): the
    choices renumbered, usage with the prompt once and the completions summed (as OpenAI
    reports ``n``: the prompt is billed once)."""
    first = answers[0]
    if not all(isinstance(a, dict) for a in answers):
        raise GatewayError(502, "the engine answered an unexpected shape", code="upstream_error")
    choices: list[Any] = []
    completion = 0
    for answer in answers:
        for choice in answer.get("choices") or []:
            if isinstance(choice, dict):
                choices.append({**choice, "index": len(choices)})
        usage = answer.get("usage")
        used = usage.get("completion_tokens") if isinstance(usage, dict) else None
        completion += used if type(used) is int else 0
    usage = first.get("usage")
    merged = {**first, "choices": choices}
    if isinstance(usage, dict) and type(usage.get("prompt_tokens")) is int:
        prompt = usage["prompt_tokens"]
        merged["usage"] = {
            "prompt_tokens": prompt,
            "completion_tokens": completion,
            "total_tokens": prompt + completion,
        }
    return merged


def has_prompt(usage: Any, call: Call) -> bool:
    prompt = usage.get("prompt_tokens") if isinstance(usage, dict) else None
    return type(prompt) is int and 0 < prompt <= call.prompt_bound


def content_tokens_of(answer: Any) -> int:
    """About how many tokens an answer's choices hold: content, text and tool calls."""
    if not isinstance(answer, dict):
        return 0
    texts: list[str] = []
    for choice in answer.get("choices") or []:
        if isinstance(choice, dict):
            message = choice.get("message")
            text = message.get("content") if isinstance(message, dict) else choice.get("text")
            if isinstance(text, str):
                texts.append(text)
            calls = message.get("tool_calls") if isinstance(message, dict) else None
            for call in calls if isinstance(calls, list) else []:
                function = call.get("function") if isinstance(call, dict) else None
                if isinstance(function, dict):
                    texts += [str(function.get("name", "")), str(function.get("arguments", ""))]
    return estimate_tokens("".join(texts)) if texts else 0
