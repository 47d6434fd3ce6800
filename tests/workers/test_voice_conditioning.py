"""XTTS conditioning cached per library voice and model (tiny random XTTS, coqui's real code paths).

XTTS conditions every sentence on the references' GPT latents and speaker embedding
(``Xtts.get_conditioning_latents``). The backend computes them once per job, and for a library voice
(``voice_id``) once per voice and model, kept in the artifact store under the voice's prefix. Calls are
counted by wrapping the real method (it still runs).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from gen_server.storage import LocalStore, voice_conditioning_key
from workers.backends.base import GenRequest
from workers.backends.coqui import CoquiBackend

from .test_xtts import HIGH, LOW

TWO_SENTENCES = "Hello there, how are you today? The weather is fine."


@pytest.fixture
def calls(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    from TTS.tts.models.xtts import Xtts

    real = Xtts.get_conditioning_latents
    counted: list[int] = []

    def counting(self: Any, *args: Any, **kwargs: Any) -> Any:
        counted.append(1)
        return real(self, *args, **kwargs)

    monkeypatch.setattr(Xtts, "get_conditioning_latents", counting)
    return counted


def speak(backend: CoquiBackend, voice_id: str | None, references: tuple[Any, ...] = (LOW,)) -> np.ndarray:
    request = GenRequest(TWO_SENTENCES, seed=3, language="en", references=references, voice_id=voice_id)
    return backend.generate(request).samples


def test_a_known_voice_skips_conditioning_and_sounds_the_same(
    xtts: CoquiBackend, calls: list[int], tmp_path: Path
) -> None:
    store = LocalStore(tmp_path)
    xtts.store = store
    try:
        uncached = speak(xtts, None)
        assert len(calls) == 1  # once for the job's two sentences (coqui alone: once per sentence)
        key = voice_conditioning_key("v1", xtts.entry.id)
        assert key == f"voices/v1/conditioning/{xtts.entry.id}.pt"
        assert not store.exists(key)

        first = speak(xtts, "v1")
        assert len(calls) == 2 and store.exists(key)
        second = speak(xtts, "v1")
        assert len(calls) == 2  # read from the store
        assert np.array_equal(second, uncached) and np.array_equal(first, uncached)

        other = speak(xtts, "v2", references=(HIGH,))  # another voice: its own conditioning
        assert len(calls) == 3 and store.exists(voice_conditioning_key("v2", xtts.entry.id))
        assert not np.array_equal(other, uncached)
    finally:
        xtts.store = None
