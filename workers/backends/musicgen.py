"""MusicGen backend: text (and melody) to music through audiocraft's ``MusicGen``."""

from __future__ import annotations

from typing import Any

from workers.backends._audiocraft import AudiocraftBackend


class MusicGenBackend(AudiocraftBackend):
    """``audiocraft.models.MusicGen`` behind the :class:`~workers.backends.base.Backend` interface.

    Melody models (``entry.melody``) take ``GenRequest.melody`` through ``generate_with_chroma``.
    """

    def _get_pretrained(self, source: str, device: str) -> Any:
        from audiocraft.models import MusicGen

        return MusicGen.get_pretrained(source, device=device)
