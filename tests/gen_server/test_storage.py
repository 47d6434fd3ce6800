"""Artifact storage, local folder and S3 bucket: atomic writes, keys that cannot escape, retention sweep.

The S3 store runs against a real S3-compatible HTTP server (moto's, on loopback), not a mock.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest

from gen_server import s3store
from gen_server.errors import NotFound, StorageError, StorageUnavailable
from gen_server.redis_server import free_port
from gen_server.s3store import S3Store
from gen_server.settings import Settings
from gen_server.storage import ArtifactStore, LocalStore, open_store
from tests.helpers import bucket_keys, new_bucket


@pytest.fixture(params=["local", "s3"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> ArtifactStore:
    """Each protocol test runs on a local folder and on a fresh bucket (under a key prefix)."""
    if request.param == "local":
        return LocalStore(tmp_path)
    endpoint: str = request.getfixturevalue("s3_endpoint")
    return S3Store(new_bucket(endpoint), "soundry/test", endpoint_url=endpoint)


def pause(store: ArtifactStore) -> None:
    """Let the clock move past the store's timestamp resolution (S3 lists whole seconds)."""
    time.sleep(1.1 if isinstance(store, S3Store) else 0.05)


def test_put_get_overwrite_exists(store: ArtifactStore) -> None:
    store.put("jobs/a/audio.wav", b"x" * 1000)
    store.put("jobs/a/audio.wav", b"y" * 10)
    assert store.get("jobs/a/audio.wav") == b"y" * 10
    assert store.exists("jobs/a/audio.wav")
    assert not store.exists("jobs/a/manifest.json")
    assert not store.exists("jobs/a")  # a folder is not an artifact


def test_put_is_atomic_and_leaves_no_temp_files(tmp_path: Path) -> None:
    store = LocalStore(tmp_path)
    store.put("jobs/a/audio.wav", b"x" * 1000)
    store.put("jobs/a/audio.wav", b"y" * 10)
    assert store.get("jobs/a/audio.wav") == b"y" * 10
    assert [p.name for p in (tmp_path / "jobs" / "a").iterdir()] == ["audio.wav"]


def test_stored_files_are_readable_as_the_umask_says(tmp_path: Path) -> None:
    """Artifacts get the mode ``open()`` would give (``mkstemp``'s 0600 made them unreadable to a web
    server or a backup user); a mode asked for (the keys file's 0600) is kept."""
    import os

    from gen_server.files import UMASK_MODE, atomic_write

    store = LocalStore(tmp_path)
    store.put("jobs/a/audio.wav", b"x")
    assert (tmp_path / "jobs/a/audio.wav").stat().st_mode & 0o777 == UMASK_MODE
    umask = os.umask(0)
    os.umask(umask)
    assert 0o666 & ~umask == UMASK_MODE
    atomic_write(tmp_path / "secret", b"k", mode=0o600)
    assert (tmp_path / "secret").stat().st_mode & 0o777 == 0o600


@pytest.mark.parametrize("key", ["../x", "jobs/../../x", "/etc/passwd", "jobs/./a", "a b", "jobs//a", ""])
def test_keys_cannot_escape(store: ArtifactStore, key: str) -> None:
    for call in (lambda: store.put(key, b"x"), lambda: store.get(key), lambda: store.exists(key)):
        with pytest.raises(StorageError, match="invalid storage key"):
            call()


def test_missing_is_not_found(store: ArtifactStore) -> None:
    with pytest.raises(NotFound):
        store.get("jobs/none/audio.wav")


def test_failed_write_raises_storage_error_and_keeps_nothing(tmp_path: Path) -> None:
    store = LocalStore(tmp_path)
    (tmp_path / "jobs").write_text("a file where a folder should be")
    with pytest.raises(StorageError):
        store.put("jobs/a/audio.wav", b"x")
    assert not list(tmp_path.rglob(".tmp-*"))


def test_names_lists_one_folder_level(store: ArtifactStore) -> None:
    for key in ("watermarks/0000beef", "watermarks/deadbeef", "jobs/a/audio.wav", "jobs/a/manifest.json"):
        store.put(key, b"x")
    store.put("jobs/b/audio.wav", b"x")
    assert sorted(store.names("watermarks")) == ["0000beef", "deadbeef"]
    assert sorted(store.names("jobs/")) == ["a", "b"]
    assert list(store.names("never")) == []


