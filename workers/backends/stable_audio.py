"""Stable Audio Open backend: diffusers' ``StableAudioPipeline`` (T5 text encoder, DiT denoiser, Oobleck
VAE; stereo 44.1 kHz), loaded with ``StableAudioPipeline.from_pretrained(<local folder>)``.

Where the weights come from (first match wins), never from the hub at load:

1. ``tiny:stable-audio``: the tiny random pipeline of :func:`workers.tiny.ensure_tiny` (dev preset, tests).
2. ``<models_dir>/<model id>/`` or a folder named by ``source`` holding ``model_index.json``: diffusers'
   pipeline layout (:data:`~gen_server.contract.catalog.STABLE_AUDIO_FILES`).
3. With ``settings.allow_downloads`` (``soundry models pull stable-audio-open-1.0``): those files of
   ``stabilityai/stable-audio-open-1.0`` (a gated repository: accept its licence and log in first) fetched
   into ``<models_dir>/stable-audio-open-1.0/``. Otherwise :class:`ModelUnavailable` at once.

One call of the pipeline serves one request or a batch of compatible ones (:meth:`batch_key`); every
parameter is passed on every call and the scheduler is rebuilt from its saved config for each call (a
diffusers scheduler keeps per-run state). The pipeline always denoises its whole latent window
(47.55 s for stable-audio-open-1.0) and crops to the requested length, so a clip's cost does not depend
on its duration.

Seeds: row ``i`` of a call draws its initial noise and its per-step noise from its own CPU
``torch.Generator`` seeded with its request's seed (the pipeline takes a list of generators, one per
row), the T5 prompts are padded to the tokenizer's fixed length, and each row's latents are decoded by
the VAE on their own. So a request gives, in a batch, the clip it gives alone up to float32 rounding,
not bit for bit: the DiT projects the seconds conditioning (``global_proj``, one vector per row) with a
matrix product whose row count is the batch's (2 with guidance alone, 8 in a batch of 4), and torch's CPU
matrix kernels round such small products differently by row count (measured on the tiny model: first
difference 1.2e-7 there, 5e-7 at most in the output after 8 steps; the tests hold it under 1e-4). A seed
repeats a solo clip bit for bit.

Progress and cancel: the pipeline's per-step ``callback`` reports ``(step + 1) / steps`` to the
``progress`` function, which raises to cancel; the exception leaves the pipeline between two denoising
steps. Initial audio (variations): the pipeline's ``initial_audio_waveforms`` (the audio is encoded by the
VAE and added to the starting noise); the scheduler's ``sigma_max`` is set to the request's
``init_noise_level`` for that call, as stable-audio-tools' ``init_noise_level`` does, since at the
released 500 the upload would be drowned in noise. Such requests run alone.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from gen_server.audio import Audio
from gen_server.audio.postprocess import resample
from gen_server.contract.catalog import STABLE_AUDIO_FILES, STABLE_AUDIO_ID, STABLE_AUDIO_REPO, ModelEntry
from gen_server.errors import GenerationFailed, InvalidInput, ModelUnavailable
from gen_server.settings import Settings
from workers.backends._audiocraft import to_audio
from workers.backends._audiocraft_weights import unavailable_message
from workers.backends.base import GenRequest, ProgressFn
from workers.memory import module_bytes, release_memory

logger = logging.getLogger(__name__)

BatchKey = tuple[int, float, float, bool]
"""steps, duration_s, guidance (cfg_coef), and whether the rows have negative prompts."""
SAMPLE_RATE = 44100
MODEL_INDEX = "model_index.json"


def _download(entry: ModelEntry, folder: Path, settings: Settings) -> None:
    """Fetch the pipeline's files into ``folder`` (``soundry models pull``)."""
    from huggingface_hub import snapshot_download

    repo = STABLE_AUDIO_REPO if entry.id == STABLE_AUDIO_ID else entry.source
    try:
        snapshot_download(repo, allow_patterns=list(STABLE_AUDIO_FILES), local_dir=folder)
    except Exception as e:  # network, gating and hub errors alike: the folder stays as it was
        raise ModelUnavailable(
            unavailable_message(
                entry,
                settings,
                f"{repo} could not be fetched ({e}); it is gated: accept its licence on "
                "huggingface.co and log in with `huggingface-cli login` first",
            )
        ) from e


