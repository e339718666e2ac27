"""Request translation per engine (pure): capabilities, field checks, plans."""

from __future__ import annotations

import json
from typing import Any

import pytest

from suanwang.domain.serving import ReplicaView
from suanwang.gateway.capabilities import (
    CONSERVATIVE,
    ENGINES,
    PASSTHROUGH,
    SIMULATED,
    capabilities_of,
)
from suanwang.gateway.errors import GatewayError
from suanwang.gateway.schema import parse_call
from suanwang.gateway.translate import plan_for

CHAT = "smollm2-135m-instruct"
WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
    },
}
CLOCK = {"type": "function", "function": {"name": "get_time", "parameters": {"type": "object"}}}


def call_of(**fields: Any) -> Any:
    body = {"model": CHAT, "messages": [{"role": "user", "content": "hi"}], **fields}
    return parse_call("chat/completions", json.dumps(body).encode(), 64)


def refusal(fields: dict[str, Any], engine: str = "llama.cpp") -> GatewayError:
    with pytest.raises(GatewayError) as caught:
        plan_for(call_of(**fields), ENGINES[engine])
    assert caught.value.status == 400
    return caught.value


def test_every_catalogue_engine_has_a_row_and_simulated_replicas_use_the_simulator() -> None:
    for engine in ("llama.cpp", "vllm", "vllm-ascend", "sglang", "lmdeploy", "mindie"):
        assert ENGINES[engine].chat
    assert not ENGINES["sentence-transformers"].chat
    sim = ReplicaView("r", "d", CHAT, "vllm", "sim://r", None, simulated=True)
    assert capabilities_of(sim).engine == SIMULATED
    ext = ReplicaView("r", "d", CHAT, PASSTHROUGH, "https://api.example/v1", None)
    assert capabilities_of(ext).passthrough
    odd = ReplicaView("r", "d", CHAT, "brand-new-engine", "http://127.0.0.1:1", None)
    assert capabilities_of(odd) is CONSERVATIVE


def test_developer_role_and_content_parts_become_system_and_text() -> None:
    messages = [
        {"role": "developer", "content": "be brief"},
        {"role": "user", "content": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}]},
    ]
    plan = plan_for(call_of(messages=messages), ENGINES[SIMULATED])
    assert plan.body["messages"] == [
        {"role": "system", "content": "be brief"},
        {"role": "user", "content": "a\nb"},
    ]
    llama = plan_for(call_of(messages=messages), ENGINES["llama.cpp"]).body["messages"]
    assert llama[0]["role"] == "system"
    assert llama[1]["content"] == messages[1]["content"]  # llama-server takes text parts
    passthrough = plan_for(call_of(messages=messages), ENGINES[PASSTHROUGH])
    assert passthrough.body["messages"] == messages


def test_an_untouched_request_is_sent_as_parsed() -> None:
    call = call_of(temperature=0)
    assert plan_for(call, ENGINES["llama.cpp"]).body is call.body


def test_named_tool_choice_becomes_required_over_that_tool_where_only_auto_is_known() -> None:
    named = {"type": "function", "function": {"name": "get_weather"}}
    plan = plan_for(call_of(tools=[CLOCK, WEATHER], tool_choice=named), ENGINES["lmdeploy"])
    assert plan.body["tools"] == [WEATHER]
    assert plan.body["tool_choice"] == "required"
    native = plan_for(call_of(tools=[CLOCK, WEATHER], tool_choice=named), ENGINES["vllm"])
    assert native.body["tool_choice"] == named
    assert len(native.body["tools"]) == 2


def test_llama_cpp_gets_tools_as_a_json_schema_grammar() -> None:
    named = {"type": "function", "function": {"name": "get_weather"}}
    plan = plan_for(call_of(tools=[CLOCK, WEATHER], tool_choice=named), ENGINES["llama.cpp"])
    assert plan.tool_grammar
    assert "tools" not in plan.body
    assert "tool_choice" not in plan.body
    assert plan.body["messages"][0]["role"] == "system"
    assert "get_weather" in plan.body["messages"][0]["content"]
    schema = plan.body["response_format"]["json_schema"]["schema"]
    (only,) = schema["properties"]["tool_call"]["anyOf"]  # the named tool alone
    assert only["properties"]["name"] == {"const": "get_weather"}
    assert only["properties"]["arguments"] == WEATHER["function"]["parameters"]
    auto = plan_for(call_of(tools=[CLOCK, WEATHER]), ENGINES["llama.cpp"])
    branches = auto.body["response_format"]["json_schema"]["schema"]["anyOf"]
    assert len(branches[0]["properties"]["tool_call"]["anyOf"]) == 2
    assert branches[1]["required"] == ["response"]
    none = plan_for(call_of(tools=[WEATHER], tool_choice="none"), ENGINES["llama.cpp"])
    assert not none.tool_grammar
    assert "response_format" not in none.body
    fmt = {"type": "json_object"}
    with pytest.raises(GatewayError) as caught:
        plan_for(call_of(tools=[WEATHER], response_format=fmt), ENGINES["llama.cpp"])
    assert caught.value.param == "response_format"


