"""AudioGen backend: text to sound effects through audiocraft's ``AudioGen``."""

from __future__ import annotations

from typing import Any

from workers.backends._audiocraft import AudiocraftBackend


class AudioGenBackend(AudiocraftBackend):
    """``audiocraft.models.AudioGen`` (16 kHz, 10 s window) behind the Backend interface."""

    def _get_pretrained(self, source: str, device: str) -> Any:
        from audiocraft.models import AudioGen

        return AudioGen.get_pretrained(source, device=device)
