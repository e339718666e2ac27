"""What each inference engine accepts of OpenAI's chat API: a pure table.

The gateway translates a request into what the replica's engine accepts, or refuses it
with a 400 naming the ``param`` (:mod:`.translate`). One row per engine name as the
catalogue spells it (``models.yaml``); replicas on simulated clusters are served by the
simulated engine whatever engine their deployment names; ``openai-compatible`` (an
external endpoint an operator registered) gets the request unchanged.

Sources: llama.cpp's ``llama-server`` run with ``--jinja`` (read in its source and tried):
tools only through a chat template that supports them (SmolLM2's does not: the tools are
dropped and the model answers in prose, so the gateway uses a grammar),
``response_format`` json_schema through its JSON-schema-to-grammar, ``logprobs``;
``tool_choice`` only as the strings ``auto``/``none``/``required`` (an object silently
becomes ``auto``); ``n`` streamed, while
unstreamed its usage counts only the first choice, so the gateway makes n calls. vLLM and
SGLang's OpenAI servers: tool parsers and guided decoding (the deployment must be launched
with tool calling on). The embedding servers have no chat at all. Every engine but a
passthrough gets ``developer`` as ``system``: chat templates of open models know
``system``, and a template that renders an unknown role prints it as text.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from suanwang.domain.external import OPENAI_COMPATIBLE
from suanwang.domain.serving import ReplicaView

PASSTHROUGH = OPENAI_COMPATIBLE
SIMULATED = "simulated"


@dataclass(frozen=True, slots=True)
class Capabilities:
    """What one engine accepts natively (False: the gateway translates or refuses)."""

    engine: str
    passthrough: bool = False
    """Forward the request as the client sent it (an OpenAI-compatible service)."""
    chat: bool = True
    developer_role: bool = False
    content_parts: bool = False
    """Text content parts (``[{"type": "text", "text": ...}]``); else joined to a string."""
    tools: bool = False
    """Tool calling through the model's chat template (the engine parses the calls)."""
    tools_by_grammar: bool = False
    """Else tool calling through a JSON-schema grammar set up by :mod:`.tool_grammar`."""
    named_tool_choice: bool = False
    """``tool_choice: {"type": "function", ...}``; else only auto/none/required."""
    json_schema: bool = False
    json_object: bool = False
    n: bool = False
    """Several choices in one call, with usage counting all of them; else the gateway makes
    n calls and merges them (not streamed)."""
    n_stream: bool = False
    """Several choices in one stream (each choice's usage chunk is summed by the gateway)."""
    logprobs: bool = False
    refused_fields: frozenset[str] = frozenset()
    """Engine extensions a caller may not send (they bypass the gateway's checks)."""


_VLLM = Capabilities(
    "vllm",
    content_parts=True,
    tools=True,
    named_tool_choice=True,
    json_schema=True,
    json_object=True,
    n=True,
    n_stream=True,
    logprobs=True,
)

ENGINES: dict[str, Capabilities] = {
    "llama.cpp": Capabilities(
        "llama.cpp",
        content_parts=True,
        tools_by_grammar=True,  # templates without tools (SmolLM2's) drop them silently
        json_schema=True,
        json_object=True,
        n_stream=True,  # unstreamed, its usage counts the first choice only
        logprobs=True,
        # its own structured output: with response_format (ours, for tools) it answers 500
        # ("Cannot use both json_schema and grammar"), which would count against the replica
        refused_fields=frozenset({"grammar", "json_schema"}),
    ),
    "vllm": _VLLM,
    "vllm-ascend": replace(_VLLM, engine="vllm-ascend"),
    "sglang": replace(_VLLM, engine="sglang"),
    "lmdeploy": Capabilities(
        "lmdeploy", tools=True, json_schema=True, json_object=True, n=False, logprobs=True
    ),
    "mindie": Capabilities("mindie", tools=True),
    "sentence-transformers": Capabilities("sentence-transformers", chat=False),
    "infinity": Capabilities("infinity", chat=False),
    SIMULATED: Capabilities(SIMULATED),
    PASSTHROUGH: Capabilities(
        PASSTHROUGH,
        passthrough=True,
        developer_role=True,
        content_parts=True,
        tools=True,
        named_tool_choice=True,
        json_schema=True,
        json_object=True,
        n=True,
        n_stream=True,
        logprobs=True,
    ),
}
"""Engines by the name the catalogue and deployments use."""

CONSERVATIVE = Capabilities("unknown")
"""An engine not in the table: plain text chat; everything else translated or refused."""


def capabilities_of(replica: ReplicaView) -> Capabilities:
    """The engine that really answers ``replica``'s requests."""
    if replica.simulated or replica.base_url.startswith("sim://"):
        return ENGINES[SIMULATED]
    return ENGINES.get(replica.engine, CONSERVATIVE)
