"""Suite R11, clients: the `openai` SDK and LangChain through the gateway against the real
engine (SmolLM2 on llama-server, the session's ``live_engines`` stack), and engine
refusals and long prefills that never take the shared replica out.

Every call is small (``max_tokens`` of a few dozen) and at temperature 0: SmolLM2 on two
cores serves the whole session.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import httpx
import jsonschema
import openai
import pytest
from gateway_stack import free_port, wait_up
from live_engines import CHAT, UVICORN, LiveEngines
from pydantic import BaseModel

pytestmark = pytest.mark.timeout(600)

CITY = {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}
WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "The current weather in a city",
        "parameters": CITY,
    },
}
CLOCK = {
    "type": "function",
    "function": {
        "name": "get_time",
        "description": "The current time in a time zone",
        "parameters": {"type": "object", "properties": {"zone": {"type": "string"}}},
    },
}
NAMED = {"type": "function", "function": {"name": "get_weather"}}
ASK = [{"role": "user", "content": "What is the weather in Paris?"}]
OVER_LONG = "hello " * 12_000
"""About 12,000 tokens: more than the model's context (8,192)."""


class City(BaseModel):
    name: str
    country: str


def client(live: LiveEngines, tenant: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=live.gateway_url, api_key=live.tenant(tenant), max_retries=0)


def second_turn(first: Any) -> list[Any]:
    """The conversation after the model's tool call and the tool's answer."""
    call = first.tool_calls[0]
    assistant = {
        "role": "assistant",
        "content": None,
        "tool_calls": [
            {
                "id": call.id,
                "type": "function",
                "function": {"name": call.function.name, "arguments": call.function.arguments},
            }
        ],
    }
    answer = {"role": "tool", "tool_call_id": call.id, "content": '{"celsius": 21, "sky": "clear"}'}
    return [*ASK, assistant, answer]


def check_weather_call(message: Any) -> None:
    (call,) = message.tool_calls
    assert call.type == "function"
    assert call.function.name == "get_weather"
    assert call.id
    jsonschema.validate(json.loads(call.function.arguments), CITY)


def test_two_turn_tool_call_with_the_openai_sdk(live_engines: LiveEngines) -> None:
    sdk = client(live_engines, "r11-tools")
    tools: Any = [CLOCK, WEATHER]
    first = sdk.chat.completions.create(
        model=CHAT, messages=ASK, tools=tools, tool_choice=NAMED, temperature=0, max_tokens=64
    )
    check_weather_call(first.choices[0].message)
    assert first.choices[0].finish_reason == "tool_calls"
    final = sdk.chat.completions.create(
        model=CHAT,
        messages=second_turn(first.choices[0].message),
        tools=tools,
        tool_choice="none",
        temperature=0,
        max_tokens=32,
    )
    assert final.choices[0].message.content
    assert final.usage is not None
    assert final.usage.completion_tokens > 0
    assert final.choices[0].message.tool_calls is None


def test_streamed_tool_call_assembled_by_the_sdks_stream_helper(live_engines: LiveEngines) -> None:
    sdk = client(live_engines, "r11-tools-stream")
    tools: Any = [CLOCK, WEATHER]
    with sdk.chat.completions.stream(
        model=CHAT, messages=ASK, tools=tools, tool_choice=NAMED, temperature=0, max_tokens=64
    ) as stream:
        first = stream.get_final_completion()
    check_weather_call(first.choices[0].message)
    with sdk.chat.completions.stream(
        model=CHAT,
        messages=second_turn(first.choices[0].message),
        tools=tools,
        tool_choice="none",
        temperature=0,
        max_tokens=64,
        stop=[".", "\n"],  # the helper raises on finish_reason "length": end on a sentence
        stream_options={"include_usage": True},
    ) as stream:
        final = stream.get_final_completion()
    assert final.choices[0].message.content
    assert final.usage is not None
    assert final.usage.completion_tokens > 0


