"""FastAPI dependencies: the services hang off ``app.state`` (built once in ``create_app``)."""

from __future__ import annotations

from fastapi import Request

from gen_server.contract.catalog import Catalog
from gen_server.jobs import Caller, JobService


def job_service(request: Request) -> JobService:
    service: JobService = request.app.state.jobs
    return service


def catalog(request: Request) -> Catalog:
    cat: Catalog = request.app.state.jobs.catalog
    return cat


def caller(request: Request) -> Caller:
    """The caller; a keyless local server treats everyone as the local owner."""
    found: Caller | None = getattr(request.state, "caller", None)
    return found or Caller(owner=None, admin=True)
