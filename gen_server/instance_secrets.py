"""This installation's secrets: the watermark key and the webhook signing secret, resolved in one place
(the C2PA signing key and certificate follow the same rules in :mod:`gen_server.content_credentials`).

An environment value wins (``SOUNDRY_WATERMARK_KEY``, ``SOUNDRY_WEBHOOK_SECRET``). Otherwise each
secret is generated on first use into ``DATA_DIR/secrets/`` (``watermark.key``, ``webhook.secret``;
mode 0600) and read from there ever after, by the API, every worker on that data folder and the CLI
(``soundry verify``) alike. A file is written under a temporary name and then hard-linked to its
final name, which fails if the name exists: it is never seen half-written, and when the API and a
worker start at the same moment the first one wins and both use its value.

The webhook secret is a Standard Webhooks secret: ``whsec_`` followed by the base64 of 24-64 random
bytes (Soundry generates 32), the form every Standard Webhooks library takes.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import logging
import os
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from gen_server.settings import Settings

logger = logging.getLogger(__name__)

WATERMARK_KEY_VAR = "SOUNDRY_WATERMARK_KEY"
WEBHOOK_SECRET_VAR = "SOUNDRY_WEBHOOK_SECRET"
BUILTIN_DEFAULTS: dict[str, str] = {
    WATERMARK_KEY_VAR: "soundry-default-watermark-key",
    WEBHOOK_SECRET_VAR: "soundry-default-webhook-secret",
}
"""The values earlier versions shipped as defaults: public in the source, so never safe to serve with."""
WEBHOOK_SECRET_PREFIX = "whsec_"
WEBHOOK_SECRET_BYTES = (24, 64)


class SecretsError(ValueError):
    """A secret that cannot be used (malformed value, unreadable or unwritable file); names its variable."""


@dataclass(frozen=True, slots=True)
class InstanceSecrets:
    """The resolved secrets and where each came from (an environment variable or a file)."""

    watermark_key: str
    webhook_secret: str
    watermark_key_source: str
    webhook_secret_source: str


def secrets_dir(settings: Settings) -> Path:
    """``DATA_DIR/secrets``: where generated secrets live."""
    return settings.data_dir / "secrets"


def new_webhook_secret() -> str:
    """A fresh Standard Webhooks secret: ``whsec_`` + base64 of 32 random bytes."""
    return WEBHOOK_SECRET_PREFIX + base64.b64encode(secrets.token_bytes(32)).decode()


def check_webhook_secret(value: str, source: str = WEBHOOK_SECRET_VAR) -> str:
    """Return ``value`` when it is ``whsec_`` + base64 of 24-64 bytes.

    Raises:
        SecretsError: naming ``source``.
    """
    low, high = WEBHOOK_SECRET_BYTES
    try:
        if not value.startswith(WEBHOOK_SECRET_PREFIX):
            raise ValueError
        key = base64.b64decode(value[len(WEBHOOK_SECRET_PREFIX) :], validate=True)
    except (ValueError, binascii.Error):
        key = b""
    if not low <= len(key) <= high:
        raise SecretsError(
            f"{source} must be a Standard Webhooks secret: '{WEBHOOK_SECRET_PREFIX}' followed by the base64 "
            f"of {low}-{high} random bytes (unset it to have one generated)"
        )
    return value


def _read(path: Path, wait_s: float = 2.0) -> str:
    """The secret in ``path``; a file another process is still writing (no hard links) is waited for."""
    deadline = time.monotonic() + wait_s
    while True:
        value = path.read_text(encoding="ascii").strip()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(0.05)


def _create(path: Path, value: str) -> bool:
    """Write ``value`` to ``path`` (0600) unless it exists; True when this call created it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with contextlib.suppress(OSError):
        path.parent.chmod(0o700)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "w", encoding="ascii") as f:
            f.write(value + "\n")
            f.flush()
            os.fsync(f.fileno())
        try:
            os.link(tmp, path)  # atomic, and fails when another process created the file first
        except FileExistsError:
            return False
        except OSError:  # a filesystem without hard links: exclusive create, readers wait for content
            try:
                fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            except FileExistsError:
                return False
            with os.fdopen(fd, "w", encoding="ascii") as f:
                f.write(value + "\n")
                f.flush()
                os.fsync(f.fileno())
        return True
    finally:
        tmp.unlink(missing_ok=True)


