"""API keys: created by ``soundry keys create``, stored hashed, sent as ``Authorization: Bearer``.

ElevenLabs-style clients may send the key as ``xi-api-key`` instead (see ``gen_server.deps``).

Keys live in ``$SOUNDRY_DATA_DIR/keys.json`` (SHA-256 digests only, never the keys), so they can be
created while the server is down and shared by several API hosts on one data folder. With no keys
the server is a local single-user one and binds to loopback only.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
import time
from pathlib import Path

from pydantic import BaseModel, Field

from gen_server.errors import Unauthorized
from gen_server.files import atomic_write

KEY_PREFIX = "sk-soundry-"


class ApiKey(BaseModel):
    """A stored key (the digest, never the key itself)."""

    id: str
    name: str
    digest: str
    admin: bool = False
    rate_per_min: int = Field(120, ge=1)
    max_concurrent_jobs: int = Field(20, ge=1)
    created_at: float


def digest(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


class KeyStore:
    """The keys file, re-read when it changes on disk."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._mtime: float | None = None
        self._keys: list[ApiKey] = []

    def _load(self) -> list[ApiKey]:
        try:
            mtime = self.path.stat().st_mtime
        except FileNotFoundError:
            self._mtime, self._keys = None, []
            return self._keys
        if mtime != self._mtime:
            self._keys = [ApiKey.model_validate(k) for k in json.loads(self.path.read_text())]
            self._mtime = mtime
        return self._keys

    @property
    def enabled(self) -> bool:
        return bool(self._load())

    def all(self) -> list[ApiKey]:
        return list(self._load())

    def verify(self, presented: str) -> ApiKey:
        """The key matching ``presented``; every stored digest is compared in constant time."""
        wanted = digest(presented)
        found: ApiKey | None = None
        for key in self._load():
            if hmac.compare_digest(key.digest, wanted):
                found = key
        if found is None:
            raise Unauthorized("invalid API key")
        return found

    def create(
        self, name: str, *, admin: bool = False, rate_per_min: int = 120, max_concurrent_jobs: int = 20
    ) -> tuple[str, ApiKey]:
        """Add a key; returns the secret (shown once) and its stored record."""
        if not name.strip():
            raise ValueError("a key needs a name")
        secret = KEY_PREFIX + secrets.token_urlsafe(32)
        record = ApiKey(
            id=secrets.token_hex(6),
            name=name.strip(),
            digest=digest(secret),
            admin=admin,
            rate_per_min=rate_per_min,
            max_concurrent_jobs=max_concurrent_jobs,
            created_at=time.time(),
        )
        self._write([*self._load(), record])
        return secret, record

    def revoke(self, key_id: str) -> bool:
        keys = self._load()
        kept = [k for k in keys if k.id != key_id]
        self._write(kept)
        return len(kept) != len(keys)

    def _write(self, keys: list[ApiKey]) -> None:
        atomic_write(self.path, json.dumps([k.model_dump() for k in keys], indent=2).encode(), mode=0o600)
        self._mtime = None


def keys_path(data_dir: Path) -> Path:
    return data_dir / "keys.json"
