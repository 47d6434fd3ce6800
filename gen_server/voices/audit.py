"""The voice audit log: one JSON line per event, appended, never rewritten.

``DATA_DIR/audit/voices.jsonl`` on the API host. Events: ``created``, ``refused``, ``approved``,
``deleted``; each names the voice, the API key id (never the secret), the time, and for creations and
refusals the consent clip's SHA-256, the phrase, its one-time code and the verdict's figures.

A plain file rather than a Redis stream: the log must outlive Redis (which is a queue and a cache
here, and whose records expire) and be readable with ``cat``/``jq`` on the host; every event is
written by the API process that decided it, so there is one writer per host. Each line goes out in
one ``write`` on a descriptor opened with ``O_APPEND`` and is fsynced: concurrent writers (API
workers of one host) never interleave lines, and nothing earlier is ever rewritten.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal

AuditEvent = Literal["created", "refused", "approved", "deleted"]


def audit_path(data_dir: Path) -> Path:
    return data_dir / "audit" / "voices.jsonl"


def append(path: Path, event: AuditEvent, voice_id: str, key_id: str | None, **fields: Any) -> dict[str, Any]:
    """Append one event line to ``path`` (created with its folder, mode 0600); the entry written."""
    entry = {"time": time.time(), "event": event, "voice_id": voice_id, "key_id": key_id, **fields}
    line = (json.dumps(entry, sort_keys=True) + "\n").encode()
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    try:
        os.write(fd, line)
        os.fsync(fd)
    finally:
        os.close(fd)
    return entry


def read(path: Path) -> Iterator[dict[str, Any]]:
    """The log's entries, oldest first (none when it does not exist yet)."""
    try:
        fh = path.open(encoding="utf-8")
    except FileNotFoundError:
        return
    with fh:
        for line in fh:
            if line.strip():
                yield json.loads(line)
