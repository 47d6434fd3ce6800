"""Liveness and readiness."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends
from fastapi.responses import Response
from prometheus_client import CONTENT_TYPE_LATEST

from gen_server.contract import examples
from gen_server.deps import job_service
from gen_server.jobs import JobService
from gen_server.metrics import render

router = APIRouter(tags=["health"])


@router.get(
    "/healthz",
    summary="Liveness and Redis reachability",
    responses={200: {"content": examples.json_example(examples.HEALTH)}},
)
def health(service: Annotated[JobService, Depends(job_service)]) -> dict[str, Any]:
    try:
        redis_ok = bool(service.redis.ping())
    except Exception:  # any connection failure means not ready
        redis_ok = False
    return {"status": "ok" if redis_ok else "degraded", "redis": redis_ok}


@router.get(
    "/metrics",
    summary="Prometheus metrics",
    response_class=Response,
    responses={200: {"content": {CONTENT_TYPE_LATEST: {"example": examples.METRICS}}}},
)
def metrics(service: Annotated[JobService, Depends(job_service)]) -> Response:
    """Queue depth per queue, jobs by state, generation and audio seconds per model, worker memory."""
    return Response(render(service.redis), media_type=CONTENT_TYPE_LATEST)