def test_delete_prefix_takes_the_folder_not_its_neighbours(store: ArtifactStore) -> None:
    for key in ("jobs/a/audio.wav", "jobs/a/manifest.json", "jobs/ab/audio.wav", "uploads/u"):
        store.put(key, b"x")
    store.delete_prefix("jobs/a/")
    store.delete_prefix("uploads/u")
    store.delete_prefix("jobs/never")
    assert not store.exists("jobs/a/audio.wav") and not store.exists("jobs/a/manifest.json")
    assert not store.exists("uploads/u")
    assert store.exists("jobs/ab/audio.wav")


def test_sweep_removes_entries_whose_newest_object_expired(store: ArtifactStore) -> None:
    for key in ("jobs/old/audio.wav", "jobs/old/manifest.json", "uploads/old", "jobs/mixed/audio.wav"):
        store.put(key, b"x")
    pause(store)
    cutoff = time.time()
    pause(store)
    for key in ("jobs/new/audio.wav", "jobs/mixed/manifest.json", "watermarks/0000abcd"):
        store.put(key, b"x")
    assert store.sweep(older_than_s=60, now=cutoff + 60) == 2
    assert not store.exists("jobs/old/audio.wav") and not store.exists("jobs/old/manifest.json")
    assert not store.exists("uploads/old")
    assert store.exists("jobs/mixed/audio.wav") and store.exists("jobs/new/audio.wav")
    assert store.sweep(older_than_s=60) == 0
    assert store.sweep(older_than_s=0, now=time.time() + 5) == 2
    assert store.exists("watermarks/0000abcd")  # only jobs/ and uploads/ expire


def test_s3_keys_live_under_the_prefix(s3_endpoint: str) -> None:
    bucket = new_bucket(s3_endpoint)
    store = S3Store(bucket, "tenant/soundry", endpoint_url=s3_endpoint)
    store.put("jobs/a/audio.wav", b"x")
    assert bucket_keys(s3_endpoint, bucket) == ["tenant/soundry/jobs/a/audio.wav"]
    store.sweep(older_than_s=0, now=time.time() + 5)
    assert bucket_keys(s3_endpoint, bucket) == []


def test_s3_sweep_deletes_in_batches(s3_endpoint: str, monkeypatch: pytest.MonkeyPatch) -> None:
    store = S3Store(new_bucket(s3_endpoint), endpoint_url=s3_endpoint)
    for i in range(5):
        store.put(f"jobs/j{i}/audio.wav", b"x")
    calls: list[int] = []
    store.client.meta.events.register("before-call.s3.DeleteObjects", lambda **_: calls.append(1))
    monkeypatch.setattr(s3store, "DELETE_BATCH", 2)
    assert store.sweep(older_than_s=0, now=time.time() + 5) == 5
    assert len(calls) == 3
    assert not any(store.exists(f"jobs/j{i}/audio.wav") for i in range(5))


def test_s3_deletes_one_by_one_where_batch_delete_wants_md5(s3_endpoint: str) -> None:
    """Servers from before boto3's CRC32 checksums (old MinIO, Ceph) refuse DeleteObjects without MD5."""
    store = S3Store(new_bucket(s3_endpoint), endpoint_url=s3_endpoint)
    store.put("jobs/a/audio.wav", b"x")
    store.put("jobs/a/manifest.json", b"x")

    def old_server(**_: Any) -> tuple[Any, dict[str, Any]]:
        error = {"Code": "MissingContentMD5", "Message": "Missing required header: Content-Md5."}
        return _Answer(400), {"Error": error, "ResponseMetadata": {"HTTPStatusCode": 400}}

    singles: list[int] = []
    store.client.meta.events.register("before-call.s3.DeleteObjects", old_server)
    store.client.meta.events.register("before-call.s3.DeleteObject", lambda **_: singles.append(1))
    store.delete_prefix("jobs/a")
    assert len(singles) == 2
    assert not store.exists("jobs/a/audio.wav") and not store.exists("jobs/a/manifest.json")


class _Answer:
    """The HTTP side of a refused request, as botocore's ``before-call`` short-circuit expects it."""

    def __init__(self, status_code: int) -> None:
        self.status_code = status_code
        self.headers: dict[str, str] = {}


def test_s3_errors_name_the_key_never_the_secret(s3_endpoint: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "sk-never-shown-1234")
    store = S3Store("no-such-bucket-here", endpoint_url=s3_endpoint)
    with pytest.raises(StorageError) as info:
        store.get("jobs/a/audio.wav")
    assert not isinstance(info.value, NotFound)  # a missing bucket is not a missing artifact
    message = info.value.message
    assert "jobs/a/audio.wav" in message and "NoSuchBucket" in message
    assert "sk-never-shown" not in message and "sk-never-shown" not in repr(info.value.__cause__)


