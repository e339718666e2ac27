"""Jobs: the list (filtered and paginated in the database), one job with its attempts,
preemptions, events and a log that follows (htmx polling), the submit form for a local job,
and cancel. Everything goes through :class:`~suanwang.services.jobs.Jobs` with the session's
principal, so another tenant's job is 404 here exactly as in the API."""

from __future__ import annotations

from typing import Annotated, Any

import pydantic
from fastapi import APIRouter, Query, Request, Response
from fastapi.responses import RedirectResponse
from starlette.concurrency import run_in_threadpool

from suanwang.adapters.http.console.paging import page_number, page_of
from suanwang.adapters.http.console.web import (
    PAGE_SIZE,
    PREFIX,
    ConsoleRoute,
    Short,
    User,
    UserDep,
    allow,
    render,
)
from suanwang.adapters.http.schemas import JobCreate
from suanwang.adapters.http.security import current_platform
from suanwang.domain.checkpoints import attempt_lost_work_s
from suanwang.domain.errors import DomainError
from suanwang.domain.jobs import JobState

router = APIRouter(prefix=PREFIX, route_class=ConsoleRoute, include_in_schema=False)
LOG_BYTES = 64 * 1024
STATES = [s.value for s in JobState]


@router.get("/jobs")
def jobs_page(
    request: Request,
    user: UserDep,
    state: Short = None,
    tenant: Short = None,
    chip: Short = None,
    page: Annotated[str | None, Query(max_length=8)] = None,
) -> Response:
    """Newest first, PAGE_SIZE a page; state, chip and (for the operator) tenant filters."""
    allow(user, "GET", "/api/v1/jobs")
    platform = current_platform(request)
    states = [JobState(state)] if state in STATES else None
    number = page_number(page)
    fetched = platform.jobs.list(
        user.principal,
        states,
        PAGE_SIZE + 1,
        offset=(number - 1) * PAGE_SIZE,
        tenant=tenant or None,
        chip=chip or None,
    )
    return render(
        request,
        "jobs.html",
        jobs=page_of(fetched, number),
        states=STATES,
        state=state if state in STATES else "",
        tenant=tenant or "",
        chip=chip or "",
        form={"name": "console-job", "command": "", "chip": "cpu", "cards": "1"},
        errors={},
    )


def _log_text(request: Request, user: User, job_id: str) -> str:
    try:
        chunk, _ = current_platform(request).jobs.logs(user.principal, job_id, 0, LOG_BYTES)
    except DomainError as exc:
        if exc.status == 404:
            raise
        return f"[{exc.message}]"
    return chunk.decode("utf-8", errors="replace")


def _job_view(request: Request, user: User, job_id: str) -> dict[str, Any]:
    detail = current_platform(request).jobs.get(user.principal, job_id)
    return {
        "job": detail.job,
        "attempts": [(a, attempt_lost_work_s(a)) for a in detail.attempts],
        "events": detail.events,
        "log": _log_text(request, user, job_id),
    }


@router.get("/jobs/{job_id}")
def job_page(request: Request, job_id: str, user: UserDep) -> Response:
    allow(user, "GET", "/api/v1/jobs/{job_id}")
    created = request.query_params.get("created") == "1"
    return render(request, "job.html", created=created, **_job_view(request, user, job_id))


@router.get("/jobs/{job_id}/log")
def job_log(request: Request, job_id: str, user: UserDep) -> Response:
    """State, attempts and log alone: htmx swaps them in every second until the job ends."""
    allow(user, "GET", "/api/v1/jobs/{job_id}/logs")
    return render(request, "job_log.html", **_job_view(request, user, job_id))


@router.post("/jobs")
async def submit_job(request: Request, user: UserDep) -> Response:
    posted = {k: str(v) for k, v in (await request.form()).items()}
    return await run_in_threadpool(_submit, request, user, posted)


def _submit(request: Request, user: User, posted: dict[str, str]) -> Response:
    """Build the API's own request model from the form, so the same rules apply."""
    allow(user, "POST", "/api/v1/jobs")
    form = {k: posted.get(k, "").strip() for k in ("name", "command", "chip", "cards")}
    errors: dict[str, str] = {}
    if not form["command"]:
        errors["command"] = "required"
    try:
        body = JobCreate.model_validate(
            {
                "name": form["name"] or "console-job",
                "command": ["sh", "-c", form["command"] or "true"],
                "resources": {
                    "chip": form["chip"] or "cpu",
                    "cards_per_node": _count(form["cards"]),
                },
            }
        )
    except pydantic.ValidationError as exc:
        for error in exc.errors():
            where = [str(p) for p in error["loc"]]
            name = {"cards_per_node": "cards"}.get(where[-1], where[-1]) if where else "name"
            errors.setdefault(name if name in form else "name", error["msg"])
    if not errors:
        platform = current_platform(request)
        try:
            job = platform.jobs.submit(user.principal, body.to_spec(), None).job
        except DomainError as exc:
            if exc.status in (401, 403, 404):
                raise
            errors[_form_field(exc.field)] = exc.message
        else:
            return RedirectResponse(f"{PREFIX}/jobs/{job.id}?created=1", status_code=303)
    return render(
        request,
        "jobs.html",
        status=422,
        jobs=None,
        states=STATES,
        state="",
        tenant="",
        chip="",
        form=form,
        errors=errors,
    )


def _form_field(api_field: str | None) -> str:
    name = (api_field or "").rsplit(".", 1)[-1]
    return {"cards_per_node": "cards", "resources": "chip"}.get(
        name, name if name in ("name", "command", "chip") else "command"
    )


@router.post("/jobs/{job_id}/cancel")
def cancel_job(request: Request, job_id: str, user: UserDep) -> Response:
    allow(user, "POST", "/api/v1/jobs/{job_id}/cancel")
    current_platform(request).jobs.cancel(user.principal, job_id)
    return RedirectResponse(f"{PREFIX}/jobs/{job_id}", status_code=303)


def _count(text: str) -> int:
    """A card count as typed: digits only (``isdigit`` admits '²', which ``int`` refuses),
    at most six of them; anything else is -1, which the request model refuses inline."""
    return int(text) if text.isdecimal() and len(text) <= 6 else -1
