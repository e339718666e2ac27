"""A lean HTTP/1.1 keep-alive client for engines on ``http://`` (the gateway's hot path).

httpx costs a few CPU milliseconds per request on a busy 2-core machine; this client does
only what the gateway needs (POST a JSON body, read a Content-Length or chunked answer,
whole or piece by piece as it arrives) over pooled asyncio streams, and raises httpx's
exception types so the failover logic treats both clients alike. Responses expose the part
of ``httpx.Response`` the proxy uses: ``status_code``, ``aread``, ``aiter_bytes``,
``aclose``. A streamed body is read with one ``read`` (and one timeout) per arrival, not
per chunk, and the connection is reused after a stream as after a plain answer.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable
from urllib.parse import urlsplit

import httpx

MAX_IDLE_PER_HOST = 256
READ_BYTES = 65536
MAX_CHUNK_LINE = 4096
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
        self._decoder = ChunkedDecoder()
        self._chunked = b"content-length" not in headers and (
            headers.get(b"transfer-encoding", b"").lower() == b"chunked"
        )

    async def aiter_bytes(self) -> AsyncIterator[bytes]:
        """The body (chunked framing removed) in pieces: all that arrived in one read each.

        The connection goes back to the pool as soon as the end of the body is read, before
        the last piece is yielded; a caller that stops at its own end marker (``[DONE]``)
        before that calls :meth:`drain` to keep the connection.
        """
        reader = self._conn[0]
        try:
            length = self._headers.get(b"content-length")
            if length is not None:
                body = await self._io(reader.readexactly(int(length)))
                self._finish()
                yield body
            elif self._chunked:
                async for piece in self._chunks(reader):
                    yield piece
            else:
                self._reusable = False
                while chunk := await self._io(reader.read(READ_BYTES)):
                    yield chunk
                self._finish()
        except (asyncio.IncompleteReadError, ConnectionError, ValueError) as exc:
            self._reusable = False
            raise httpx.RemoteProtocolError(f"engine connection broke: {exc}") from exc

    async def _chunks(self, reader: asyncio.StreamReader) -> AsyncIterator[bytes]:
        decoder = self._decoder
        while True:
            data = await self._io(reader.read(READ_BYTES))
            if not data:
                raise asyncio.IncompleteReadError(b"", None)
            piece = decoder.feed(data)
            if decoder.ended:
                self._reusable = self._reusable and not decoder.extra
                self._finish()
            if piece:
                yield piece
            if decoder.ended:
                return

    async def aread(self) -> bytes:
        return b"".join([piece async for piece in self.aiter_bytes()])

    async def aclose(self) -> None:
        """Give the connection back if the body was read to its end, else close it."""
        if not self._done:
            self._reusable = False
            self._finish()

    async def drain(self, within_s: float) -> None:
        """End an answer whose content the caller has in full: read the rest of a chunked
        body (its terminator) to keep the connection, or close it if content still follows
        or the rest takes longer than ``within_s``."""
        reader, decoder = self._conn[0], self._decoder
        try:
            async with asyncio.timeout(within_s):
                while self._chunked and not self._done and not decoder.ended:
                    data = await reader.read(READ_BYTES)
                    if not data or decoder.feed(data):
                        break
        except (TimeoutError, ConnectionError, ValueError):
            pass  # not reusable: closed below
        if decoder.ended and not self._done:
            self._reusable = self._reusable and not decoder.extra
            self._finish()
        await self.aclose()

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


class ChunkedDecoder:
    """Incremental ``Transfer-Encoding: chunked`` decoding (ValueError on bad framing)."""

    def __init__(self) -> None:
        self._buf = bytearray()
        self.ended = False
        self.extra = False
        """Bytes followed the last chunk (the connection is then not reusable)."""

    def feed(self, data: bytes) -> bytes:
        """The payload of every chunk completed by ``data``, joined."""
        buf = self._buf
        buf += data
        pieces: list[bytes] = []
        pos = 0
        while not self.ended:
            eol = buf.find(b"\r\n", pos)
            if eol < 0:
                if len(buf) - pos > MAX_CHUNK_LINE:
                    raise ValueError("chunk size line too long")
                break
            size = int(buf[pos:eol].split(b";", 1)[0], 16)
            if size == 0:
                end = buf.find(b"\r\n\r\n", eol)  # the empty line after optional trailers
                if end < 0:
                    break
                self.ended = True
                self.extra = end + 4 < len(buf)
                pos = end + 4
                break
            start, stop = eol + 2, eol + 2 + size
            if len(buf) < stop + 2:
                break
            if buf[stop : stop + 2] != b"\r\n":
                raise ValueError("chunk not followed by CRLF")
            pieces.append(bytes(buf[start:stop]))
            pos = stop + 2
        del buf[:pos]
        return pieces[0] if len(pieces) == 1 else b"".join(pieces)


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
