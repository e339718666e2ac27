"""An httpx client of the suanwang REST API that turns every failure into one readable line.

Problem documents (RFC 9457) become ``error: <detail> (field: X) hint: Y``; a server that
cannot be reached becomes ``error: cannot reach suanwang at URL (is 'suanwang server'
running?)``. The API key is sent as a bearer token and never appears in a message.
"""

from __future__ import annotations

from collections.abc import Iterator
from types import TracebackType
from typing import Any

import httpx

from suanwang import __version__

DEFAULT_URL = "http://127.0.0.1:8000"
CONNECT_TIMEOUT_S = 5.0
READ_TIMEOUT_S = 120.0
NO_KEY_HINT = "pass --key, set SUANWANG_API_KEY, or run 'suanwang init' on the server machine"


def one_line(text: str) -> str:
    """``text`` with every run of whitespace (newlines included) collapsed to one space."""
    return " ".join(text.split())


class CliError(Exception):
    """An expected failure, shown as one ``error: …`` line on stderr with exit code 1."""

    def __init__(self, message: str, *, field: str | None = None, hint: str | None = None) -> None:
        """Create the error.

        Args:
            message: What went wrong, in a few words.
            field: The request field or command-line option concerned, if any.
            hint: What to do next, if known.
        """
        super().__init__(message)
        self.message = one_line(message)
        self.field = one_line(field) if field else None
        self.hint = one_line(hint) if hint else None

    def line(self) -> str:
        """The error as one line: ``error: <message> (field: X) hint: Y``."""
        parts = ["error:", self.message]
        if self.field:
            parts.append(f"(field: {self.field})")
        if self.hint:
            parts.append(f"hint: {self.hint}")
        return " ".join(parts)


def check_url(url: str) -> str:
    """``url`` without a trailing slash, or a CliError when it is not an http(s) URL."""
    try:
        parsed = httpx.URL(url)
    except (httpx.InvalidURL, TypeError) as exc:
        raise CliError(
            f"invalid server URL {url!r}", field="--url", hint=f"e.g. {DEFAULT_URL}"
        ) from exc
    if parsed.scheme not in ("http", "https") or not parsed.host:
        raise CliError(f"invalid server URL {url!r}", field="--url", hint=f"e.g. {DEFAULT_URL}")
    return url.rstrip("/")


def problem_error(response: httpx.Response, *, has_key: bool) -> CliError:
    """The CliError for an HTTP error response (a problem document, or anything else)."""
    try:
        body: Any = response.json()
    except ValueError:
        body = None
    if isinstance(body, dict) and isinstance(body.get("detail"), str):
        field, hint = body.get("field"), body.get("hint")
        error = CliError(
            body["detail"],
            field=field if isinstance(field, str) else None,
            hint=hint if isinstance(hint, str) else None,
        )
    else:
        snippet = one_line(response.text)[:200]
        reason = f"HTTP {response.status_code} {response.reason_phrase}".strip()
        error = CliError(f"{reason}: {snippet}" if snippet else reason)
    if response.status_code == 401 and not has_key:
        error.hint = NO_KEY_HINT
    return error


class ApiClient:
    """The REST API at ``base_url``, called with an optional bearer key."""

    def __init__(
        self, base_url: str, key: str | None, *, transport: httpx.BaseTransport | None = None
    ) -> None:
        """Open a connection pool (close it with :meth:`close` or a ``with`` block).

        Args:
            base_url: The server, e.g. ``http://127.0.0.1:8000``.
            key: The API key sent as ``Authorization: Bearer …``; None sends none.
            transport: An httpx transport (tests); the default opens real connections.
        """
        self.base_url = check_url(base_url)
        self._has_key = bool(key)
        headers = {
            "User-Agent": f"suanwang-cli/{__version__}",
            "Accept": "application/json, application/problem+json",
        }
        if key:
            headers["Authorization"] = f"Bearer {key}"
        self._http = httpx.Client(
            base_url=self.base_url,
            headers=headers,
            transport=transport,
            timeout=httpx.Timeout(READ_TIMEOUT_S, connect=CONNECT_TIMEOUT_S),
        )

    def __enter__(self) -> ApiClient:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        """Close the connection pool."""
        self._http.close()

    def call(
        self,
        method: str,
        path: str,
        *,
        json: Any = None,
        content: bytes | None = None,
        params: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
        files: dict[str, tuple[str, bytes]] | None = None,
    ) -> Any:
        """Send one request and return the decoded JSON body (None when empty);
        ``files`` sends a multipart body (field name -> file name and bytes).

        Raises:
            CliError: The server answered with an error, or could not be reached.
        """
        try:
            response = self._http.request(
                method,
                path,
                json=json,
                content=content,
                params=params,
                headers=headers,
                files=files,
            )
        except httpx.HTTPError as exc:
            raise self._transport_error(exc) from None
        if response.is_error:
            raise problem_error(response, has_key=self._has_key)
        if not response.content:
            return None
        try:
            return response.json()
        except ValueError:
            raise CliError(
                f"the server at {self.base_url} answered {path} with something that is not JSON",
                hint="is --url pointing at suanwang?",
            ) from None

    def upload(
        self,
        path: str,
        body: Iterator[bytes],
        *,
        params: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
    ) -> Any:
        """PUT ``body`` (streamed, chunked) to ``path``; the decoded JSON answer."""
        timeout = httpx.Timeout(None, connect=CONNECT_TIMEOUT_S)
        try:
            response = self._http.put(
                path, content=body, params=params, headers=headers, timeout=timeout
            )
        except httpx.HTTPError as exc:
            raise self._transport_error(exc) from None
        if response.is_error:
            raise problem_error(response, has_key=self._has_key)
        return response.json()

    def read_bytes(self, path: str, *, params: dict[str, Any] | None = None) -> bytes:
        """GET ``path`` and return the raw body (for plain-text resources such as logs)."""
        try:
            response = self._http.get(path, params=params)
        except httpx.HTTPError as exc:
            raise self._transport_error(exc) from None
        if response.is_error:
            raise problem_error(response, has_key=self._has_key)
        return response.content

    def stream(self, path: str, *, params: dict[str, Any] | None = None) -> Iterator[bytes]:
        """GET ``path`` and yield the body in chunks as they arrive (no read timeout)."""
        timeout = httpx.Timeout(None, connect=CONNECT_TIMEOUT_S)
        try:
            with self._http.stream("GET", path, params=params, timeout=timeout) as response:
                if response.is_error:
                    response.read()
                    raise problem_error(response, has_key=self._has_key)
                yield from response.iter_bytes()
        except httpx.HTTPError as exc:
            raise self._transport_error(exc) from None

    def _transport_error(self, exc: httpx.HTTPError) -> CliError:
        url = self.base_url
        if isinstance(exc, httpx.ConnectError | httpx.ConnectTimeout):
            return CliError(f"cannot reach suanwang at {url} (is 'suanwang server' running?)")
        if isinstance(exc, httpx.TimeoutException):
            return CliError(
                f"suanwang at {url} did not answer in time",
                hint="try again; check the server's load and logs",
            )
        if isinstance(exc, httpx.RemoteProtocolError):
            return CliError(
                f"the connection to suanwang at {url} was lost",
                hint="the server may have restarted; try again",
            )
        return CliError(f"request to suanwang at {url} failed: {type(exc).__name__}: {exc}")
