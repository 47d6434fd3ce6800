"""Artifact storage: keys like ``jobs/<id>/audio.wav``; every write is atomic.

The local directory store is the default (temp file + rename). Several hosts share one folder (NFS)
or an S3-compatible bucket (:class:`gen_server.s3store.S3Store`), chosen by ``SOUNDRY_STORAGE_URL``
(see README, scale-out). Torch-free: the API reads what workers write.
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Protocol
from urllib.parse import parse_qs, unquote, urlsplit

from gen_server.errors import NotFound, StorageError
from gen_server.files import atomic_write

if TYPE_CHECKING:
    from gen_server.settings import Settings

_KEY = re.compile(r"^[A-Za-z0-9_.-]+(/[A-Za-z0-9_.-]+)*$")
SWEPT_GROUPS = ("jobs", "uploads")
"""Top-level key folders the retention sweep expires, one entry (job folder, upload) at a time."""
URL_SETTING = "SOUNDRY_STORAGE_URL"


def check_key(key: str) -> str:
    """``key`` itself when it is a safe storage key: ``a/b.c`` segments, no ``.``/``..``, no ``//``.

    Raises:
        StorageError: When the key could leave the store's root (folder or bucket prefix).
    """
    if not _KEY.match(key) or any(part in ("..", ".") for part in key.split("/")):
        raise StorageError(f"invalid storage key {key!r}")
    return key


def audio_key(job_id: str, fmt: str) -> str:
    return f"jobs/{job_id}/audio.{fmt}"


def transcoded_key(job_id: str, fmt: str) -> str:
    """A signed transcode of the job's audio, kept so every download (and byte range) is the same file."""
    return f"jobs/{job_id}/transcoded.{fmt}"


def manifest_key(job_id: str) -> str:
    return f"jobs/{job_id}/manifest.json"


def export_key(job_id: str, name: str) -> str:
    """A file of a scene's export (``stems/01-voice.wav``, ``timeline.otio``, ...), kept with its mix."""
    return f"jobs/{job_id}/export/{name}"


WATERMARK_INDEX = "watermarks"
"""Folder of the watermark index: one entry per issued payload, named by its hex, holding the job id."""


def watermark_key_for(payload: int) -> str:
    """Index entry: a detected watermark payload -> the job id that carries it."""
    return f"{WATERMARK_INDEX}/{payload:08x}"


def upload_key(upload_id: str) -> str:
    return f"uploads/{upload_id}"


def voice_prefix(voice_id: str) -> str:
    """Everything of a library voice: its clips and the models' cached conditioning (deleted together)."""
    return f"voices/{voice_id}"


def voice_reference_key(voice_id: str, index: int) -> str:
    """Reference clip ``index`` (0-2) of a voice, 32-bit float WAV as uploaded."""
    return f"{voice_prefix(voice_id)}/reference-{index}.wav"


def voice_consent_key(voice_id: str) -> str:
    """The consent clip of a voice (its SHA-256 is in the voice record and the audit log)."""
    return f"{voice_prefix(voice_id)}/consent.wav"


def voice_conditioning_key(voice_id: str, model_id: str) -> str:
    """A model's conditioning computed from a voice's references (XTTS: its GPT latents and speaker
    embedding, ``torch.save``d), under the voice's prefix: deleted with the voice."""
    safe = re.sub(r"[^A-Za-z0-9_.-]", "_", model_id).strip(".") or "model"
    return f"{voice_prefix(voice_id)}/conditioning/{safe}.pt"


def protected_voice_key(name: str) -> str:
    """A protected voice's reference clip as workers read it (copied from DATA_DIR/protected_voices)."""
    return f"protected_voices/{name}.wav"


class ArtifactStore(Protocol):
    """Where artifacts live; every implementation validates keys with :func:`check_key`.

    ``put`` is atomic (readers see the old value or the whole new one); ``get`` raises ``NotFound``
    for a missing key and ``StorageError`` for any other failure.
    """

    def put(self, key: str, data: bytes) -> None: ...
    def get(self, key: str) -> bytes: ...
    def exists(self, key: str) -> bool: ...
    def delete_prefix(self, prefix: str) -> None: ...
    def names(self, folder: str) -> Iterator[str]:
        """Names of the entries directly under ``folder/`` (files or sub-folders; none if it is absent)."""
        ...

    def sweep(self, older_than_s: float, now: float | None = None) -> int: ...
    def check(self) -> None:
        """Raise ``StorageError`` when the store cannot be used (checked at startup)."""
        ...