def test_langchain_bind_tools_round_trip_and_structured_output(live_engines: LiveEngines) -> None:
    from langchain_core.messages import HumanMessage, ToolMessage
    from langchain_core.tools import tool
    from langchain_openai import ChatOpenAI

    @tool
    def get_weather(city: str) -> str:
        """The current weather in a city."""
        return f"21 C and clear in {city}"

    llm = ChatOpenAI(
        model=CHAT,
        base_url=live_engines.gateway_url,
        api_key=live_engines.tenant("r11-langchain"),  # type: ignore[arg-type]
        temperature=0,
        max_tokens=64,  # type: ignore[call-arg]
        max_retries=0,
    )
    messages: list[Any] = [HumanMessage("What is the weather in Paris?")]
    asked = llm.bind_tools([get_weather], tool_choice="get_weather").invoke(messages)
    (call,) = asked.tool_calls  # type: ignore[attr-defined]
    assert call["name"] == "get_weather"
    jsonschema.validate(call["args"], CITY)
    messages += [asked, ToolMessage(get_weather.invoke(call["args"]), tool_call_id=call["id"])]
    answer = llm.invoke(messages)
    assert isinstance(answer.content, str)
    assert answer.content
    city = llm.with_structured_output(City).invoke("Name a city in France.")
    assert isinstance(city, City)


def test_parse_with_a_pydantic_model(live_engines: LiveEngines) -> None:
    sdk = client(live_engines, "r11-parse")
    done = sdk.chat.completions.parse(
        model=CHAT,
        messages=[{"role": "user", "content": "Name a city in Japan."}],
        response_format=City,
        temperature=0,
        max_tokens=64,
    )
    parsed = done.choices[0].message.parsed
    assert isinstance(parsed, City)
    assert parsed.name


def test_n_developer_role_and_content_parts(live_engines: LiveEngines) -> None:
    sdk = client(live_engines, "r11-shapes")
    three = sdk.chat.completions.create(
        model=CHAT, messages=ASK, n=3, temperature=0.9, max_tokens=8
    )
    assert [c.index for c in three.choices] == [0, 1, 2]
    assert all(c.message.content for c in three.choices)
    assert three.usage is not None
    assert three.usage.completion_tokens >= 3
    shaped = sdk.chat.completions.create(
        model=CHAT,
        messages=[
            {"role": "developer", "content": "Answer in one short sentence."},
            {"role": "user", "content": [{"type": "text", "text": "Say hello."}]},
        ],
        temperature=0,
        max_tokens=16,
    )
    assert shaped.choices[0].message.content


@pytest.mark.parametrize("stream", [False, True])
def test_an_over_long_prompt_is_context_length_exceeded_billed_zero(
    live_engines: LiveEngines, stream: bool
) -> None:
    tenant = f"r11-long-{'stream' if stream else 'plain'}"
    sdk = client(live_engines, tenant)
    with pytest.raises(openai.BadRequestError) as caught:
        sdk.chat.completions.create(
            model=CHAT,
            messages=[{"role": "user", "content": OVER_LONG}],
            max_tokens=8,
            stream=stream,
        )
    assert caught.value.status_code == 400
    assert caught.value.code == "context_length_exceeded"
    (row,) = live_engines.ledger(tenant, count=1)
    assert (row["prompt_tokens"], row["completion_tokens"], row["status"]) == (0, 0, 400)


def metric(text: str, name: str, **labels: str) -> float:
    """The sum of a metric's samples whose labels include ``labels``."""
    total = 0.0
    for line in text.splitlines():
        if line.startswith(name + "{") and all(f'{k}="{v}"' in line for k, v in labels.items()):
            total += float(line.rsplit(" ", 1)[1])
    return total


