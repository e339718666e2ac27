"""``/api/v1/jobs``: submit, list, show, logs (with follow), cancel."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Annotated

from fastapi import APIRouter, Depends, Header, Query, Response
from fastapi.responses import StreamingResponse

from suanwang.adapters.http.schemas import AttemptPublic, EventPublic, JobCreate, JobPublic
from suanwang.adapters.http.security import AuthorizedRoute, current_platform, current_principal
from suanwang.domain.errors import ValidationError
from suanwang.domain.jobs import JobState
from suanwang.domain.records import AttemptRecord, JobRecord
from suanwang.domain.tenancy import Principal
from suanwang.services.jobs import JobDetail
from suanwang.services.platform import Platform

router = APIRouter(prefix="/api/v1/jobs", tags=["jobs"], route_class=AuthorizedRoute)
PrincipalDep = Annotated[Principal, Depends(current_principal)]
PlatformDep = Annotated[Platform, Depends(current_platform)]
LOG_CHUNK = 64 * 1024
FOLLOW_POLL_S = 0.25
FOLLOW_MAX_S = 3600.0


def job_public(job: JobRecord, detail: JobDetail | None = None) -> JobPublic:
    public = JobPublic(
        id=job.id,
        tenant=job.tenant,
        name=job.name,
        state=job.state.value,
        reason=job.reason,
        priority=job.priority,
        attempts=job.attempts,
        cancel_requested=job.cancel_requested,
        created_at=job.created_at,
        updated_at=job.updated_at,
        spec=job.spec,
    )
    if detail is not None:
        public.attempt_history = [_attempt(a) for a in detail.attempts]
        public.events = [
            EventPublic(at=e.at, state=e.state, reason=e.reason) for e in detail.events
        ]
    return public


def _attempt(a: AttemptRecord) -> AttemptPublic:
    return AttemptPublic(
        number=a.number,
        state=a.state.value,
        cluster=a.cluster,
        simulated=a.backend == "simulated",
        chip=a.chip,
        cards=a.cards,
        nodes=[str(p["node"]) for p in a.placements],
        exit_code=a.exit_code,
        reason=a.reason,
        admitted_at=a.admitted_at,
        started_at=a.started_at,
        ended_at=a.ended_at,
    )


@router.post("", status_code=201, response_model=JobPublic, summary="Submit a job")
def submit_job(
    body: JobCreate,
    principal: PrincipalDep,
    platform: PlatformDep,
    response: Response,
    idempotency_key: Annotated[str | None, Header(max_length=200)] = None,
) -> JobPublic:
    """Queue a job. Retrying with the same ``Idempotency-Key`` and body returns the same job."""
    submitted = platform.jobs.submit(principal, body.to_spec(), idempotency_key)
    if submitted.replayed:
        response.status_code = 200
        response.headers["Idempotent-Replayed"] = "true"
    return job_public(submitted.job)


@router.get("", response_model=list[JobPublic], summary="List jobs")
def list_jobs(
    principal: PrincipalDep,
    platform: PlatformDep,
    state: Annotated[list[JobState] | None, Query()] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> list[JobPublic]:
    """Newest first; tenants see only their own jobs."""
    return [job_public(j) for j in platform.jobs.list(principal, state, limit)]


@router.get("/{job_id}", response_model=JobPublic, summary="Show a job with attempts and events")
def show_job(job_id: str, principal: PrincipalDep, platform: PlatformDep) -> JobPublic:
    detail = platform.jobs.get(principal, job_id)
    return job_public(detail.job, detail)


@router.post("/{job_id}/cancel", response_model=JobPublic, summary="Cancel a job")
def cancel_job(job_id: str, principal: PrincipalDep, platform: PlatformDep) -> JobPublic:
    return job_public(platform.jobs.cancel(principal, job_id))


@router.get(
    "/{job_id}/logs",
    summary="Output of the latest (or a given) attempt",
    response_class=StreamingResponse,
)
def job_logs(
    job_id: str,
    principal: PrincipalDep,
    platform: PlatformDep,
    follow: bool = False,
    offset: Annotated[int, Query(ge=0)] = 0,
    attempt: Annotated[int | None, Query(ge=1)] = None,
) -> StreamingResponse:
    """Plain text. With ``follow=true`` the response streams until the job ends."""
    if follow and attempt is not None:
        raise ValidationError("follow streams the latest attempt", field="attempt")
    first, _ = platform.jobs.logs(principal, job_id, offset, LOG_CHUNK, attempt)
    if not follow:
        return StreamingResponse(iter([first]), media_type="text/plain; charset=utf-8")
    return StreamingResponse(
        _follow(platform, principal, job_id, offset, first), media_type="text/plain; charset=utf-8"
    )


def _follow(
    platform: Platform, principal: Principal, job_id: str, offset: int, first: bytes
) -> Iterator[bytes]:
    deadline = time.monotonic() + FOLLOW_MAX_S
    chunk, attempt_seen = first, None
    while time.monotonic() < deadline:
        if chunk:
            yield chunk
            offset += len(chunk)
        detail = platform.jobs.get(principal, job_id)
        latest = detail.attempts[-1].number if detail.attempts else None
        if latest != attempt_seen and attempt_seen is not None:
            offset = 0  # a new attempt has its own log
        attempt_seen = latest
        chunk, _ = platform.jobs.logs(principal, job_id, offset, LOG_CHUNK)
        if not chunk and detail.job.state.terminal:
            return
        if not chunk:
            time.sleep(FOLLOW_POLL_S)