def test_open_store_follows_the_url(tmp_path: Path, s3_endpoint: str) -> None:
    local = open_store(Settings(data_dir=tmp_path))
    assert isinstance(local, LocalStore) and local.root == (tmp_path / "artifacts").resolve()
    folder = open_store(Settings(data_dir=tmp_path, storage_url=f"file://{tmp_path}/shared"))
    assert isinstance(folder, LocalStore) and folder.root == (tmp_path / "shared").resolve()
    bucket = new_bucket(s3_endpoint)
    url = f"s3://{bucket}/soundry/?endpoint_url={s3_endpoint}&region=us-east-1"
    s3 = open_store(Settings(data_dir=tmp_path, storage_url=url))
    assert isinstance(s3, S3Store) and (s3.bucket, s3.prefix) == (bucket, "soundry/")
    s3.put("uploads/u", b"ref")
    assert bucket_keys(s3_endpoint, bucket) == ["soundry/uploads/u"]


@pytest.mark.parametrize(
    ("url", "says"),
    [
        ("gs://bucket/x", "unsupported scheme 'gs'"),
        ("/plain/path", "unsupported scheme"),
        ("s3://", "needs a bucket name"),
        ("s3://AKIAEXAMPLE:wJalrXUtnFEMI@bucket", "must not carry credentials"),
        ("s3://bucket?endpoint_url=http://minio:wJalrXUtnFEMI@minio:9000", "must not carry credentials"),
        ("s3://bucket/../up", "invalid key prefix"),
        ("s3://bucket?endpoint=http://x", "unknown parameter 'endpoint'"),
        ("s3://bucket?endpoint_url=minio:9000", "endpoint_url must be an http"),
        ("file://host/x", "file:///ABSOLUTE/PATH"),
    ],
)
def test_bad_storage_url_is_a_clear_error(tmp_path: Path, url: str, says: str) -> None:
    with pytest.raises(StorageError) as info:
        open_store(Settings(data_dir=tmp_path, storage_url=url))
    assert info.value.message.startswith("SOUNDRY_STORAGE_URL") and says in info.value.message
    assert "wJalrXUtnFEMI" not in info.value.message


def test_check_passes_on_a_usable_store(store: ArtifactStore) -> None:
    store.check()


def test_check_names_what_makes_a_store_unusable(tmp_path: Path, s3_endpoint: str) -> None:
    (tmp_path / "a-file").write_text("x")
    with pytest.raises(StorageError, match="cannot write to the artifact folder"):
        LocalStore(tmp_path / "a-file" / "artifacts").check()
    with pytest.raises(StorageError, match="cannot use bucket no-such-bucket: no such bucket"):
        S3Store("no-such-bucket", endpoint_url=s3_endpoint).check()
    unreachable = S3Store("b", endpoint_url=f"http://127.0.0.1:{free_port()}")
    attempts: list[int] = []
    unreachable.client.meta.events.register("before-send.s3.HeadBucket", lambda **_: attempts.append(1))
    with pytest.raises(StorageError, match="cannot reach bucket b"):
        unreachable.check()
    # retried a few times, then a clear answer: counted, not timed (the time is backoff and the CPU's);
    # botocore sends 6 with max_attempts 5 (standard retries)
    assert 2 <= len(attempts) <= 10, attempts


@pytest.mark.parametrize(
    ("url", "says"),
    [
        ("gs://bucket", "SOUNDRY_STORAGE_URL: unsupported scheme 'gs'"),
        ("s3://missing-bucket?endpoint_url={endpoint}", "cannot use bucket missing-bucket: no such bucket"),
    ],
)
def test_cli_refuses_to_start_on_unusable_storage(
    url: str,
    says: str,
    tmp_path: Path,
    s3_endpoint: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    from gen_server.cli import main as cli_main
    from gen_server.settings import get_settings

    monkeypatch.setenv("SOUNDRY_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("SOUNDRY_STORAGE_URL", url.format(endpoint=s3_endpoint))
    get_settings.cache_clear()
    try:
        assert cli_main(["worker"]) == 2
    finally:
        get_settings.cache_clear()
    assert says in capsys.readouterr().err


def test_an_unreachable_bucket_is_worth_retrying(tmp_path: Path) -> None:
    """Connection failures (after botocore's retries) are transient: the job is retried, not failed."""
    store = S3Store("b", endpoint_url=f"http://127.0.0.1:{free_port()}")
    with pytest.raises(StorageUnavailable) as info:
        store.put("jobs/a/audio.wav", b"x")
    assert info.value.retryable and info.value.http_status == 503
    assert "jobs/a/audio.wav in bucket b" in info.value.message