def resolve_stable_audio_folder(entry: ModelEntry, settings: Settings) -> Path:
    """The pipeline folder to load ``entry`` from (see the module docstring for the order).

    Raises:
        ModelUnavailable: Not local and downloads are off (fast, no network), or the download failed.
    """
    if entry.source.startswith("tiny:"):
        from workers.tiny import ensure_tiny

        return ensure_tiny(entry.source, settings.resolved_models_dir)
    local = settings.resolved_models_dir / entry.id
    for folder in (local, Path(entry.source)):
        if (folder / MODEL_INDEX).is_file():
            return folder
    if not settings.allow_downloads:
        raise ModelUnavailable(
            unavailable_message(entry, settings, f"no {MODEL_INDEX} (diffusers layout) in {local}")
        )
    _download(entry, local, settings)
    if not (local / MODEL_INDEX).is_file():
        raise ModelUnavailable(
            unavailable_message(entry, settings, f"{local} is incomplete after the download")
        )
    return local


def _load_error(entry: ModelEntry, settings: Settings, folder: Path, error: Exception) -> ModelUnavailable:
    text = str(error)
    if "torchsde" in text:
        # diffusers exposes CosineDPMSolverMultistepScheduler (stable-audio-open-1.0's) only with torchsde
        text = (
            f"its scheduler (CosineDPMSolverMultistepScheduler) needs the torchsde package, which is not "
            f"installed ({error})"
        )
    return ModelUnavailable(unavailable_message(entry, settings, f"{folder} does not load: {text}"))


