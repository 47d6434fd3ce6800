"""FastAPI dependencies: the services hang off ``app.state`` (built once in ``create_app``)."""

from __future__ import annotations

import time

from fastapi import Request

from gen_server.auth import KeyStore
from gen_server.contract.catalog import Catalog
from gen_server.errors import RateLimited, Unauthorized
from gen_server.jobs import Caller, JobService
from gen_server.records.keys import rate as rate_key

LOCAL = Caller(owner=None, admin=True)


def jobs_of(request: Request) -> JobService:
    service: JobService = request.app.state.jobs
    return service


async def job_service(request: Request) -> JobService:
    """Dependencies are ``async``: FastAPI runs a plain ``def`` one in the threadpool, a hop per request."""
    return jobs_of(request)


async def catalog(request: Request) -> Catalog:
    cat: Catalog = request.app.state.jobs.catalog
    return cat


def presented_key(request: Request) -> str | None:
    """The API key a request carries: ``Authorization: Bearer <key>`` or (ElevenLabs' way) ``xi-api-key``."""
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() == "bearer" and token.strip():
        return token.strip()
    return request.headers.get("xi-api-key", "").strip() or None


async def authenticate(request: Request) -> None:
    """Resolve the caller from its API key (:func:`presented_key`); enforce the key's rate limit (429).

    With no keys configured every caller is the local user (the server then binds to loopback only).
    """
    keys: KeyStore = request.app.state.keys
    if not keys.enabled:
        request.state.caller = LOCAL
        return
    token = presented_key(request)
    if token is None:
        raise Unauthorized(
            "missing API key: send 'Authorization: Bearer <key>' or 'xi-api-key: <key>'",
            field="authorization",
        )
    key = keys.verify(token)
    window = int(time.time() // 60)
    count = await jobs_of(request).count_request(rate_key(key.id, window), expire_s=120)
    if count > key.rate_per_min:
        retry = 60 - int(time.time() % 60)
        raise RateLimited(
            f"rate limit of {key.rate_per_min} requests per minute reached", retry_after_s=retry
        )
    request.state.caller = Caller(owner=key.id, admin=key.admin, max_concurrent_jobs=key.max_concurrent_jobs)


async def caller(request: Request) -> Caller:
    found: Caller | None = getattr(request.state, "caller", None)
    return found or LOCAL
