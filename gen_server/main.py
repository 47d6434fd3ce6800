"""create_app: the FastAPI application (API + mounted Gradio UI)."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import redis
from fastapi import Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, RedirectResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from gen_server import elevenlabs as elevenlabs_compat
from gen_server.auth import KeyStore, keys_path
from gen_server.contract.catalog import build_catalog
from gen_server.contract.result import ERROR_RESPONSES
from gen_server.deps import authenticate
from gen_server.errors import REQUEST_PARTS, SoundryError, dotted_field
from gen_server.jobs import JobService
from gen_server.queue import JobQueue
from gen_server.routes import (
    batches,
    elevenlabs,
    health,
    jobs,
    lexicon,
    models,
    openai_compat,
    scenes,
    uploads,
    voices,
    watermark,
)
from gen_server.settings import Settings, get_settings
from gen_server.storage import open_store

logger = logging.getLogger(__name__)


ErrorBody = Callable[[int, str, str, str | None], dict[str, Any]]


def _error_type(status: int) -> str:
    """OpenAI's error ``type`` for a status (its SDK and apps written against it read it)."""
    if status >= 500:
        return "server_error"
    return {401: "authentication_error", 403: "permission_error", 429: "rate_limit_error"}.get(
        status, "invalid_request_error"
    )


def soundry_error_body(status: int, code: str, message: str, field: str | None) -> dict[str, Any]:
    """Soundry's ``code``/``message``/``field``, plus OpenAI's ``type``/``param`` (its SDK reads them)."""
    body = {"code": code, "message": message, "field": field, "type": _error_type(status), "param": field}
    return {"error": body}


ERROR_SHAPES: tuple[tuple[Callable[[str, str], bool], ErrorBody], ...] = (
    (elevenlabs_compat.applies_to, elevenlabs_compat.error_body),
)
"""(test of path and method, body) for the compatibility routes whose clients expect another API's error
shape."""


def _error(
    path: str, status: int, code: str, message: str, field: str | None = None, method: str = "GET"
) -> JSONResponse:
    """The error response for a ``method`` request to ``path``: Soundry's shape unless a compatible
    route's own."""
    body = next((shape for applies, shape in ERROR_SHAPES if applies(path, method)), soundry_error_body)
    return JSONResponse(body(status, code, message, field), status_code=status)


def install_error_handlers(app: FastAPI) -> None:
    """The one place mapping errors to HTTP: ``{"error": {"code", "message", "field"}}``, or the shape
    :data:`ERROR_SHAPES` gives a compatibility route."""

    @app.exception_handler(SoundryError)
    async def soundry_error(request: Request, exc: SoundryError) -> JSONResponse:
        response = _error(request.url.path, exc.http_status, exc.code, exc.message, exc.field, request.method)
        response.headers.update(exc.headers)
        return response

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
        first = exc.errors()[0] if exc.errors() else {"loc": ("body",), "msg": "invalid request"}
        field = dotted_field(first.get("loc", ("body",)), "body", skip=REQUEST_PARTS)
        message = f"{field}: {first.get('msg', 'invalid value')}"
        return _error(request.url.path, 422, "invalid_input", message, field, request.method)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = {404: "not_found", 405: "method_not_allowed", 413: "too_large"}.get(
            exc.status_code, "http_error"
        )
        return _error(request.url.path, exc.status_code, code, str(exc.detail), method=request.method)

    @app.exception_handler(Exception)
    async def unexpected(request: Request, exc: Exception) -> JSONResponse:
        logger.exception("unhandled error")
        return _error(request.url.path, 500, "internal_error", "internal server error", method=request.method)


class BodySizeLimit:
    """Refuse request bodies over ``max_bytes`` with 413, whether or not they declare a length."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_bytes:
            await self._too_large(scope, receive, send)
            return
        seen = 0

        async def limited() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_bytes:
                    raise _TooLarge
            return message

        try:
            await self.app(scope, limited, send)
        except _TooLarge:
            await self._too_large(scope, receive, send)

    async def _too_large(self, scope: Scope, receive: Receive, send: Send) -> None:
        limit_mib = self.max_bytes / 2**20
        message = f"request body exceeds {limit_mib:.0f} MiB"
        response = _error(scope["path"], 413, "too_large", message, "body", scope.get("method", "GET"))
        await response(scope, receive, send)


class _TooLarge(Exception):
    pass


def create_app(settings: Settings | None = None, *, redis_url: str | None = None, ui: bool = True) -> FastAPI:
    """Build the app against ``redis_url`` (defaults to ``settings.redis_url``)."""
    settings = settings or get_settings()
    url = redis_url or settings.redis_url
    if url is None:
        raise ValueError("create_app needs a Redis URL (the serve command starts an embedded one)")
    app = FastAPI(
        title="Soundry",
        version="0.1.0",
        description="Self-hosted generative audio: speech, sound effects and music on one queue.",
    )
    app.state.settings = settings
    app.state.jobs = JobService(
        settings,
        build_catalog(settings),
        redis.Redis.from_url(url, decode_responses=True),
        JobQueue(settings, url),
        open_store(settings),
        async_redis_url=url,
    )
    app.state.keys = KeyStore(keys_path(settings.data_dir))
    install_error_handlers(app)
    app.add_middleware(BodySizeLimit, max_bytes=settings.max_body_bytes)
    routers = (jobs, models, uploads, openai_compat, elevenlabs, voices, batches, watermark, scenes, lexicon)
    for module in routers:
        app.include_router(module.router, dependencies=[Depends(authenticate)], responses=ERROR_RESPONSES)
    app.include_router(health.router)

    @app.get("/", include_in_schema=False)
    def root() -> RedirectResponse:
        return RedirectResponse("/ui/" if ui else "/docs")

    if ui:
        import gradio as gr

        from gen_server.client import SoundryClient
        from ui.app import build_ui

        base = settings.public_url or f"http://127.0.0.1:{settings.port}"
        app = gr.mount_gradio_app(app, build_ui(SoundryClient(base)), path="/ui")
    return app