def test_tools_on_an_engine_without_tool_calling_are_refused_naming_tools() -> None:
    error = refusal({"tools": [WEATHER]}, SIMULATED)
    assert (error.param, error.code) == ("tools", "unsupported_parameter")
    dropped = plan_for(call_of(tools=[WEATHER], tool_choice="none"), ENGINES[SIMULATED])
    assert "tools" not in dropped.body
    assert "tool_choice" not in dropped.body
    history = [
        {"role": "user", "content": "weather?"},
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {"id": "c1", "type": "function", "function": {"name": "f", "arguments": "{}"}}
            ],
        },
        {"role": "tool", "tool_call_id": "c1", "content": "sunny"},
    ]
    assert refusal({"messages": history}, SIMULATED).param == "messages[1]"
    assert plan_for(call_of(messages=history), ENGINES["vllm"]).body["messages"] == history
    as_text = plan_for(call_of(messages=history), ENGINES["llama.cpp"]).body["messages"]
    assert as_text[1:] == [{"role": "user", "content": "Result of f({}): sunny"}]
    again = plan_for(call_of(messages=history, tools=[WEATHER]), ENGINES["llama.cpp"])
    assert again.body["messages"][2:] == [
        {"role": "assistant", "content": '{"tool_call": {"name": "f", "arguments": {}}}'},
        {"role": "user", "content": "Result of f({}): sunny"},
    ]


def test_json_schema_and_logprobs_refused_where_the_engine_cannot_honour_them() -> None:
    fmt = {"type": "json_schema", "json_schema": {"name": "x", "schema": {"type": "object"}}}
    assert refusal({"response_format": fmt}, SIMULATED).param == "response_format"
    assert plan_for(call_of(response_format=fmt), ENGINES["llama.cpp"]).body["response_format"]
    assert refusal({"logprobs": True}, SIMULATED).param == "logprobs"
    assert refusal({"logprobs": True, "top_logprobs": 2}, "mindie").param == "logprobs"


def test_n_becomes_separate_calls_unstreamed_and_is_refused_streamed() -> None:
    plan = plan_for(call_of(n=3), ENGINES[SIMULATED])
    assert plan.calls == 3
    assert "n" not in plan.body
    assert plan_for(call_of(n=3), ENGINES["vllm"]).calls == 1
    llama = plan_for(call_of(n=3), ENGINES["llama.cpp"])  # its usage counts one choice
    assert (llama.calls, "n" in llama.body) == (3, False)
    streamed = plan_for(call_of(n=3, stream=True), ENGINES["llama.cpp"])
    assert (streamed.calls, streamed.body["n"]) == (1, 3)
    error = refusal({"n": 2, "stream": True}, SIMULATED)
    assert (error.param, error.code) == ("n", "unsupported_parameter")


@pytest.mark.parametrize(
    ("fields", "param"),
    [
        ({"presence_penalty": 5}, "presence_penalty"),
        ({"frequency_penalty": -2.5}, "frequency_penalty"),
        ({"user": 42}, "user"),
        ({"seed": "1"}, "seed"),
        ({"stop": ["a", "b", "c", "d", "e"]}, "stop"),
        ({"logprobs": "yes"}, "logprobs"),
        ({"top_logprobs": 3}, "top_logprobs"),
        ({"tools": {"name": "f"}}, "tools"),
        ({"tools": [{"type": "function", "function": {"name": "bad name"}}]}, "tools[0].function"),
        ({"tools": [WEATHER], "tool_choice": "sometimes"}, "tool_choice"),
        ({"tool_choice": "required"}, "tool_choice"),
        (
            {"tools": [WEATHER], "tool_choice": {"type": "function", "function": {"name": "f"}}},
            "tool_choice",
        ),
        ({"response_format": {"type": "yaml"}}, "response_format"),
        ({"response_format": {"type": "json_schema"}}, "response_format.json_schema"),
        ({"parallel_tool_calls": "no"}, "parallel_tool_calls"),
        (
            {"messages": [{"role": "assistant", "content": None, "tool_calls": [{"id": "c"}]}]},
            "messages[0].tool_calls[0]",
        ),
        ({"messages": [{"role": "tool", "content": "x"}]}, "messages[0].tool_call_id"),
    ],
)
def test_fields_openai_refuses_are_400_naming_the_param(fields: dict[str, Any], param: str) -> None:
    with pytest.raises(GatewayError) as caught:
        call_of(**fields)
    assert (caught.value.status, caught.value.param) == (400, param)


def test_tools_count_toward_the_prompt_bound() -> None:
    plain, with_tools = call_of(), call_of(tools=[WEATHER])
    assert with_tools.prompt_bound >= plain.prompt_bound + len(json.dumps([WEATHER])) + 512


@pytest.mark.parametrize("field", ["grammar", "json_schema"])
def test_llama_cpp_extensions_that_would_make_it_answer_500_are_refused(field: str) -> None:
    error = refusal({field: 'root ::= "a"'})
    assert (error.param, error.code) == (field, "unsupported_parameter")
    assert plan_for(call_of(**{field: "x"}), ENGINES["vllm"]).body[field] == "x"
