"""Artifacts as objects in an S3-compatible bucket (AWS S3, MinIO, Ceph RGW, Cloudflare R2), via boto3.

Selected by ``SOUNDRY_STORAGE_URL=s3://BUCKET[/PREFIX]`` (see :func:`gen_server.storage.open_store`).
Every host (API, workers) opens the same bucket, so no shared folder is needed. Credentials and the
endpoint come from boto3's standard chain (``AWS_ACCESS_KEY_ID``/``AWS_SECRET_ACCESS_KEY``,
``~/.aws``, an instance role; ``AWS_ENDPOINT_URL``); this module never logs them and error messages
name only the bucket, the key and the server's error code.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterable, Iterator
from typing import Any

from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    ConnectionClosedError,
    ConnectTimeoutError,
    EndpointConnectionError,
    ReadTimeoutError,
)

from gen_server.errors import NotFound, StorageError, StorageUnavailable
from gen_server.storage import SWEPT_GROUPS, URL_SETTING, check_key

DELETE_BATCH = 1000
"""Most keys one ``DeleteObjects`` request may name (the S3 API's limit)."""

_MISSING = frozenset({"NoSuchKey", "404", "NotFound"})
"""Error codes of a missing object (``HeadObject`` answers a bare 404 without a body)."""

_UNREACHABLE = (EndpointConnectionError, ConnectionClosedError, ConnectTimeoutError, ReadTimeoutError)
"""Failures to reach the server, after botocore's own retries: worth retrying the job later."""


class S3Store:
    """Artifacts as objects ``PREFIX/KEY`` in ``bucket``; keys are checked like :class:`LocalStore`'s.

    Writes are atomic because an S3 ``PutObject`` is whole-object: readers see the old object or
    the whole new one, never a part, and the object exists only once the upload completed. The
    boto3 client is thread-safe and shared by the API's and the worker's threads.
    """

    def __init__(
        self,
        bucket: str,
        prefix: str = "",
        *,
        endpoint_url: str | None = None,
        region: str | None = None,
    ) -> None:
        """Open ``bucket`` (no request is made until the first call).

        Args:
            bucket: Bucket name.
            prefix: Key prefix inside the bucket (``soundry/prod``), without slashes at the ends.
            endpoint_url: S3-compatible server (``http://minio:9000``); ``None`` lets boto3 use
                ``AWS_ENDPOINT_URL`` or AWS itself.
            region: Signing region; ``None`` lets boto3 use ``AWS_REGION``/``AWS_DEFAULT_REGION``.
        """
        self.bucket = bucket
        self.prefix = f"{check_key(prefix)}/" if prefix else ""
        self.client = _client(endpoint_url, region)

    def object_key(self, key: str) -> str:
        """The bucket key of store key ``key``, refusing keys that could leave the prefix."""
        return self.prefix + check_key(key)

    def put(self, key: str, data: bytes) -> None:
        """Upload ``data`` in one ``PutObject``: atomic (the whole object or the previous one)."""
        name = self.object_key(key)
        with self._errors("write", key):
            self.client.put_object(Bucket=self.bucket, Key=name, Body=data)

    def get(self, key: str) -> bytes:
        """The object's bytes.

        Raises:
            NotFound: When there is no object ``key``.
            StorageError: On any other failure (access denied, no bucket, unreachable server).
        """
        name = self.object_key(key)
        with self._errors("read", key):
            body = self.client.get_object(Bucket=self.bucket, Key=name)["Body"]
            try:
                data: bytes = body.read()
            finally:
                body.close()
        return data

    def exists(self, key: str) -> bool:
        """Whether object ``key`` exists (one ``HeadObject``; needs ``s3:ListBucket`` to see a 404)."""
        name = self.object_key(key)
        try:
            with self._errors("look up", key):
                self.client.head_object(Bucket=self.bucket, Key=name)
        except NotFound:
            return False
        return True

    def check(self) -> None:
        """The bucket exists and these credentials reach it (one ``HeadBucket``).

        Raises:
            StorageError: Naming the bucket and the server's answer (no bucket, access denied,
                unreachable endpoint); never the credentials.
        """
        try:
            self.client.head_bucket(Bucket=self.bucket)
        except ClientError as e:
            code = _code(e)
            why = "no such bucket" if code in _MISSING | {"NoSuchBucket"} else _describe(e)
            raise StorageError(f"{URL_SETTING}: cannot use bucket {self.bucket}: {why}") from e
        except BotoCoreError as e:
            raise StorageError(f"{URL_SETTING}: cannot reach bucket {self.bucket}: {e}") from e

    def delete_prefix(self, prefix: str) -> None:
        """Delete the object ``prefix`` and every object under ``prefix/`` (not ``prefix-other``)."""
        name = self.object_key(prefix.rstrip("/"))
        doomed = [key for key, _ in self._listing(name) if key == name or key.startswith(name + "/")]
        self._delete(doomed)

    def names(self, folder: str) -> Iterator[str]:
        """Names of the entries directly under ``folder/`` (one listing, page by page)."""
        base = self.object_key(folder.rstrip("/")) + "/"
        seen: set[str] = set()
        for key, _ in self._listing(base):
            name = key[len(base) :].split("/", 1)[0]
            if name not in seen:
                seen.add(name)
                yield name

    def sweep(self, older_than_s: float, now: float | None = None) -> int:
        """Delete job folders and uploads whose newest object is older than ``older_than_s``.

        Lists ``jobs/`` and ``uploads/`` (one entry is a job folder or an upload), then deletes the
        expired entries' objects in batches of up to 1000 keys.

        Args:
            older_than_s: Retention in seconds.
            now: The current time (seconds since the epoch); defaults to ``time.time()``.

        Returns:
            How many entries (job folders, uploads) were deleted.
        """
        cutoff = (now if now is not None else time.time()) - older_than_s
        removed = 0
        doomed: list[str] = []
        for group in SWEPT_GROUPS:
            for keys, newest in self._entries(f"{self.prefix}{group}/"):
                if newest >= cutoff:
                    continue
                doomed.extend(keys)
                removed += 1
                if len(doomed) >= DELETE_BATCH:
                    self._delete(doomed)
                    doomed = []
        self._delete(doomed)
        return removed

    def _entries(self, folder: str) -> Iterator[tuple[list[str], float]]:
        """Each entry directly under ``folder``: its object keys and its newest object's mtime (epoch s)."""
        entries: dict[str, tuple[list[str], float]] = {}
        for key, modified in self._listing(folder):
            name = key[len(folder) :].split("/", 1)[0]
            keys, newest = entries.get(name, ([], 0.0))
            keys.append(key)
            entries[name] = (keys, max(newest, modified))
        yield from entries.values()

    def _listing(self, prefix: str) -> Iterator[tuple[str, float]]:
        """Every (bucket key, last-modified epoch seconds) under ``prefix``, page by page."""
        with self._errors("list", prefix):
            pages = self.client.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=prefix)
            for page in pages:
                for item in page.get("Contents", []):
                    yield str(item["Key"]), float(item["LastModified"].timestamp())

    def _delete(self, keys: list[str]) -> None:
        """Delete bucket keys ``keys``, up to 1000 per ``DeleteObjects`` request."""
        for start in range(0, len(keys), DELETE_BATCH):
            batch = keys[start : start + DELETE_BATCH]
            with self._errors("delete", batch[0]):
                try:
                    self._delete_batch(batch)
                except ClientError as e:
                    if not _wants_md5(e):
                        raise
                    self._delete_each(batch)

    def _delete_batch(self, keys: list[str]) -> None:
        """One ``DeleteObjects``; a key the server could not delete is an error."""
        objects = [{"Key": key} for key in keys]
        answer = self.client.delete_objects(Bucket=self.bucket, Delete={"Objects": objects, "Quiet": True})
        failed: list[dict[str, str]] = answer.get("Errors", [])
        if failed:
            first = failed[0]
            raise StorageError(
                f"could not delete {first.get('Key')} in bucket {self.bucket} ({len(failed)} keys failed): "
                f"{first.get('Code')}: {first.get('Message')}"
            )

    def _delete_each(self, keys: Iterable[str]) -> None:
        """One ``DeleteObject`` per key, for servers that refuse batch deletes without Content-MD5.

        boto3 >= 1.36 sends a CRC32 checksum instead of ``Content-MD5``; some S3-compatible servers
        (MinIO before 2025, older Ceph RGW) answer ``MissingContentMD5``.
        """
        for key in keys:
            with self._errors("delete", key):
                self.client.delete_object(Bucket=self.bucket, Key=key)

    @contextlib.contextmanager
    def _errors(self, action: str, key: str) -> Iterator[None]:
        """Turn boto3 errors into errors naming ``key``.

        A missing object is ``NotFound``; a server that cannot be reached or answers 5xx (after
        botocore's retries) is ``StorageUnavailable``, so the job is retried with backoff; anything
        else (access denied, no bucket, no credentials) is a permanent ``StorageError``.
        """
        where = f"{key} in bucket {self.bucket}"
        try:
            yield
        except ClientError as e:
            code = _code(e)
            if code in _MISSING:
                raise NotFound(f"no artifact {key}") from e
            status = int(e.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0)
            if status >= 500 or code in ("SlowDown", "ServiceUnavailable", "RequestTimeout"):
                raise StorageUnavailable(f"could not {action} {where}: {_describe(e)}") from e
            raise StorageError(f"could not {action} {where}: {_describe(e)}") from e
        except _UNREACHABLE as e:
            raise StorageUnavailable(f"could not {action} {where}: {e}") from e
        except BotoCoreError as e:  # no credentials, bad configuration
            raise StorageError(f"could not {action} {where}: {e}") from e