class LocalStore:
    """Artifacts as files under ``root``; keys can never escape it."""

    def __init__(self, root: Path) -> None:
        self.root = root.resolve()

    def path(self, key: str) -> Path:
        """The file for ``key``, refusing keys that could leave ``root``."""
        path = (self.root / check_key(key)).resolve()
        if not path.is_relative_to(self.root):
            raise StorageError(f"storage key {key!r} escapes the data folder")
        return path

    def put(self, key: str, data: bytes) -> None:
        """Write ``data`` atomically: readers see the old file or the whole new one, never a part."""
        try:
            atomic_write(self.path(key), data)
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

    def check(self) -> None:
        """The folder exists (made if missing) and this process may write to it."""
        try:
            self.root.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(prefix=".tmp-check-", dir=self.root)
            os.close(fd)
            os.unlink(tmp)
        except OSError as e:
            raise StorageError(f"cannot write to the artifact folder {self.root}: {e.strerror or e}") from e

    def delete_prefix(self, prefix: str) -> None:
        """Delete the file ``prefix`` or the folder ``prefix/`` with everything in it."""
        path = self.path(prefix.rstrip("/"))
        if path.is_dir():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)

    def names(self, folder: str) -> Iterator[str]:
        """Names of the entries directly under ``folder/`` (atomic writes' temporary files excluded)."""
        path = self.path(folder.rstrip("/"))
        if path.is_dir():
            with os.scandir(path) as entries:
                yield from (e.name for e in entries if not e.name.startswith("."))

    def sweep(self, older_than_s: float, now: float | None = None) -> int:
        """Delete job folders and uploads last modified more than ``older_than_s`` ago; returns how many."""
        cutoff = (now if now is not None else time.time()) - older_than_s
        removed = 0
        for group in SWEPT_GROUPS:
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


def storage_location(settings: Settings) -> str:
    """Where artifacts live, as ``soundry status`` shows it: the storage URL or the local folder."""
    return settings.storage_url or f"file://{settings.artifacts_dir.resolve()}"


def open_store(settings: Settings) -> ArtifactStore:
    """The store ``SOUNDRY_STORAGE_URL`` names; unset: files under ``$SOUNDRY_DATA_DIR/artifacts``.

    ``s3://BUCKET[/PREFIX][?endpoint_url=URL&region=NAME]`` opens an S3-compatible bucket (AWS S3,
    MinIO, Ceph, R2): the endpoint may also come from ``AWS_ENDPOINT_URL`` and the credentials come
    from the standard AWS chain (environment, ``~/.aws``, instance role), never from this URL.
    ``file:///PATH`` stores files under ``PATH``.

    Raises:
        StorageError: When the URL is malformed or names an unsupported scheme (a startup error).
    """
    url = settings.storage_url
    if not url:
        return LocalStore(settings.artifacts_dir)
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme == "file":
        return _file_store(parts.netloc, parts.path, parts.query)
    if scheme == "s3":
        return _s3_store(parts.netloc, parts.path, parts.query)
    raise StorageError(
        f"{URL_SETTING}: unsupported scheme {scheme or '(none)'!r}; use s3://BUCKET[/PREFIX] or file:///PATH"
    )


def _file_store(host: str, path: str, query: str) -> LocalStore:
    """``file:///PATH`` (or ``file://localhost/PATH``): a local folder, absolute."""
    if host not in ("", "localhost") or query or not path.startswith("/"):
        raise StorageError(f"{URL_SETTING}: a file URL is file:///ABSOLUTE/PATH")
    return LocalStore(Path(unquote(path)))


def _s3_store(bucket: str, path: str, query: str) -> ArtifactStore:
    """``s3://BUCKET[/PREFIX][?endpoint_url=...&region=...]`` -> :class:`~gen_server.s3store.S3Store`."""
    from gen_server.s3store import S3Store

    if "@" in bucket:
        raise _credentials_in_url()
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]*", bucket):
        raise StorageError(f"{URL_SETTING}: s3://BUCKET[/PREFIX] needs a bucket name, got {bucket!r}")
    prefix = path.strip("/")
    if prefix:
        try:
            check_key(prefix)
        except StorageError as e:
            raise StorageError(f"{URL_SETTING}: invalid key prefix {prefix!r} after the bucket") from e
    params = parse_qs(query, keep_blank_values=True)
    unknown = sorted(set(params) - {"endpoint_url", "region"})
    if unknown:
        raise StorageError(f"{URL_SETTING}: unknown parameter {unknown[0]!r} (known: endpoint_url, region)")
    endpoint = params.get("endpoint_url", [None])[-1]
    if endpoint is not None:
        if "@" in urlsplit(endpoint).netloc:
            raise _credentials_in_url()
        if urlsplit(endpoint).scheme not in ("http", "https"):
            raise StorageError(f"{URL_SETTING}: endpoint_url must be an http:// or https:// URL")
    return S3Store(bucket, prefix, endpoint_url=endpoint, region=params.get("region", [None])[-1])


def _credentials_in_url() -> StorageError:
    """The error for a storage URL with ``user:secret@``; it never repeats the URL (the secret)."""
    return StorageError(
        f"{URL_SETTING} must not carry credentials; set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY "
        "(or use an AWS profile or instance role) instead"
    )
