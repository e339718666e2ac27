"""A lean HTTP/1.1 keep-alive client for engines on ``http://`` (the gateway's hot path).

httpx costs a few CPU milliseconds per request on a busy 2-core machine; this client does
only what the gateway needs (POST a JSON body, read a Content-Length or chunked answer,
optionally line by line) over pooled asyncio streams, and raises httpx's exception types
so the failover logic treats both clients alike. Responses expose the part of
``httpx.Response`` the proxy uses: ``status_code``, ``aread``, ``aiter_lines``, ``aclose``.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable
from urllib.parse import urlsplit

import httpx

MAX_IDLE_PER_HOST = 256
Conn = tuple[asyncio.StreamReader, asyncio.StreamWriter]


class Http11Response:
    """One answer; give the connection back to the pool by reading it to the end."""

    def __init__(
        self,
        pool: Http11Pool,
        key: tuple[str, int],
        conn: Conn,
        status: int,
        headers: dict[bytes, bytes],
        read_s: float,
    ) -> None:
        self.status_code = status
        self._pool, self._key, self._conn = pool, key, conn
        self._headers = headers
        self._read_s = read_s
        self._done = False
        self._reusable = headers.get(b"connection", b"").lower() != b"close"

    async def aiter_raw(self) -> AsyncIterator[bytes]:
        reader = self._conn[0]
        try:
            length = self._headers.get(b"content-length")
            if length is not None:
                yield await self._io(reader.readexactly(int(length)))
            elif self._headers.get(b"transfer-encoding", b"").lower() == b"chunked":
                while True:
                    size = int((await self._io(reader.readline())).split(b";")[0].strip(), 16)
                    data = await self._io(reader.readexactly(size + 2))
                    if size == 0:
                        break
                    yield data[:-2]
            else:
                self._reusable = False
                while chunk := await self._io(reader.read(65536)):
                    yield chunk
        except (asyncio.IncompleteReadError, ConnectionError, ValueError) as exc:
            self._reusable = False
            raise httpx.RemoteProtocolError(f"engine connection broke: {exc}") from exc
        self._finish()

    async def aread(self) -> bytes:
        return b"".join([chunk async for chunk in self.aiter_raw()])

    async def aiter_lines(self) -> AsyncIterator[str]:
        pending = b""
        async for chunk in self.aiter_raw():
            pending += chunk
            *lines, pending = pending.split(b"\n")
            for line in lines:
                yield line.rstrip(b"\r").decode()
        if pending:
            yield pending.decode()

    async def aclose(self) -> None:
        if not self._done:
            self._reusable = False
            self._finish()

    async def _io(self, awaitable: Awaitable[bytes]) -> bytes:
        try:
            async with asyncio.timeout(self._read_s):
                return await awaitable
        except TimeoutError as exc:
            self._reusable = False
            raise httpx.ReadTimeout("engine read timed out") from exc

    def _finish(self) -> None:
        if self._done:
            return
        self._done = True
        self._pool.release(self._key, self._conn, self._reusable)


class Http11Pool:
    """Idle keep-alive connections per (host, port)."""

    def __init__(self, connect_s: float, read_s: float) -> None:
        self._connect_s = connect_s
        self._read_s = read_s
        self._idle: dict[tuple[str, int], list[Conn]]
        self._idle = {}

    async def post(
        self, url: str, body: bytes, headers: dict[str, str], *, read_s: float | None = None
    ) -> Http11Response:
        """Send ``body``; return once the status line and headers are read."""
        parts = urlsplit(url)
        host, port = parts.hostname or "", parts.port or 80
        key = (host, port)
        path = parts.path + (f"?{parts.query}" if parts.query else "")
        head = [f"POST {path} HTTP/1.1", f"Host: {host}:{port}", f"Content-Length: {len(body)}"]
        head += [f"{k}: {v}" for k, v in headers.items()]
        request = ("\r\n".join(head) + "\r\n\r\n").encode() + body
        timeout = self._read_s if read_s is None else read_s
        for reused in (True, False):
            conn = self._take(key) if reused else await self._connect(key)
            if conn is None:
                continue
            try:
                conn[1].write(request)
                status, fields = await self._read_head(conn[0], timeout)
            except (ConnectionError, asyncio.IncompleteReadError) as exc:
                conn[1].close()
                if reused:
                    continue  # a stale idle connection: try a fresh one
                raise httpx.RemoteProtocolError(f"engine closed the connection: {exc}") from exc
            except BaseException:
                conn[1].close()
                raise
            return Http11Response(self, key, conn, status, fields, timeout)
        raise httpx.ConnectError(f"cannot reach {host}:{port}")

    def _take(self, key: tuple[str, int]) -> Conn | None:
        idle = self._idle.get(key)
        while idle:
            conn = idle.pop()
            if not conn[1].is_closing() and not conn[0].at_eof():
                return conn
            conn[1].close()
        return None

    async def _connect(self, key: tuple[str, int]) -> Conn:
        try:
            return await asyncio.wait_for(asyncio.open_connection(*key), self._connect_s)
        except TimeoutError as exc:
            raise httpx.ConnectTimeout(f"connecting to {key[0]}:{key[1]} timed out") from exc
        except OSError as exc:
            raise httpx.ConnectError(f"cannot connect to {key[0]}:{key[1]}: {exc}") from exc

    @staticmethod
    async def _read_head(
        reader: asyncio.StreamReader, timeout: float
    ) -> tuple[int, dict[bytes, bytes]]:
        try:
            async with asyncio.timeout(timeout):
                head = await reader.readuntil(b"\r\n\r\n")
        except TimeoutError as exc:
            raise httpx.ReadTimeout("engine did not answer in time") from exc
        except asyncio.LimitOverrunError as exc:
            raise httpx.RemoteProtocolError("engine sent oversized headers") from exc
        lines = head.split(b"\r\n")
        try:
            status = int(lines[0].split(b" ", 2)[1])
        except (IndexError, ValueError) as exc:
            raise httpx.RemoteProtocolError("engine sent a malformed status line") from exc
        fields: dict[bytes, bytes] = {}
        for line in lines[1:]:
            name, sep, value = line.partition(b":")
            if sep:
                fields[name.strip().lower()] = value.strip()
        return status, fields

    def release(
        self,
        key: tuple[str, int],
        conn: Conn,
        reusable: bool,
    ) -> None:
        idle = self._idle.setdefault(key, [])
        if reusable and len(idle) < MAX_IDLE_PER_HOST:
            idle.append(conn)
        else:
            conn[1].close()

    async def aclose(self) -> None:
        for idle in self._idle.values():
            for _, writer in idle:
                writer.close()
        self._idle.clear()