def file_secret(path: Path, var: str, fresh: str | Callable[[], str]) -> tuple[str, str]:
    """The secret kept in ``path`` (``fresh``, or what it makes, is written there first if there is none)
    and its source; the same rules as the watermark key (:func:`resolve`), for any text secret.

    Raises:
        SecretsError: naming ``var`` when the file cannot be read or written, or is empty.
    """
    try:
        value = ""
        created = False
        if not path.exists():
            value = fresh() if callable(fresh) else fresh
            created = _create(path, value)
        if not created:
            value = _read(path)
    except OSError as e:
        reason = e.strerror or str(e)
        raise SecretsError(f"cannot keep {var} in {path}: {reason}; set {var} or fix the folder") from e
    if not value:
        raise SecretsError(f"{path} is empty: delete it to have {var} generated again, or set {var}")
    return value, f"{path} (generated now)" if created else str(path)


_CACHE: dict[tuple[str, str | None, str | None], InstanceSecrets] = {}
_LOCK = threading.Lock()


def resolve(settings: Settings) -> InstanceSecrets:
    """The secrets of ``settings``: from the environment, else from (or generated into) the data folder.

    Resolved once per process and data folder; where each secret comes from is logged once (never
    its value).

    Raises:
        SecretsError: a malformed webhook secret, or a secrets folder that cannot be read or written.
    """
    cache_key = (str(settings.data_dir.resolve()), settings.watermark_key, settings.webhook_secret)
    with _LOCK:
        found = _CACHE.get(cache_key)
        if found is not None:
            return found
        folder = secrets_dir(settings)
        if settings.watermark_key:
            watermark, watermark_source = settings.watermark_key, WATERMARK_KEY_VAR
        else:
            path = folder / "watermark.key"
            watermark, watermark_source = file_secret(path, WATERMARK_KEY_VAR, secrets.token_urlsafe(32))
        if settings.webhook_secret:
            webhook, webhook_source = check_webhook_secret(settings.webhook_secret), WEBHOOK_SECRET_VAR
        else:
            path = folder / "webhook.secret"
            webhook, webhook_source = file_secret(path, WEBHOOK_SECRET_VAR, new_webhook_secret())
            check_webhook_secret(webhook, str(path))
        found = _CACHE[cache_key] = InstanceSecrets(watermark, webhook, watermark_source, webhook_source)
    logger.info("watermark key: %s; webhook signing secret: %s", watermark_source, webhook_source)
    return found


def watermark_key(settings: Settings) -> bytes:
    """The key of this installation's watermark (see :func:`resolve`)."""
    return resolve(settings).watermark_key.encode()


def webhook_secret(settings: Settings) -> str:
    """This installation's Standard Webhooks signing secret, ``whsec_...`` (see :func:`resolve`)."""
    return resolve(settings).webhook_secret


def builtin_defaults_in_use(settings: Settings) -> list[str]:
    """Names of the secret variables set to a value earlier versions shipped as a default."""
    values = {WATERMARK_KEY_VAR: settings.watermark_key, WEBHOOK_SECRET_VAR: settings.webhook_secret}
    return [name for name, value in values.items() if value is not None and value == BUILTIN_DEFAULTS[name]]


def checked_secrets(settings: Settings) -> InstanceSecrets:
    """:func:`resolve` at a command's start, with the C2PA signing identity
    (:func:`gen_server.content_credentials.resolve_identity`, checked by signing a test file): an
    unusable secret or certificate ends the process with its message."""
    from gen_server.content_credentials import resolve_identity

    try:
        found = resolve(settings)
        resolve_identity(settings)
        return found
    except SecretsError as e:
        raise SystemExit(f"soundry: {e}") from None
