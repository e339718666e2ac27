"""The lean Redis client: RESP parsing, pipelined replies in order, failures, URLs."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from suanwang.gateway.resp import LeanScripts, RespError, encode, lean_scripts_for, parse


def wire(value: Any) -> bytes:
    """How Redis (RESP2) sends ``value``."""
    if isinstance(value, int):
        return b":%d\r\n" % value
    if isinstance(value, bytes):
        return b"$%d\r\n%s\r\n" % (len(value), value)
    if value is None:
        return b"$-1\r\n"
    return b"*%d\r\n" % len(value) + b"".join(wire(v) for v in value)


replies = st.recursive(
    st.one_of(st.integers(-(2**63), 2**63 - 1), st.binary(max_size=20), st.none()),
    lambda inner: st.lists(inner, max_size=4),
    max_leaves=12,
)


@given(replies, st.integers(0, 40))
def test_a_reply_parses_back_and_is_incomplete_until_all_of_it_arrived(
    reply: Any, cut: int
) -> None:
    data = wire(reply) + b"+OK\r\n"
    first, end = parse(data, 0)
    assert first == reply
    assert parse(data, end) == ("OK", len(data))
    if cut < end:
        assert parse(data[:cut], 0)[1] == 0  # incomplete: nothing consumed


def test_errors_and_encoding() -> None:
    error, _ = parse(b"-NOSCRIPT No matching script\r\n", 0)
    assert isinstance(error, RespError)
    assert str(error).startswith("NOSCRIPT")
    assert encode("EVALSHA", "ab", 1, "k", 2.5) == (
        b"*5\r\n$7\r\nEVALSHA\r\n$2\r\nab\r\n$1\r\n1\r\n$1\r\nk\r\n$3\r\n2.5\r\n"
    )
    with pytest.raises(ValueError, match="unexpected RESP"):
        parse(b"?x\r\n", 0)


class FakeRedis:
    """Answers EVALSHA with NOSCRIPT until it saw the script by EVAL; EVAL returns the first
    ARGV as an integer after ``delay_s`` (replies stay in order, as in Redis)."""

    def __init__(self, delay_s: float = 0.0) -> None:
        self.delay_s = delay_s
        self.known = False
        self.commands: list[list[bytes]] = []
        self.handlers: list[asyncio.Task[None]] = []

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self.handlers.append(task)
        try:
            while True:
                count = int((await reader.readline())[1:])
                args = []
                for _ in range(count):
                    size = int((await reader.readline())[1:])
                    args.append((await reader.readexactly(size + 2))[:-2])
                self.commands.append(args)
                if args[0] == b"EVALSHA" and not self.known:
                    writer.write(b"-NOSCRIPT No matching script\r\n")
                    continue
                self.known = True
                await asyncio.sleep(self.delay_s)
                keys = int(args[2])
                writer.write(wire(int(args[3 + keys])))
        except (asyncio.IncompleteReadError, ValueError, ConnectionError):
            pass
        finally:
            writer.close()


async def with_fake(fake: FakeRedis, scenario: Any) -> Any:
    server = await asyncio.start_server(fake.handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    client = LeanScripts("127.0.0.1", port, timeout_s=0.5)
    try:
        return await scenario(client)
    finally:
        await client.aclose()
        server.close()
        await server.wait_closed()
        await asyncio.gather(*fake.handlers)


def test_concurrent_calls_share_one_connection_and_get_their_own_replies() -> None:
    fake = FakeRedis()

    async def scenario(client: LeanScripts) -> list[Any]:
        return list(await asyncio.gather(*(client.run("return 1", ["k"], [i]) for i in range(50))))

    assert asyncio.run(with_fake(fake, scenario)) == list(range(50))
    assert len(fake.handlers) == 1
    verbs = [c[0] for c in fake.commands]
    assert verbs.count(b"EVAL") >= 1  # loaded once NOSCRIPT was seen
    assert verbs.count(b"EVALSHA") >= 49


def test_a_call_without_a_reply_times_out_and_the_next_call_reconnects() -> None:
    fake = FakeRedis(delay_s=0.8)

    async def scenario(client: LeanScripts) -> int:
        with pytest.raises(TimeoutError):
            await client.run("return 1", [], [7])
        fake.delay_s = 0.0
        return int(await client.run("return 1", [], [8]))

    assert asyncio.run(with_fake(fake, scenario)) == 8
    assert len(fake.handlers) == 2


def test_urls() -> None:
    assert lean_scripts_for("redis://127.0.0.1:6379/0") is not None
    assert lean_scripts_for("redis://:secret@redis.internal/3") is not None
    assert lean_scripts_for("rediss://redis.internal:6380/0") is None
    assert lean_scripts_for("unix:///tmp/redis.sock") is None
