"""An app's chat playground: a message box whose answer streams into the page, then the
chunks it cited (document, text, score).

The question goes through :class:`~suanwang.ports.AppChat` (the gateway's app pipeline in
this process, ``gateway/playground.py``) as the session's principal: retrieval, prompt,
model call and citations as for ``model="app:<name>"`` on the gateway, with the same
limits and the same usage rows (the model call and the query's embedding, ``source`` =
the app). No key is stored, shown or forwarded.

``POST …/chat/stream`` answers newline-delimited JSON, one event a line, which
``static/console.js`` reads with ``fetch`` + ``ReadableStream`` and inserts as text
(``textContent``, never HTML). Without JavaScript the form posts to ``POST …/chat``, which
waits for the whole answer and renders the page with it.
"""

from __future__ import annotations

import json
from collections.abc import AsyncGenerator, AsyncIterator
from dataclasses import asdict
from typing import Annotated

from fastapi import APIRouter, Form, Request, Response
from fastapi.responses import StreamingResponse
from starlette.concurrency import run_in_threadpool

from suanwang.adapters.http.console.web import (
    SECURITY_HEADERS,
    ConsoleRoute,
    User,
    UserDep,
    allow,
    render,
)
from suanwang.adapters.http.security import current_platform
from suanwang.domain.app_chat import (
    MAX_QUESTION_CHARS,
    AnswerDone,
    AnswerEvent,
    AnswerFailed,
    AnswerText,
    check_question,
)
from suanwang.domain.errors import Unavailable, ValidationError
from suanwang.ports import AppChat
from suanwang.services.apps import AppDetail

router = APIRouter(route_class=ConsoleRoute, include_in_schema=False)
NDJSON = "application/x-ndjson"
Message = Annotated[str, Form()]
"""The question (its length is checked with the other rules, shown next to the field)."""


def _app_chat(request: Request) -> AppChat:
    chat: AppChat | None = request.app.state.app_chat
    if chat is None:
        raise Unavailable("the chat playground is not available on this server")
    return chat


def _detail(request: Request, user: User, name: str) -> AppDetail:
    """The app (404 for another tenant's, as in the API) the page stands for."""
    allow(user, "GET", "/api/v1/apps/{name}")
    return current_platform(request).apps.get(user.principal, name)


def _page(
    request: Request,
    detail: AppDetail,
    status: int = 200,
    *,
    message: str = "",
    answer: str = "",
    end: AnswerEvent | None = None,
    errors: dict[str, str] | None = None,
) -> Response:
    return render(
        request,
        "app_chat.html",
        status=status,
        detail=detail,
        message=message,
        answer=answer,
        done=end if isinstance(end, AnswerDone) else None,
        failed=end if isinstance(end, AnswerFailed) else None,
        errors=errors or {},
        max_chars=MAX_QUESTION_CHARS,
    )


@router.get("/apps/{name}/chat")
async def chat_page(request: Request, name: str, user: UserDep) -> Response:
    detail = await run_in_threadpool(_detail, request, user, name)
    return _page(request, detail)


@router.post("/apps/{name}/chat")
async def chat_whole(request: Request, name: str, user: UserDep, message: Message = "") -> Response:
    """Without JavaScript: the page with the whole answer and its citations."""
    detail = await run_in_threadpool(_detail, request, user, name)
    try:
        question = check_question(message)
    except ValidationError as exc:
        return _page(request, detail, 422, message=message, errors={"message": exc.message})
    pieces: list[str] = []
    end: AnswerEvent | None = None
    async for event in _app_chat(request).answer(user.principal, detail.app.name, question):
        if isinstance(event, AnswerText):
            pieces.append(event.text)
        else:
            end = event
    return _page(request, detail, message=message, answer="".join(pieces), end=end)


@router.post("/apps/{name}/chat/stream")
async def chat_stream(
    request: Request, name: str, user: UserDep, message: Message = ""
) -> Response:
    """The answer as it is generated: newline-delimited JSON events (see the module)."""
    detail = await run_in_threadpool(_detail, request, user, name)
    try:
        question = check_question(message)
    except ValidationError as exc:
        refused = line(AnswerFailed(422, exc.message))
        return Response(refused, status_code=422, media_type=NDJSON, headers=SECURITY_HEADERS)
    events = _app_chat(request).answer(user.principal, detail.app.name, question)
    return StreamingResponse(
        _lines(events),
        media_type=NDJSON,
        headers=SECURITY_HEADERS | {"X-Accel-Buffering": "no"},
    )


async def _lines(events: AsyncGenerator[AnswerEvent, None]) -> AsyncIterator[bytes]:
    try:
        async for event in events:
            yield line(event)
    finally:
        await events.aclose()


def line(event: AnswerEvent) -> bytes:
    """One event as a line of JSON: ``{"event": "text"|"done"|"failed", ...fields}``."""
    kind = {AnswerText: "text", AnswerDone: "done", AnswerFailed: "failed"}[type(event)]
    return (json.dumps({"event": kind, **asdict(event)}, ensure_ascii=False) + "\n").encode()