class StableAudioBackend:
    """``diffusers.StableAudioPipeline`` behind the :class:`~workers.backends.base.Backend` interface.

    Request fields used: ``prompt``, ``duration_s``, ``seed``, ``steps`` (the catalog default when
    ``None``), ``cfg_coef`` (guidance scale; above 1 turns classifier-free guidance on), ``negative_prompt``,
    ``init_audio`` and ``init_noise_level``.
    """

    def __init__(self, entry: ModelEntry, settings: Settings) -> None:
        self.entry = entry
        self.settings = settings
        self.device = settings.device
        self._pipe: Any = None
        self._scheduler: tuple[Any, dict[str, Any]] | None = None  # class and saved config
        self._lock = threading.RLock()

    # -- lifecycle ---------------------------------------------------------------------------------

    @property
    def loaded(self) -> bool:
        return self._pipe is not None

    @property
    def sample_rate(self) -> int:
        return int(self._pipe.vae.sampling_rate) if self._pipe is not None else self.entry.sample_rate

    @property
    def window_s(self) -> float:
        """Longest clip one call makes: the transformer's latent window times the VAE hop, seconds."""
        pipe = self._require()
        return float(pipe.transformer.config.sample_size * pipe.vae.hop_length / pipe.vae.sampling_rate)

    def load(self) -> None:
        """Load the pipeline from its folder (idempotent).

        Raises:
            ModelUnavailable: The folder is missing or does not load (for stable-audio-open-1.0 without
                ``torchsde``: its scheduler), and cannot be downloaded.
        """
        with self._lock:
            if self._pipe is not None:
                return
            folder = resolve_stable_audio_folder(self.entry, self.settings)
            logger.info("loading %s from %s on %s", self.entry.id, folder, self.device)
            from diffusers import StableAudioPipeline

            try:
                pipe = StableAudioPipeline.from_pretrained(folder)
            except (OSError, ImportError, ValueError, KeyError, RuntimeError, AttributeError) as e:
                raise _load_error(self.entry, self.settings, folder, e) from e
            pipe = pipe.to(self.device)
            pipe.set_progress_bar_config(disable=True)
            self._scheduler = (type(pipe.scheduler), dict(pipe.scheduler.config))
            self._pipe = pipe

    def unload(self) -> None:
        """Drop the pipeline and free device memory."""
        with self._lock:
            if self._pipe is None:
                return
            self._pipe = None
            self._scheduler = None
            release_memory()
            logger.info("unloaded %s", self.entry.id)

    def memory_bytes(self) -> int:
        """Parameter and buffer bytes of the DiT, VAE, T5 encoder and projection model."""
        pipe = self._pipe
        if pipe is None:
            return 0
        return module_bytes(pipe.transformer, pipe.vae, pipe.text_encoder, pipe.projection_model)

    def _require(self) -> Any:
        if self._pipe is None:
            self.load()
        return self._pipe

    # -- requests ----------------------------------------------------------------------------------

    def _steps(self, request: GenRequest) -> int:
        steps = request.steps if request.steps is not None else (self.entry.steps or 100)
        if steps < 1:
            raise InvalidInput("steps must be at least 1", field="sampling.steps")
        return int(steps)

    def _check(self, request: GenRequest) -> float:
        """Validate ``request`` for this model; returns its duration in seconds."""
        duration = request.duration_s
        if duration is None or not duration > 0:
            raise InvalidInput(f"'{self.entry.id}' needs a positive duration_s", field="duration_s")
        window = self.window_s
        if duration > window:
            raise InvalidInput(
                f"duration_s must be at most {window:.2f} s (the window of '{self.entry.id}')",
                field="duration_s",
            )
        if not 0.0 <= request.cfg_coef <= 100.0:
            raise InvalidInput("the guidance scale must be between 0 and 100", field="sampling.cfg_coef")
        self._steps(request)
        if request.melody is not None or request.continuation is not None or request.references:
            raise InvalidInput(
                f"'{self.entry.id}' takes initial audio (init_audio_upload), not a melody, a continuation "
                "or voice references",
                field="continuation_upload" if request.continuation is not None else "melody_upload",
            )
        if request.init_audio is not None:
            sigma_min = float(self._pipe.scheduler.config.sigma_min)
            if not request.init_noise_level > sigma_min:
                raise InvalidInput(
                    f"init_noise_level must be above the schedule's lowest noise level ({sigma_min:g})",
                    field="init_noise_level",
                )
        return float(duration)

    def batch_key(self, request: GenRequest) -> BatchKey | None:
        """Requests with equal keys share one :meth:`generate_batch` call: the same steps, length and
        guidance, and all with or all without a negative prompt (the pipeline takes one list of each).
        ``None`` (runs alone): requests with initial audio. Loads the model if needed."""
        with self._lock:
            self._require()
            duration = self._check(request)
        if request.init_audio is not None:
            return None
        return (self._steps(request), duration, float(request.cfg_coef), request.negative_prompt is not None)

    # -- generation --------------------------------------------------------------------------------

    def generate(self, request: GenRequest, *, progress: ProgressFn | None = None) -> Audio:
        """Generate one clip of exactly ``request.duration_s`` (stereo, 44.1 kHz).

        Args:
            request: Prompt, duration, seed, steps, guidance, negative prompt, optional initial audio.
            progress: Fraction of denoising steps done, ending with 1.0; may raise to cancel between steps.

        Returns:
            ``[2, round(duration_s * 44100)]`` float32 audio.
        """
        return self._run([request], progress)[0]

    def generate_batch(
        self, requests: Sequence[GenRequest], progress: ProgressFn | None = None
    ) -> list[Audio]:
        """Generate compatible requests (equal :meth:`batch_key`) with one pipeline call; each row equals
        its solo run (see the module docstring).

        Raises:
            InvalidInput: The requests cannot share a call.
        """
        if not requests:
            return []
        keys = {self.batch_key(r) for r in requests}
        if len(requests) > 1 and (None in keys or len(keys) != 1):
            raise InvalidInput(
                "batched requests need equal steps, duration, guidance and negative-prompt use, and no "
                "initial audio"
            )
        return self._run(list(requests), progress)

    def _init_waveforms(self, requests: Sequence[GenRequest], channels: int) -> Any:
        """The requests' initial audio as one ``[rows, channels, frames]`` tensor at the model's rate
        (``None`` without any)."""
        if requests[0].init_audio is None:
            return None
        import torch

        rate = self.sample_rate
        clips: list[np.ndarray] = []
        for request in requests:
            audio = request.init_audio
            if audio is None:
                raise InvalidInput(
                    "every row of a call needs initial audio, or none", field="init_audio_upload"
                )
            samples = resample(audio, rate).samples if audio.sample_rate != rate else audio.samples
            if samples.shape[0] != channels:
                samples = np.repeat(samples.mean(axis=0, keepdims=True), channels, axis=0)
            clips.append(samples)
        frames = max(c.shape[1] for c in clips)
        stacked = np.stack([np.pad(c, ((0, 0), (0, frames - c.shape[1]))) for c in clips]).astype(np.float32)
        return torch.from_numpy(stacked).to(self.device)

    def _run(self, requests: Sequence[GenRequest], progress: ProgressFn | None) -> list[Audio]:
        first = requests[0]
        with self._lock:
            pipe = self._require()
            duration = self._check(first)
            for request in requests:
                self._check(request)
            steps = self._steps(first)
            import torch

            if self._scheduler is None:  # set by load() together with the pipeline
                raise GenerationFailed(f"'{self.entry.id}' is not loaded")
            scheduler_cls, config = self._scheduler
            overrides = {"sigma_max": float(first.init_noise_level)} if first.init_audio is not None else {}
            pipe.scheduler = scheduler_cls.from_config(config, **overrides)  # fresh state, set every call
            pace = self.settings.dev_step_ms / 1000 if self.entry.dev else 0.0
            started = [time.monotonic()]

            def on_step(step: int, timestep: Any, latents: Any) -> None:
                if pace:  # the dev preset's test aid: each step lasts at least SOUNDRY_DEV_STEP_MS
                    time.sleep(max(pace - (time.monotonic() - started[0]), 0.0))
                    started[0] = time.monotonic()
                if progress is not None:
                    progress(min((step + 1) / steps, 0.999))

            negatives = (
                [r.negative_prompt or "" for r in requests] if first.negative_prompt is not None else None
            )
            init = self._init_waveforms(requests, int(pipe.vae.config.audio_channels))
            generators = [torch.Generator("cpu").manual_seed(int(r.seed)) for r in requests]
            with torch.inference_mode():
                latents = pipe(
                    prompt=[r.prompt for r in requests],
                    negative_prompt=negatives,
                    audio_start_in_s=0.0,
                    audio_end_in_s=duration,
                    num_inference_steps=steps,
                    guidance_scale=float(first.cfg_coef),
                    generator=generators,
                    initial_audio_waveforms=init,
                    initial_audio_sampling_rate=self.sample_rate if init is not None else None,
                    callback=on_step,
                    callback_steps=1,
                    output_type="latent",
                ).audios
                # each row decoded on its own, as the pipeline decodes a solo run: batched convolutions
                # may round differently from batch-1 ones
                waves = [pipe.vae.decode(latents[i : i + 1]).sample[0] for i in range(latents.shape[0])]
            if len(waves) != len(requests):
                raise GenerationFailed(
                    f"the pipeline returned {len(waves)} clips for {len(requests)} requests"
                )
            clips = [to_audio(w, self.sample_rate, duration) for w in waves]
        if progress is not None:
            progress(1.0)
        return clips
