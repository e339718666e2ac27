"""``/api/v1/jobs``: submit, list, show, logs (with follow), cancel."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Header, Query, Request, Response
from fastapi.responses import PlainTextResponse
from starlette.concurrency import run_in_threadpool

from suanwang.adapters.http.follow import TEXT, FollowResponse, FollowSlots
from suanwang.adapters.http.follow import follow as follow_log
from suanwang.adapters.http.responses import Responses, errors, text_body
from suanwang.adapters.http.schemas import AttemptPublic, EventPublic, JobCreate, JobPublic
from suanwang.adapters.http.security import AuthorizedRoute, current_platform, current_principal
from suanwang.domain.checkpoints import attempt_lost_work_s, resume_summary
from suanwang.domain.errors import ValidationError
from suanwang.domain.jobs import JobState, spec_to_dict
from suanwang.domain.records import AttemptRecord, JobRecord
from suanwang.domain.tenancy import Principal
from suanwang.services.jobs import MAX_LOG_OFFSET, JobDetail, LogTail
from suanwang.services.platform import Platform

router = APIRouter(prefix="/api/v1/jobs", tags=["jobs"], route_class=AuthorizedRoute)
PrincipalDep = Annotated[Principal, Depends(current_principal)]
PlatformDep = Annotated[Platform, Depends(current_platform)]
LOG_CHUNK = 64 * 1024


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
        network=job.spec.network.value,
        placement_hint=f"{job.hint_cluster}/{job.hint_chip}" if job.hint_cluster else None,
        spec=spec_to_dict(job.spec),
    )
    if detail is not None:
        summary = resume_summary(detail.attempts)
        public.resumes, public.lost_work_s = summary.resumes, summary.lost_work_s
        public.lost_card_s = summary.lost_card_s
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
        nodes=[p.node for p in a.placements],
        exit_code=a.exit_code,
        reason=a.reason,
        admitted_at=a.admitted_at,
        started_at=a.started_at,
        ended_at=a.ended_at,
        last_checkpoint_at=a.last_checkpoint_at,
        lost_work_s=attempt_lost_work_s(a),
    )


REPLAYED: Responses = {
    200: {
        "model": JobPublic,
        "description": "The job an earlier request with this Idempotency-Key created",
        "headers": {"Idempotent-Replayed": {"schema": {"type": "string", "enum": ["true"]}}},
    }
}


@router.post(
    "",
    status_code=201,
    response_model=JobPublic,
    summary="Submit a job",
    responses=REPLAYED
    | errors((404, "No dataset of that name among yours"), (409, "The dataset is not sealed")),
)
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


@router.post(
    "/{job_id}/cancel", response_model=JobPublic, summary="Cancel a job", responses=errors(409)
)
def cancel_job(job_id: str, principal: PrincipalDep, platform: PlatformDep) -> JobPublic:
    return job_public(platform.jobs.cancel(principal, job_id))


@router.get(
    "/{job_id}/logs",
    summary="Output of the latest (or a given) attempt",
    response_class=PlainTextResponse,
    responses=text_body("The attempt's output from `offset` (streamed with `follow=true`)")
    | errors(
        (429, "Too many follow streams (per key or overall)"),
        (503, "The engine of the attempt's cluster cannot be reached now"),
    ),
)
async def job_logs(
    request: Request,
    job_id: str,
    principal: PrincipalDep,
    platform: PlatformDep,
    follow: bool = False,
    offset: Annotated[int, Query(ge=0, le=MAX_LOG_OFFSET)] = 0,
    attempt: Annotated[int | None, Query(ge=1)] = None,
) -> Response:
    """Plain text from byte ``offset`` (past the end: empty). With ``follow=true`` the
    response streams the latest attempt until the job ends; follow streams are capped per
    key and overall (429 with Retry-After)."""
    if follow and attempt is not None:
        raise ValidationError("follow streams the latest attempt", field="attempt")
    if not follow:
        chunk, _ = await run_in_threadpool(
            platform.jobs.logs, principal, job_id, offset, LOG_CHUNK, attempt
        )
        return Response(chunk, media_type=TEXT)

    async def read(at: int, seen: int | None) -> LogTail:
        return await run_in_threadpool(platform.jobs.tail, principal, job_id, at, LOG_CHUNK, seen)

    first = await read(offset, None)
    slots: FollowSlots = request.app.state.follow_slots
    refusal = slots.refusal(principal.key_id)
    if refusal is not None:
        return refusal
    return FollowResponse(follow_log(request, read, first), slots.take(principal.key_id))
