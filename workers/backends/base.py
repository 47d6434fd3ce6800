"""The Backend interface every model adapter implements."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

from gen_server.audio import Audio
from gen_server.contract.catalog import ModelEntry
from workers.speech_check import Checker

ProgressFn = Callable[[float], None]
"""Called with the fraction done in [0, 1]; may raise ``JobCancelled`` to stop generation."""
AudioSink = Callable[[Audio], None]
"""Takes each finished piece of a clip, in order, while generation goes on (streaming); never raises."""


@dataclass(frozen=True, slots=True)
class GenRequest:
    """Everything one generation needs; every field is applied on every call.

    Attributes:
        prompt: Description (music, sfx) or text to speak (speech).
        duration_s: Requested length in seconds (music, sfx); ``None`` for speech.
        seed: Random seed; the same seed and parameters repeat the output on one device.
        melody: Melody reference (melody models), ``[channels, frames]`` at any rate.
        continuation: Audio to continue (music, sfx).
        references: Voice references for cloning (1-3 clips).
        voice_id: The library voice ``references`` are the clips of (``None``: raw uploads); a backend
            may cache the voice's conditioning under its prefix in the store.
        lexicon: Speech: (word, respelling) pairs, applied to the spoken text before synthesis.
        check: Speech: checks each sentence as it is made (:mod:`workers.speech_check`); a sentence
            that fails is made again with the next seed.
        steps: Diffusion models: denoising steps (``None``: the model's default).
        negative_prompt: Diffusion models: what the audio should not sound like.
        init_audio: Diffusion models: audio to make a variation of, ``[channels, frames]`` at any rate.
        init_noise_level: Diffusion models: the noise level (sigma) a variation of ``init_audio`` starts at.
        on_audio: Receives each finished piece of the clip in order, at the model's rate, while the
            rest is made (speech: a sentence with its pause; music/sfx: about a second, as the tokens
            become final); the pieces joined are the returned clip. Never called after the backend
            returned.
    """

    prompt: str
    seed: int
    duration_s: float | None = None
    top_k: int = 250
    top_p: float = 0.0
    temperature: float = 1.0
    cfg_coef: float = 3.0
    voice: str | None = None
    language: str | None = None
    speed: float = 1.0
    melody: Audio | None = None
    continuation: Audio | None = None
    references: tuple[Audio, ...] = field(default_factory=tuple)
    voice_id: str | None = None
    lexicon: tuple[tuple[str, str], ...] = ()
    steps: int | None = None
    negative_prompt: str | None = None
    init_audio: Audio | None = None
    init_noise_level: float = 1.0
    on_audio: AudioSink | None = field(default=None, compare=False)
    check: Checker | None = field(default=None, compare=False)


class Backend(Protocol):
    """A loaded-on-demand generation model."""

    entry: ModelEntry

    def load(self) -> None:
        """Load weights (idempotent); heavy imports happen here, not at module import."""

    def generate(self, request: GenRequest, *, progress: ProgressFn | None = None) -> Audio:
        """Generate one clip at the model's native rate."""

    def unload(self) -> None:
        """Drop weights and free device memory."""
