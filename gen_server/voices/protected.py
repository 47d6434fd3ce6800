"""The installation's protected voices: reference clips of people who must not be cloned.

They live in ``DATA_DIR/protected_voices/<name>.wav`` (dropped there by an operator, or added with
``soundry voices protect FILE --name NAME``). Before each consent check the API copies them into the
artifact store (:func:`gen_server.storage.protected_voice_key`), where every worker can read them,
and names them in the task; the worker compares the new voice's references with each one's speaker
embedding and refuses a match (the ``protected`` check).
"""

from __future__ import annotations

import re
from pathlib import Path

from gen_server.audio.encode import decode, encode
from gen_server.files import atomic_write
from gen_server.storage import ArtifactStore, protected_voice_key

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


def protected_dir(data_dir: Path) -> Path:
    return data_dir / "protected_voices"


def check_name(name: str) -> str:
    if not _NAME.match(name) or name.endswith(".wav"):
        raise ValueError(
            f"invalid protected voice name {name!r}: letters, digits, '_', '.', '-' (at most 64)"
        )
    return name


def add(data_dir: Path, name: str, data: bytes) -> Path:
    """Decode ``data`` (any common audio format) and keep it as ``<name>.wav``; the file written."""
    path = protected_dir(data_dir) / f"{check_name(name)}.wav"
    atomic_write(path, encode(decode(data, max_duration_s=600.0), "wav", wav_subtype="pcm16", tags={}))
    return path


def names(data_dir: Path) -> list[str]:
    folder = protected_dir(data_dir)
    return sorted(p.stem for p in folder.glob("*.wav") if _NAME.match(p.stem)) if folder.is_dir() else []


def publish(data_dir: Path, store: ArtifactStore) -> list[str]:
    """Copy every protected clip into ``store``; their storage keys (what a consent check compares)."""
    published = []
    for name in names(data_dir):
        key = protected_voice_key(name)
        store.put(key, (protected_dir(data_dir) / f"{name}.wav").read_bytes())
        published.append(key)
    return published