LOAD = """
import asyncio, json, sys
import httpx

async def main(plan):
    async def chat(url, key, content, n):
        body = {"model": plan["model"], "messages": [{"role": "user", "content": content}]}
        body["max_tokens"] = n
        headers = {"authorization": "Bearer " + key}
        async with httpx.AsyncClient(base_url=url, timeout=600) as http:
            response = await http.post("/chat/completions", json=body, headers=headers)
        return [response.status_code, response.text[:300]]
    jobs = [chat(*job) for job in plan["jobs"]]
    print(json.dumps(await asyncio.gather(*jobs)))

asyncio.run(main(json.loads(sys.stdin.read())))
"""
"""Sends the test's requests from another process, so that this one (which runs the live
stack's control loop and health checks) is not the one under load."""


@contextmanager
def gateway_with_read_timeout(live: LiveEngines, read_timeout_s: float) -> Iterator[str]:
    """One more gateway process on the stack's database, with a short engine read timeout."""
    port = free_port()
    log_path = live.stack.tmp / f"gateway-short-{port}.log"
    env = {**live.stack.env, "SUANWANG_GATEWAY_READ_TIMEOUT_S": str(read_timeout_s)}
    factory = "suanwang.bootstrap:gateway_app_from_env"
    with log_path.open("ab") as log:
        proc = subprocess.Popen(
            [*UVICORN, factory, "--port", str(port), "--log-level", "warning"],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:
        wait_up(f"http://127.0.0.1:{port}/health", proc, log_path, timeout_s=120)
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.terminate()
        proc.wait(30)


def test_engine_refusals_and_long_prefills_never_eject_the_replica(
    live_engines: LiveEngines,
) -> None:
    """50 over-long prompts the engine refuses and 3 long prefills that time out (a 0.5 s
    read timeout on a second gateway), while another tenant sends 16 short chats: every
    good chat succeeds, the replica stays ready and is never ejected, nothing is billed
    for the refused or timed-out requests."""
    live = live_engines
    replica = live.replica().id
    gateway = live.gateway_url.removesuffix("/v1")
    hostile, patient = live.tenant("r11-hostile"), live.tenant("r11-prefill")
    good = live.tenant("r11-good")
    long_prefill = "word " * 3_000  # fits the context; seconds of prefill on 2 cores
    with gateway_with_read_timeout(live, 0.5) as short:
        jobs = [
            *([live.gateway_url, hostile, OVER_LONG, 8] for _ in range(50)),
            *([short + "/v1", patient, long_prefill + str(i), 4] for i in range(3)),
            *([live.gateway_url, good, f"Say hi to {i}.", 8] for i in range(16)),
        ]
        plan = json.dumps({"model": CHAT, "jobs": jobs})
        run = subprocess.run(
            [sys.executable, "-c", LOAD], input=plan, capture_output=True, text=True, timeout=600
        )
        assert run.returncode == 0, run.stderr
        results = json.loads(run.stdout)
        short_metrics = httpx.get(short + "/metrics").text
    statuses = [status for status, _ in results]
    assert statuses[:50] == [400] * 50, results[:50]
    assert {json.loads(text)["error"]["code"] for _, text in results[:50]} == {
        "context_length_exceeded"
    }
    assert statuses[50:53] == [504] * 3, results[50:53]
    assert statuses[53:] == [200] * 16, results[53:]
    assert live.ready()
    text = httpx.get(gateway + "/metrics").text
    for where in (text, short_metrics):
        assert metric(where, "suanwang_gateway_replica_ejections_total", replica=replica) == 0
        assert metric(where, "suanwang_gateway_failovers_total", model=CHAT) == 0
    assert metric(text, "suanwang_gateway_engine_refusals_total", model=CHAT) >= 50
    rows = live.ledger("r11-hostile", count=50)
    assert {(r["prompt_tokens"], r["completion_tokens"]) for r in rows} == {(0, 0)}
    assert {r["prompt_tokens"] for r in live.ledger("r11-prefill", count=3)} == {0}
