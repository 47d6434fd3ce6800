"""Where an audiocraft model's (MusicGen, AudioGen) weights come from, checked before loading.

First match wins:

1. ``tiny:<name>`` sources: the tiny random checkpoint from :func:`workers.tiny.ensure_tiny`.
2. ``<models_dir>/<model id>/`` holding ``state_dict.bin`` (an exported audiocraft folder).
3. The hub id (``facebook/musicgen-small``), used only when it is already in the local Hugging Face
   cache, unless ``settings.allow_downloads``. Otherwise :class:`ModelUnavailable` at once.

A melody model also needs the Demucs ``htdemucs`` weights of its chroma conditioner: read from the
checkpoint folder's ``demucs/`` when it ships one (:func:`local_demucs`); otherwise Demucs fetches
them itself, so with downloads off they must be cached already (checked here).
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from gen_server.contract.catalog import ModelEntry
from gen_server.errors import ModelUnavailable
from gen_server.settings import Settings

AUDIOCRAFT_FILES = ("state_dict.bin", "compression_state_dict.bin")
DEMUCS_REPO_DIR = "demucs"
"""A checkpoint folder may ship a Demucs local repository (``demucs/htdemucs.th``) for melody models."""
_HTDEMUCS_HF_REPO = "adefossez/HTDemucs"
_HTDEMUCS_TORCH_HUB_FILE = "955717e8-8726e21a.th"

_DEMUCS_PATCH_LOCK = threading.Lock()


@contextlib.contextmanager
def local_demucs(repo: Path | None) -> Iterator[None]:
    """Make ``demucs.pretrained.get_model`` read the local repository ``repo`` while active.

    audiocraft's ``ChromaStemConditioner`` calls ``demucs.pretrained.get_model('htdemucs')`` in its
    constructor with no way to pass a repository, which downloads the weights. A checkpoint folder
    that ships ``demucs/htdemucs.th`` is loaded from there instead. ``None`` changes nothing.
    """
    if repo is None:
        yield
        return
    from demucs import pretrained

    original = pretrained.get_model

    def get_model(name: str, repo: Path | None = repo) -> Any:  # default: the local repository
        return original(name, repo=repo)

    with _DEMUCS_PATCH_LOCK:
        pretrained.get_model = get_model
        try:
            yield
        finally:
            pretrained.get_model = original


def unavailable_message(entry: ModelEntry, settings: Settings, missing: str) -> str:
    """The ModelUnavailable text: what is missing and the two ways to get it."""
    why = "it could not be downloaded" if settings.allow_downloads else "downloads are off"
    return (
        f"model '{entry.id}' is not available on this machine: {missing}; {why}. Run "
        f"`soundry models pull {entry.id}` on a machine with internet access (then copy the cache), "
        f"or put the checkpoint folder at {settings.resolved_models_dir / entry.id}"
    )


def hf_cached(repo_id: str, filename: str) -> bool:
    """Whether ``repo_id/filename`` is in the local Hugging Face cache (no network)."""
    from huggingface_hub import try_to_load_from_cache

    found = try_to_load_from_cache(repo_id, filename)
    return isinstance(found, str)


def _htdemucs_cached() -> bool:
    if hf_cached(_HTDEMUCS_HF_REPO, "htdemucs.yaml"):
        return True
    import torch.hub

    return (Path(torch.hub.get_dir()) / "checkpoints" / _HTDEMUCS_TORCH_HUB_FILE).is_file()


def resolve_audiocraft_source(entry: ModelEntry, settings: Settings) -> str:
    """Folder or hub id to hand to ``get_pretrained`` (see the module docstring for the order).

    Raises:
        ModelUnavailable: A hub model that is not cached while downloads are off (fast, no network).
    """
    if entry.source.startswith("tiny:"):
        from workers.tiny import ensure_tiny

        return str(ensure_tiny(entry.source, settings.resolved_models_dir))
    for folder in (settings.resolved_models_dir / entry.id, Path(entry.source)):
        if (folder / "state_dict.bin").is_file():
            return str(folder)
    if not settings.allow_downloads:
        missing = [f for f in AUDIOCRAFT_FILES if not hf_cached(entry.source, f)]
        if missing:
            raise ModelUnavailable(
                unavailable_message(
                    entry, settings, f"{', '.join(missing)} of {entry.source} not in the Hugging Face cache"
                )
            )
        if entry.melody and not _htdemucs_cached():
            raise ModelUnavailable(
                unavailable_message(
                    entry, settings, "the Demucs 'htdemucs' weights of its melody conditioner are not cached"
                )
            )
    return entry.source
