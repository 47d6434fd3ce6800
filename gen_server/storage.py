"""Artifact storage: keys like ``jobs/<id>/audio.wav``; every write is atomic (temp file + rename).

The local directory store is the default; several hosts share one folder (NFS) or an S3-compatible
bucket (see README, scale-out). Torch-free: the API reads what workers write.
"""

from __future__ import annotations

import os
import re
import tempfile
from pathlib import Path
from typing import Protocol

from gen_server.errors import NotFound, StorageError

_KEY = re.compile(r"^[A-Za-z0-9_.-]+(/[A-Za-z0-9_.-]+)*$")


def audio_key(job_id: str, fmt: str) -> str:
    return f"jobs/{job_id}/audio.{fmt}"


def manifest_key(job_id: str) -> str:
    return f"jobs/{job_id}/manifest.json"


def watermark_key_for(payload: int) -> str:
    """Index entry: a detected watermark payload -> the job id that carries it."""
    return f"watermarks/{payload:08x}"


def upload_key(upload_id: str) -> str:
    return f"uploads/{upload_id}"


class ArtifactStore(Protocol):
    def put(self, key: str, data: bytes) -> None: ...
    def get(self, key: str) -> bytes: ...
    def exists(self, key: str) -> bool: ...
    def delete_prefix(self, prefix: str) -> None: ...


class LocalStore:
    """Artifacts as files under ``root``; keys can never escape it."""

    def __init__(self, root: Path) -> None:
        self.root = root.resolve()

    def path(self, key: str) -> Path:
        """The file for ``key``, refusing keys that could leave ``root``."""
        if not _KEY.match(key) or any(part in ("..", ".") for part in key.split("/")):
            raise StorageError(f"invalid storage key {key!r}")
        path = (self.root / key).resolve()
        if not path.is_relative_to(self.root):
            raise StorageError(f"storage key {key!r} escapes the data folder")
        return path

    def put(self, key: str, data: bytes) -> None:
        """Write ``data`` atomically: readers see the old file or the whole new one, never a part."""
        path = self.path(key)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(prefix=".tmp-", dir=path.parent)
            try:
                with os.fdopen(fd, "wb") as fh:
                    fh.write(data)
                    fh.flush()
                    os.fsync(fh.fileno())
                os.replace(tmp, path)
            except BaseException:
                Path(tmp).unlink(missing_ok=True)
                raise
        except OSError as e:
            raise StorageError(f"could not write {key}: {e.strerror or e}") from e

    def get(self, key: str) -> bytes:
        path = self.path(key)
        try:
            return path.read_bytes()
        except FileNotFoundError:
            raise NotFound(f"no artifact {key}") from None

    def exists(self, key: str) -> bool:
        return self.path(key).is_file()

    def delete_prefix(self, prefix: str) -> None:
        import shutil

        path = self.path(prefix.rstrip("/"))
        if path.is_dir():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)


    def sweep(self, older_than_s: float, now: float | None = None) -> int:
        """Delete job folders and uploads last modified more than ``older_than_s`` ago; returns how many."""
        import shutil
        import time

        cutoff = (now if now is not None else time.time()) - older_than_s
        removed = 0
        for group in ("jobs", "uploads"):
            folder = self.root / group
            if not folder.is_dir():
                continue
            for entry in folder.iterdir():
                try:
                    if entry.stat().st_mtime >= cutoff:
                        continue
                    if entry.is_dir():
                        shutil.rmtree(entry)
                    else:
                        entry.unlink()
                    removed += 1
                except FileNotFoundError:
                    continue
        return removed


def open_store(data_dir: Path) -> LocalStore:
    return LocalStore(data_dir / "artifacts")