def _code(e: ClientError) -> str:
    """The S3 error code (``NoSuchKey``, ``AccessDenied``, ``404`` for a bodiless HEAD answer)."""
    return str(e.response.get("Error", {}).get("Code", "unknown"))


def _describe(e: ClientError) -> str:
    """``CODE: message`` from the server's answer (never the request, so never a credential)."""
    message = e.response.get("Error", {}).get("Message")
    status = e.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
    return f"{_code(e)}: {message or f'HTTP {status}'}"


def _wants_md5(e: ClientError) -> bool:
    """Whether the server refused a batch delete for lack of a ``Content-MD5`` header."""
    message = str(e.response.get("Error", {}).get("Message", ""))
    return _code(e) == "MissingContentMD5" or "content-md5" in message.lower()


def _client(endpoint_url: str | None, region: str | None) -> Any:
    """A thread-safe S3 client from a private boto3 session (the default session is not thread-safe).

    Checksums are computed only where the API requires them: boto3 >= 1.36 otherwise adds
    ``x-amz-checksum-*`` headers that several S3-compatible servers reject. Integrity is still
    covered by TLS and by the ``sha256`` every job result records. With an endpoint set, botocore
    addresses buckets path-style (``http://host/bucket/key``), which MinIO and Ceph expect.
    """
    import boto3
    from botocore.config import Config

    config = Config(
        retries={"mode": "standard", "max_attempts": 5},
        connect_timeout=10,
        read_timeout=60,
        max_pool_connections=32,
        request_checksum_calculation="when_required",
        response_checksum_validation="when_required",
    )
    session = boto3.session.Session()
    return session.client("s3", endpoint_url=endpoint_url, region_name=region, config=config)
