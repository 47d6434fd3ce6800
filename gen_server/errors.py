"""Soundry's error hierarchy, shared by the API and the workers (torch-free): every error class.

    SoundryError                 code        HTTP
    +-- InvalidInput             invalid_input   422
    |   +-- UnknownModel         unknown_model   422
    +-- NotFound                 not_found       404
    +-- Conflict                 conflict        409
    +-- Unauthorized             unauthorized    401  (WWW-Authenticate)
    +-- Forbidden                forbidden       403
    +-- RateLimited              rate_limited    429  (Retry-After)
    +-- ModelUnavailable         model_unavailable 503
    +-- GenerationFailed         generation_failed 500
    +-- StorageError             storage_error   500
    +-- TransientError           transient       503  (retried with backoff by the worker)
    |   +-- StorageUnavailable   storage_unavailable 503
    +-- JobCancelled             cancelled       409

Permanent errors fail a job with a code and a message; retryable ones are retried with backoff.
The API maps every :class:`SoundryError` to ``{"error": {"code", "message", "field"}}`` with its
``http_status`` and the ``headers`` the error names (never by ``isinstance`` checks).

An error's ``field`` comes from a pydantic error location (``ValidationError.errors()[i]["loc"]``) in
one of two spellings: :func:`dotted_field` (``post.fade_in_s``, list items ``items.0``: the job API,
settings) or :func:`field_path` (``tracks[1].items[0].start_s``, as scene files are written).
"""

from __future__ import annotations

import re
from collections.abc import Collection, Iterable
from typing import Final


class SoundryError(Exception):
    """Base error: ``code`` is machine-readable, ``field`` names the offending input if any."""

    code = "error"
    http_status = 400
    retryable = False

    def __init__(self, message: str, *, field: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.field = field

    @property
    def headers(self) -> dict[str, str]:
        """HTTP headers an API answer carrying this error adds (``Retry-After``, ``WWW-Authenticate``)."""
        return {}

    def to_dict(self) -> dict[str, str | None]:
        return {"code": self.code, "message": self.message, "field": self.field}


class InvalidInput(SoundryError):
    code = "invalid_input"
    http_status = 422


class UnknownModel(InvalidInput):
    code = "unknown_model"


class NotFound(SoundryError):
    code = "not_found"
    http_status = 404


class Conflict(SoundryError):
    code = "conflict"
    http_status = 409


class Unauthorized(SoundryError):
    """No API key, or one the server does not know."""

    code = "unauthorized"
    http_status = 401

    @property
    def headers(self) -> dict[str, str]:
        return {"WWW-Authenticate": "Bearer"}


class Forbidden(SoundryError):
    """A known key asking for what only an admin key may do."""

    code = "forbidden"
    http_status = 403


class RateLimited(SoundryError):
    """The key's request rate or concurrent-job quota is used up; ``retry_after_s`` says when to retry."""

    code = "rate_limited"
    http_status = 429

    def __init__(self, message: str, retry_after_s: int) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s

    @property
    def headers(self) -> dict[str, str]:
        return {"Retry-After": str(self.retry_after_s)}


class ModelUnavailable(SoundryError):
    """Named real model whose weights are not in the local cache and cannot be downloaded."""

    code = "model_unavailable"
    http_status = 503


class GenerationFailed(SoundryError):
    code = "generation_failed"
    http_status = 500


class StorageError(SoundryError):
    code = "storage_error"
    http_status = 500


class TransientError(SoundryError):
    """A failure worth retrying (lost connection, busy device)."""

    code = "transient"
    http_status = 503
    retryable = True


class StorageUnavailable(TransientError):
    """The artifact store did not answer (unreachable, timed out, busy): the job is retried."""

    code = "storage_unavailable"


class JobCancelled(SoundryError):
    code = "cancelled"
    http_status = 409


def from_code(code: str, message: str, field: str | None = None) -> SoundryError:
    """The error a job ended with, raised again in the API (its class found by ``code``)."""
    classes: list[type[SoundryError]] = [SoundryError]
    for cls in classes:
        if cls.code == code:
            return cls(message, field=field)
        classes.extend(cls.__subclasses__())
    return GenerationFailed(message, field=field)


# ------------------------------------------------------------------- fields from validation errors

REQUEST_PARTS: Final[frozenset[str]] = frozenset({"body", "query", "path", "header"})
"""Where a request value came from: FastAPI puts it first in a validation error's location."""
_TYPE_TAGS: Final[frozenset[str]] = frozenset({"float", "int", "str", "bool", "none", "dict", "list"})


def dotted_field(loc: Iterable[int | str], default: str, *, skip: Collection[str] = ()) -> str:
    """A pydantic error location as ``post.fade_in_s`` (parts in ``skip`` left out), or ``default``."""
    return ".".join(str(part) for part in loc if part not in skip) or default


def field_path(loc: Iterable[int | str]) -> str:
    """A pydantic error location as ``tracks[1].items[0].start_s`` (union member tags dropped)."""
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif re.fullmatch(r"[a-z_][a-z0-9_]*", part) and part not in _TYPE_TAGS:
            out += f".{part}" if out else part
    return out or "body"
