"""Indexing jobs: their state, their cancelling, the recent ones.

Under the `documents` tag with the uploads and removals that start them. Callers without
an API key see the jobs' paths (upload folders, paths inside messages) made public
(api/paths.py).
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Query

from ..dependencies import READ_AUTH, WRITE_AUTH, JobsDep, ReadCaller, ServiceDep
from ..jobs import JobFinishedError
from ..logs import request_id
from ..responses import CancelResponse, Job, JobsResponse, errors

router = APIRouter(tags=["documents"])


@router.get("/v1/jobs/{job_id}", dependencies=READ_AUTH, response_model=Job,
            responses=errors(401, 404, 422), summary="the state of an indexing job")
def get_job(job_id: str, caller: ReadCaller, jobs: JobsDep, service: ServiceDep
            ) -> dict[str, Any]:
    job = jobs.get(job_id)
    if job is None:
        raise HTTPException(404, f"no job with id {job_id!r}")
    return job if caller is not None else service.path_view().scrub(job)


@router.delete("/v1/jobs/{job_id}", status_code=202, dependencies=WRITE_AUTH,
               response_model=CancelResponse, responses=errors(401, 404, 409, 422),
               summary="cancel an indexing job (409 once it has finished)")
def cancel_job(job_id: str, jobs: JobsDep) -> dict[str, Any]:
    try:
        job = jobs.cancel(job_id)
    except JobFinishedError as exc:
        raise HTTPException(409, str(exc)) from exc
    if job is None:
        raise HTTPException(404, f"no job with id {job_id!r}")
    return {**job, "request_id": request_id()}


@router.get("/v1/jobs", dependencies=READ_AUTH, response_model=JobsResponse,
            responses=errors(401, 422), summary="recent indexing jobs, newest first")
def list_jobs(caller: ReadCaller, jobs: JobsDep, service: ServiceDep,
              limit: Annotated[int, Query(ge=1, le=1000)] = 50) -> dict[str, Any]:
    recent = jobs.recent(limit)
    return {"jobs": recent if caller is not None else service.path_view().scrub(recent),
            "counts": jobs.counts()}
