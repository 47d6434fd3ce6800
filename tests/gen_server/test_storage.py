"""Local artifact storage: atomic writes, keys that cannot escape, retention sweep."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from gen_server.errors import NotFound, StorageError
from gen_server.storage import LocalStore


def test_put_is_atomic_and_leaves_no_temp_files(tmp_path: Path) -> None:
    store = LocalStore(tmp_path)
    store.put("jobs/a/audio.wav", b"x" * 1000)
    store.put("jobs/a/audio.wav", b"y" * 10)
    assert store.get("jobs/a/audio.wav") == b"y" * 10
    assert [p.name for p in (tmp_path / "jobs" / "a").iterdir()] == ["audio.wav"]


@pytest.mark.parametrize("key", ["../x", "jobs/../../x", "/etc/passwd", "jobs/./a", "a b", "jobs//a", ""])
def test_keys_cannot_escape(tmp_path: Path, key: str) -> None:
    with pytest.raises(StorageError):
        LocalStore(tmp_path).put(key, b"x")


def test_missing_is_not_found(tmp_path: Path) -> None:
    with pytest.raises(NotFound):
        LocalStore(tmp_path).get("jobs/none/audio.wav")


def test_failed_write_raises_storage_error_and_keeps_nothing(tmp_path: Path) -> None:
    store = LocalStore(tmp_path)
    (tmp_path / "jobs").write_text("a file where a folder should be")
    with pytest.raises(StorageError):
        store.put("jobs/a/audio.wav", b"x")
    assert not list(tmp_path.rglob(".tmp-*"))


def test_sweep_removes_only_expired(tmp_path: Path) -> None:
    store = LocalStore(tmp_path)
    store.put("jobs/old/audio.wav", b"x")
    store.put("jobs/new/audio.wav", b"x")
    store.put("uploads/old", b"x")
    past = time.time() - 10_000
    os.utime(tmp_path / "jobs" / "old", (past, past))
    os.utime(tmp_path / "uploads" / "old", (past, past))
    assert store.sweep(older_than_s=3600) == 2
    assert store.exists("jobs/new/audio.wav") and not store.exists("jobs/old/audio.wav")
