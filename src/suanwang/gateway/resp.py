"""A lean Redis client for the gateway's two hot Lua scripts (reserve and settle).

redis-py (without hiredis) spent ~0.4 ms of CPU per command in its pool, retry and parser
layers, twice per request; the scripts themselves take microseconds in Redis. This client
does only what the hot path needs: ``EVALSHA`` (``EVAL`` once when Redis does not know
the script) over ONE connection per process, pipelined: the commands of one turn of the
event loop go out in one write and replies, which Redis sends in order, resolve the
callers' futures in order (RESP2, parsed straight from the protocol's buffer). A lost
connection fails the calls in flight with :class:`ConnectionError`; the next call
reconnects. A call that gets no reply
within ``timeout_s`` raises :class:`TimeoutError` and drops the connection, so a reply
can never be matched to the wrong caller.

Only plain ``redis://[user:password@]host[:port][/db]`` URLs are handled
(:func:`lean_scripts_for`); TLS and unix sockets stay on redis-py.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections import deque
from collections.abc import Sequence
from typing import Any, cast
from urllib.parse import unquote, urlsplit

_INCOMPLETE: Any = object()


class RespError(Exception):
    """An error reply from Redis (``-ERR …``, ``-NOSCRIPT …``)."""


def encode(*args: str | bytes | int | float) -> bytes:
    """One command in RESP (an array of bulk strings)."""
    out = [b"*%d\r\n" % len(args)]
    for arg in args:
        data = arg if isinstance(arg, bytes) else str(arg).encode()
        out += (b"$%d\r\n" % len(data), data, b"\r\n")
    return b"".join(out)


def parse(buf: bytearray | bytes, pos: int) -> tuple[Any, int]:
    """The reply starting at ``pos`` and where it ends, or ``(_INCOMPLETE, pos)``."""
    eol = buf.find(b"\r\n", pos)
    if eol < 0:
        return _INCOMPLETE, pos
    kind, line = buf[pos], bytes(buf[pos + 1 : eol])
    end = eol + 2
    if kind == 58:  # ':' integer
        return int(line), end
    if kind == 36:  # '$' bulk string
        size = int(line)
        if size < 0:
            return None, end
        if len(buf) < end + size + 2:
            return _INCOMPLETE, pos
        return bytes(buf[end : end + size]), end + size + 2
    if kind == 42:  # '*' array
        count = int(line)
        if count < 0:
            return None, end
        items = []
        for _ in range(count):
            item, end = parse(buf, end)
            if item is _INCOMPLETE:
                return _INCOMPLETE, pos
            items.append(item)
        return items, end
    if kind == 43:  # '+' simple string
        return line.decode(), end
    if kind == 45:  # '-' error
        return RespError(line.decode()), end
    raise ValueError(f"unexpected RESP reply type {chr(kind)!r}")


class _Protocol(asyncio.Protocol):
    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.waiting: deque[asyncio.Future[Any]] = deque()
        self._buf = bytearray()
        self._out: list[bytes] = []

    def send(self, command: bytes, future: asyncio.Future[Any]) -> None:
        """Queue ``command``; everything queued in one turn of the loop goes in one write."""
        self.waiting.append(future)
        self._out.append(command)
        if len(self._out) == 1:
            future.get_loop().call_soon(self._flush)

    def _flush(self) -> None:
        out, self._out = self._out, []
        if self.transport is not None:
            self.transport.write(b"".join(out))

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass

    def data_received(self, data: bytes) -> None:
        buf = self._buf
        buf += data
        pos = 0
        while self.waiting:
            try:
                reply, end = parse(buf, pos)
            except ValueError as exc:
                self.fail(ConnectionError(f"Redis sent a malformed reply: {exc}"))
                return
            if reply is _INCOMPLETE:
                break
            pos = end
            future = self.waiting.popleft()
            if not future.done():
                future.set_result(reply)
        del buf[:pos]

    def connection_lost(self, exc: Exception | None) -> None:
        self.fail(ConnectionError(f"Redis connection lost: {exc or 'closed'}"))

    def fail(self, error: Exception) -> None:
        """Fail every call in flight and drop the connection (no later reply may match)."""
        transport, self.transport = self.transport, None
        self._out = []
        while self.waiting:
            future = self.waiting.popleft()
            if not future.done():
                future.set_exception(error)
        if transport is not None:
            transport.close()


class LeanScripts:
    """Runs Lua scripts on one pipelined connection; close with :meth:`aclose`."""

    def __init__(
        self,
        host: str,
        port: int = 6379,
        db: int = 0,
        auth: tuple[str, str] | None = None,
        timeout_s: float = 5.0,
    ) -> None:
        self._address = (host, port)
        self._hello: list[bytes] = []
        if auth is not None:
            self._hello.append(encode("AUTH", *auth) if auth[0] else encode("AUTH", auth[1]))
        if db:
            self._hello.append(encode("SELECT", db))
        self._timeout_s = timeout_s
        self._protocol: _Protocol | None = None
        self._connecting = asyncio.Lock()
        self._shas: dict[str, str] = {}

    async def run(self, script: str, keys: Sequence[str], args: Sequence[Any]) -> Any:
        """The script's reply (EVALSHA, falling back to EVAL); RespError on an error reply."""
        sha = self._shas.get(script)
        if sha is None:
            sha = self._shas[script] = hashlib.sha1(script.encode()).hexdigest()
        try:
            return await self._call(encode("EVALSHA", sha, len(keys), *keys, *args))
        except RespError as error:
            if not str(error).startswith("NOSCRIPT"):
                raise
        return await self._call(encode("EVAL", script, len(keys), *keys, *args))

    async def _call(self, command: bytes) -> Any:
        protocol = self._protocol
        if protocol is None or protocol.transport is None:
            protocol = await self._connect()
        assert protocol.transport is not None
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        protocol.send(command, future)
        try:
            async with asyncio.timeout(self._timeout_s):
                reply = await future
        except TimeoutError:
            protocol.fail(ConnectionError("Redis did not answer in time"))
            raise
        if isinstance(reply, RespError):
            raise reply
        return reply

    async def _connect(self) -> _Protocol:
        async with self._connecting:
            if self._protocol is not None and self._protocol.transport is not None:
                return self._protocol
            loop = asyncio.get_running_loop()
            async with asyncio.timeout(self._timeout_s):
                _, protocol = await loop.create_connection(_Protocol, *self._address)
            self._protocol = protocol
            for command in self._hello:
                await self._call(command)
            return protocol

    async def aclose(self) -> None:
        if self._protocol is not None and self._protocol.transport is not None:
            self._protocol.transport.close()
        self._protocol = None


def lean_scripts_for(url: str, timeout_s: float = 5.0) -> LeanScripts | None:
    """A :class:`LeanScripts` for a plain ``redis://`` URL, else None (use redis-py)."""
    parts = urlsplit(url)
    if parts.scheme != "redis" or not parts.hostname or parts.query:
        return None
    db = parts.path.strip("/")
    if db and not db.isdigit():
        return None
    auth = None
    if parts.password is not None:
        auth = (unquote(parts.username or ""), unquote(parts.password))
    return LeanScripts(parts.hostname, parts.port or 6379, int(db or 0), auth, timeout_s)
