"""Shared adapter over audiocraft's generation models (MusicGen, AudioGen).

Where the weights come from (first match wins):

1. ``tiny:<name>`` sources: the tiny random checkpoint from :func:`workers.tiny.ensure_tiny`.
2. ``<models_dir>/<model id>/`` holding ``state_dict.bin`` (an exported audiocraft folder).
3. The hub id (``facebook/musicgen-small``), used only when it is already in the local Hugging Face
   cache, unless ``settings.allow_downloads``. Otherwise :class:`ModelUnavailable` at once.

Every call sets every generation parameter (``set_generation_params`` mutates the shared model),
the progress callback and the seed. Clips longer than the model window are made with audiocraft's
own windowed extension: each new window is conditioned on the last ``window - stride`` seconds of
tokens, and the whole clip is decoded once.

Sampling draws from one ``torch.Generator`` per batch row, seeded with that row's request seed
(:func:`per_row_sampling`), in solo and batched calls alike: a request's clip depends only on its
own prompt, parameters and seed, not on the batch it ran in (see :meth:`AudiocraftBackend.batch_key`
for the one condition this needs).

Every job whose request has ``on_audio`` streams while the LM runs (solo, batched rows, long-form,
melody, continuation): the sampled tokens are tapped and decoded in ~1 s chunks as they become final
(:mod:`workers.backends._audiocraft_stream`); the returned clip is still decoded once, unchanged.
"""

from __future__ import annotations

import contextlib
import gc
import logging
import math
import random
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from gen_server.audio import Audio
from gen_server.contract.catalog import ModelEntry
from gen_server.errors import GenerationFailed, InvalidInput, ModelUnavailable
from gen_server.settings import Settings
from workers.backends.base import AudioSink, GenRequest, ProgressFn

logger = logging.getLogger(__name__)

AUDIOCRAFT_FILES = ("state_dict.bin", "compression_state_dict.bin")
DEMUCS_REPO_DIR = "demucs"
"""A checkpoint folder may ship a Demucs local repository (``demucs/htdemucs.th``) for melody models."""
_HTDEMUCS_HF_REPO = "adefossez/HTDemucs"
_HTDEMUCS_TORCH_HUB_FILE = "955717e8-8726e21a.th"

_DEMUCS_PATCH_LOCK = threading.Lock()
_SAMPLING_PATCH_LOCK = threading.RLock()

BatchKey = tuple[float, int, float, float, float, tuple[int, ...]]
"""duration_s, top_k, top_p, temperature, cfg_coef, and the prompt's token count (see ``batch_key``)."""


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


def seed_everything(seed: int) -> None:
    """Seed torch (CPU and every GPU), Python's ``random`` and NumPy.

    Python's ``random`` matters: Demucs' stem separation in the melody conditioner draws its random
    shift from it, so without it the same seed gives a different melody result.
    """
    import torch

    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    if torch.cuda.is_available():
        torch.cuda.manual_seed_all(seed)


class RowSampler:
    """Drop-in replacements for audiocraft's samplers that draw each batch row from its own generator.

    audiocraft's ``LMModel._sample_next_token`` samples the next tokens of all rows with one
    ``torch.multinomial`` call on the global RNG (through ``audiocraft.utils.utils.multinomial``,
    ``sample_top_k`` and ``sample_top_p``), so a row's tokens depend on the rows beside it. Here
    row ``b`` of the ``[B, K, card]`` probabilities is sampled with ``generators[b]`` only, consuming
    the same random numbers whatever ``B`` is. ``sample_top_k``/``sample_top_p`` mirror audiocraft's
    own (audiocraft 1.3) apart from the generator.

    Args:
        generators: One generator per batch row, on the model's device.
    """

    def __init__(self, generators: Sequence[Any]) -> None:
        self.generators = list(generators)

    def multinomial(
        self, input: Any, num_samples: int, replacement: bool = False, *, generator: Any = None
    ) -> Any:
        """``audiocraft.utils.utils.multinomial`` with row ``b`` (first dimension) drawn from generator ``b``.

        Raises:
            RuntimeError: The first dimension is not the number of generators (an audiocraft change).
        """
        import torch

        rows = int(input.shape[0])
        if rows != len(self.generators):
            raise RuntimeError(
                f"per-row sampling expected {len(self.generators)} rows, got probabilities "
                f"{tuple(input.shape)}"
            )
        card = int(input.shape[-1])
        out = [
            torch.multinomial(
                input[b].reshape(-1, card), num_samples=num_samples, replacement=replacement, generator=gen
            ).reshape(*input.shape[1:-1], num_samples)
            for b, gen in enumerate(self.generators)
        ]
        return torch.stack(out)

    def sample_top_k(self, probs: Any, k: int) -> Any:
        """Top-k sampling over the last dimension (audiocraft's ``sample_top_k``, per-row generators)."""
        import torch

        top_k_value, _ = torch.topk(probs, k, dim=-1)
        min_value_top_k = top_k_value[..., [-1]]
        probs *= (probs >= min_value_top_k).float()
        probs.div_(probs.sum(dim=-1, keepdim=True))
        return self.multinomial(probs, num_samples=1)

    def sample_top_p(self, probs: Any, p: float) -> Any:
        """Nucleus sampling over the last dimension (audiocraft's ``sample_top_p``, per-row generators)."""
        import torch

        probs_sort, probs_idx = torch.sort(probs, dim=-1, descending=True)
        probs_sum = torch.cumsum(probs_sort, dim=-1)
        mask = probs_sum - probs_sort > p
        probs_sort *= (~mask).float()
        probs_sort.div_(probs_sort.sum(dim=-1, keepdim=True))
        next_token = self.multinomial(probs_sort, num_samples=1)
        return torch.gather(probs_idx, -1, next_token)


@contextlib.contextmanager
def per_row_sampling(seeds: Sequence[int], device: Any) -> Iterator[RowSampler]:
    """While active, audiocraft's LM samples batch row ``i`` from a generator seeded with ``seeds[i]``.

    Swaps ``multinomial``, ``sample_top_k`` and ``sample_top_p`` of ``audiocraft.utils.utils`` (which
    ``audiocraft.models.lm`` looks up at call time) and restores them on exit. A process-wide lock
    serialises patched calls: in a worker only the batcher thread generates, so it never waits.

    Args:
        seeds: One seed per batch row (request order).
        device: Device of the model (generators must live where the probabilities are).
    """
    import torch
    from audiocraft.utils import utils as ac_utils

    generators = []
    for seed in seeds:
        gen = torch.Generator(device=device)
        gen.manual_seed(int(seed))
        generators.append(gen)
    sampler = RowSampler(generators)
    names = ("multinomial", "sample_top_k", "sample_top_p")
    with _SAMPLING_PATCH_LOCK:
        originals = {name: getattr(ac_utils, name) for name in names}
        for name in names:
            setattr(ac_utils, name, getattr(sampler, name))
        try:
            yield sampler
        finally:
            for name, fn in originals.items():
                setattr(ac_utils, name, fn)


def fit_length(samples: np.ndarray, frames: int) -> np.ndarray:
    """Trim or zero-pad ``[channels, frames]`` samples to exactly ``frames`` frames."""
    have = samples.shape[-1]
    if have >= frames:
        return samples[..., :frames]
    return np.pad(samples, ((0, 0), (0, frames - have)))


def to_audio(wav: Any, sample_rate: int, duration_s: float) -> Audio:
    """One ``[channels, frames]`` tensor to :class:`Audio` of exactly ``round(duration_s * sample_rate)``.

    Raises:
        GenerationFailed: The model produced NaN or infinite samples.
    """
    samples = wav.detach().to("cpu").float().numpy().astype(np.float32, copy=False)
    if not np.isfinite(samples).all():
        raise GenerationFailed("the model produced non-finite samples")
    samples = fit_length(samples, round(duration_s * sample_rate))
    peak = float(np.abs(samples).max()) if samples.size else 0.0
    if peak > 1.0:  # keep Audio's [-1, 1] contract without clipping: scale the rare overshoot down
        samples = samples / peak
    return Audio(np.ascontiguousarray(samples, dtype=np.float32), sample_rate)


def chunk_plan(
    duration_s: float, window_s: float, stride_s: float, frame_rate: float, prompt_frames: int = 0
) -> list[int]:
    """New tokens each audiocraft pass makes, in order (mirrors ``BaseGenModel._generate_tokens``).

    Args:
        duration_s: Total clip length, seconds (a continuation prompt included).
        window_s: Longest pass, seconds.
        stride_s: How far each extra pass moves, seconds.
        frame_rate: Token frames per second.
        prompt_frames: Token frames of a continuation prompt.

    Returns:
        Token frames generated by each pass (at least one pass).
    """
    total = int(duration_s * frame_rate)
    if duration_s <= window_s:
        return [max(total - prompt_frames, 1)]
    stride = int(frame_rate * stride_s)
    plan: list[int] = []
    offset, prompt_len = 0, prompt_frames
    while offset + prompt_len < total:
        gen_len = int(min(duration_s - offset / frame_rate, window_s) * frame_rate)
        plan.append(max(gen_len - prompt_len, 1))
        prompt_len = gen_len - stride
        offset += stride
    return plan or [1]


class _Progress:
    """Maps audiocraft's per-pass ``(step, steps)`` callbacks to one rising fraction over all passes.

    Fractions stay below 1.0; the caller reports 1.0 once the audio is decoded. Exceptions raised by
    ``progress`` (cancellation) propagate through audiocraft and stop generation.

    ``min_step_s`` (the dev preset's ``SOUNDRY_DEV_STEP_MS`` test aid) makes every decoding step last
    at least that long, so a tiny model's job lasts ``steps x min_step_s`` on any CPU.
    """

    def __init__(self, plan: Sequence[int], progress: ProgressFn, min_step_s: float = 0.0) -> None:
        self._min_step_s = min_step_s
        self._step_started = time.monotonic()
        self._plan = list(plan)
        self._total = float(sum(plan))
        self._progress = progress
        self._chunk = 0
        self._step = 0
        self._last = 0.0

    def __call__(self, generated: int, steps: int) -> None:
        if self._min_step_s:
            time.sleep(max(self._min_step_s - (time.monotonic() - self._step_started), 0.0))
            self._step_started = time.monotonic()
        self._step += 1
        k = min(self._chunk, len(self._plan) - 1)
        frac = min(self._step / max(steps, 1), 1.0)
        value = min((sum(self._plan[:k]) + self._plan[k] * frac) / self._total, 0.999)
        if self._step >= steps:
            self._chunk += 1
            self._step = 0
        if value > self._last:
            self._last = value
            self._progress(value)


def module_bytes(*modules: Any) -> int:
    """Bytes held by the parameters and buffers of torch modules (shared tensors counted once)."""
    seen: set[int] = set()
    total = 0
    for module in modules:
        if module is None:
            continue
        for tensor in [*module.parameters(), *module.buffers()]:
            key = tensor.data_ptr()
            if key in seen:
                continue
            seen.add(key)
            total += tensor.numel() * tensor.element_size()
    return total


class AudiocraftBackend:
    """Base adapter for audiocraft's ``BaseGenModel`` subclasses.

    Attributes:
        entry: The catalog entry served.
        extend_stride_ratio: Long-form step as a fraction of the window (18 s of a 30 s window, like
            audiocraft's MusicGen default; AudioGen's own default of 2 s of 10 s would cost 5x).
    """

    extend_stride_ratio: ClassVar[float] = 0.6

    def __init__(self, entry: ModelEntry, settings: Settings) -> None:
        self.entry = entry
        self.settings = settings
        self.device = settings.device
        self._model: Any = None
        self._native_window_s = 0.0
        self._lock = threading.RLock()

    # -- lifecycle ---------------------------------------------------------------------------------

    @property
    def loaded(self) -> bool:
        return self._model is not None

    def _get_pretrained(self, source: str, device: str) -> Any:
        """``MusicGen.get_pretrained`` or ``AudioGen.get_pretrained``."""
        raise NotImplementedError

    def load(self) -> None:
        """Resolve the checkpoint and load it onto ``settings.device`` (idempotent).

        Raises:
            ModelUnavailable: Weights (or something the model needs, such as its T5 text encoder)
                are neither local nor downloadable.
        """
        with self._lock:
            if self._model is not None:
                return
            source = resolve_audiocraft_source(self.entry, self.settings)
            demucs_repo = Path(source) / DEMUCS_REPO_DIR
            logger.info("loading %s from %s on %s", self.entry.id, source, self.device)
            try:
                with local_demucs(demucs_repo if demucs_repo.is_dir() else None):
                    model = self._get_pretrained(source, self.device)
            except OSError as e:  # LocalEntryNotFoundError, ConnectionError, URLError, missing file
                raise ModelUnavailable(unavailable_message(self.entry, self.settings, str(e))) from e
            self._native_window_s = float(model.max_duration)
            self._model = model

    def unload(self) -> None:
        """Drop the model and free device memory."""
        with self._lock:
            if self._model is None:
                return
            self._model = None
            release_memory()
            logger.info("unloaded %s", self.entry.id)

    def memory_bytes(self) -> int:
        """Parameter and buffer bytes of the loaded model (LM, codec, text encoder, Demucs)."""
        model = self._model
        if model is None:
            return 0
        extra: list[Any] = []
        for conditioner in model.lm.condition_provider.conditioners.values():
            extra.extend(conditioner.__dict__.get(name) for name in ("t5", "demucs"))
        return module_bytes(model.lm, model.compression_model, *extra)

    # -- generation --------------------------------------------------------------------------------

    @property
    def window_s(self) -> float:
        """Longest single pass, seconds: the catalog window, capped by the checkpoint's once loaded."""
        native = self._native_window_s
        window = self.entry.window_s or native
        return min(window, native) if native else window

    @property
    def frame_rate(self) -> float:
        """Token frames per second (50 for every released MusicGen/AudioGen until loaded)."""
        return float(self._model.frame_rate) if self._model is not None else 50.0

    def _require_model(self) -> Any:
        if self._model is None:
            self.load()
        return self._model

    def _check(self, request: GenRequest) -> float:
        """Validate ``request`` for this model; returns its duration in seconds."""
        if request.duration_s is None or not request.duration_s > 0:
            raise InvalidInput(f"'{self.entry.id}' needs a positive duration_s", field="duration_s")
        card = self.entry.codebook_size
        if self._model is not None:
            card = int(self._model.lm.card)
        if card is not None and request.top_k > card:
            raise InvalidInput(
                f"top_k must be at most the codebook size ({card}) of '{self.entry.id}'",
                field="sampling.top_k",
            )
        if request.temperature <= 0:
            raise InvalidInput("temperature must be positive", field="sampling.temperature")
        if request.melody is not None and not self.entry.melody:
            raise InvalidInput(f"model '{self.entry.id}' takes no melody", field="melody_upload")
        if request.continuation is not None and not self.entry.continuation:
            raise InvalidInput(f"model '{self.entry.id}' cannot continue audio", field="continuation_upload")
        if request.melody is not None and request.continuation is not None:
            raise InvalidInput("give a melody or audio to continue, not both", field="continuation_upload")
        if request.continuation is not None:
            prompt_s = request.continuation.duration_s
            limit = min(request.duration_s, self.window_s)
            if math.ceil(prompt_s * self.frame_rate) >= int(limit * self.frame_rate):
                raise InvalidInput(
                    f"the audio to continue is {prompt_s:.2f} s; it must be shorter than duration_s and "
                    f"than the model window ({self.window_s:g} s)",
                    field="continuation_upload",
                )
        return float(request.duration_s)

    def _model_duration(self, duration_s: float) -> float:
        """The duration to ask audiocraft for: whole token frames covering ``duration_s``, plus half a frame.

        audiocraft truncates ``duration * frame_rate`` with ``int()`` in several places; with durations
        such as 2.76 s its long-form loop then plans a last pass no longer than its prompt and fails an
        ``assert``. Half a frame of margin makes every truncation land on the intended frame count, and
        covering ``duration_s`` fully means the clip is trimmed, never padded with silence.
        """
        fr = self.frame_rate
        frames = math.ceil(duration_s * fr - 1e-6)
        if frames <= int(self.window_s * fr + 1e-6):
            return min((frames + 0.5) / fr, self.window_s)
        return (frames + 0.5) / fr

    def _configure(self, model: Any, request: GenRequest, duration_s: float) -> None:
        """Set every stateful knob of ``model`` for this call."""
        window = self.window_s
        model.max_duration = window  # chunking only; never above the checkpoint's own window
        model.set_generation_params(
            use_sampling=True,
            top_k=int(request.top_k),
            top_p=float(request.top_p),
            temperature=float(request.temperature),
            duration=float(duration_s),
            cfg_coef=float(request.cfg_coef),
            two_step_cfg=False,
            extend_stride=window * self.extend_stride_ratio,
        )

    def _plan(self, duration_s: float, prompt_frames: int = 0) -> list[int]:
        window = self.window_s
        return chunk_plan(
            duration_s, window, window * self.extend_stride_ratio, self.frame_rate, prompt_frames
        )

    def _run(
        self,
        model: Any,
        call: Callable[[bool], Any],
        plan: Sequence[int],
        seeds: Sequence[int],
        progress: ProgressFn | None,
        sinks: Sequence[AudioSink | None] = (),
        duration_s: float = 0.0,
    ) -> Any:
        """Run ``call`` with the progress callback set and row ``i`` sampled from ``seeds[i]``.

        The global RNGs are seeded with ``seeds[0]`` too, for randomness outside token sampling
        (Demucs' random shift in the melody conditioner). Row ``i`` streams to ``sinks[i]`` when that
        is set (:meth:`_streaming`); the audio ``call`` returns does not depend on it.
        """
        pace = self.settings.dev_step_ms / 1000 if self.entry.dev else 0.0
        model.set_custom_progress_callback(_Progress(plan, progress, pace) if progress is not None else None)
        try:
            seed_everything(seeds[0])
            import torch

            with (
                torch.inference_mode(),
                per_row_sampling(seeds, model.device),
                self._streaming(model, sinks, duration_s) as finish,
            ):
                wav = call(progress is not None)
                finish()
        finally:
            model.set_custom_progress_callback(None)
        if progress is not None:
            progress(1.0)
        return wav

    @contextlib.contextmanager
    def _streaming(
        self, model: Any, sinks: Sequence[AudioSink | None], duration_s: float
    ) -> Iterator[Callable[[], None]]:
        """While active, row ``i``'s audio goes to ``sinks[i]`` in pieces as its tokens become final.

        Yields the function that sends the last piece once generation returned (a no-op when nothing
        streams). Nothing is tapped when no row has a sink. The pieces of a row join to exactly
        ``round(duration_s * sample_rate)`` frames (the length :func:`to_audio` keeps), decoded from
        the same tokens as the returned clip (see :mod:`workers.backends._audiocraft_stream`). One
        difference is left: a clip that overshoots full scale is scaled down as a whole by
        :func:`to_audio` once it exists, while its pieces, sent before, are clipped at +-1 instead.
        """
        if not any(sink is not None for sink in sinks):
            yield lambda: None
            return
        from workers.backends._audiocraft_stream import ChunkedDecoder, tap_tokens

        decoder = ChunkedDecoder(
            model.compression_model,
            sinks,
            total_frames=int(model.duration * model.frame_rate),  # audiocraft's total_gen_len
            total_samples=round(duration_s * int(model.sample_rate)),
        )
        with tap_tokens(model.lm, decoder.extend) as tap:

            def finish() -> None:
                if not tap.broken:
                    decoder.finish()

            yield finish

    def generate(self, request: GenRequest, *, progress: ProgressFn | None = None) -> Audio:
        """Generate one clip of exactly ``request.duration_s`` at the model's native rate.

        Text only, text + melody (melody models; any rate/channels, resampled by audiocraft) or
        continuation. For continuation, ``duration_s`` is the length of the whole returned clip,
        which starts with the (re-encoded) prompt, as in audiocraft. Durations beyond the window
        use windowed extension; ``progress`` then spans all windows.

        Args:
            request: Prompt, duration, sampling parameters, seed, optional melody/continuation.
            progress: Called with the fraction done in [0, 1], ending with 1.0; may raise to cancel.

        Returns:
            ``[channels, round(duration_s * sample_rate)]`` float32 audio.
        """
        duration_s = self._check(request)
        with self._lock:
            model = self._require_model()
            duration_s = self._check(request)
            model_s = self._model_duration(duration_s)
            self._configure(model, request, model_s)
            import torch

            sr = int(model.sample_rate)
            prompt_frames = 0
            if request.continuation is not None:
                prompt_frames = round(request.continuation.duration_s * model.frame_rate)
            plan = self._plan(model_s, prompt_frames)
            if request.melody is not None:
                melody = torch.from_numpy(np.ascontiguousarray(request.melody.samples))
                melody_sr = request.melody.sample_rate

                def call(show: bool) -> Any:
                    return model.generate_with_chroma(
                        [request.prompt], melody[None], melody_sr, progress=show
                    )

            elif request.continuation is not None:
                prompt = torch.from_numpy(np.ascontiguousarray(request.continuation.samples))
                prompt_sr = request.continuation.sample_rate

                def call(show: bool) -> Any:
                    return model.generate_continuation(
                        prompt[None], prompt_sr, [request.prompt], progress=show
                    )

            else:

                def call(show: bool) -> Any:
                    return model.generate([request.prompt], progress=show)

            wav = self._run(model, call, plan, [request.seed], progress, [request.on_audio], duration_s)
            return to_audio(wav[0], sr, duration_s)

    def batch_key(self, request: GenRequest) -> BatchKey | None:
        """Requests with equal keys can share one :meth:`generate_batch` call; ``None``: never batched.

        Melody, continuation and long-form requests (longer than one window) always run alone.
        The key holds the prompt's token count per text conditioner: audiocraft pads the prompts of
        a batch to the longest and its cross-attention does not mask the padding, so only prompts of
        equal token length give, in a batch, exactly the clip they give alone. Loads the model if
        needed (its tokenizers decide the lengths).
        """
        if request.melody is not None or request.continuation is not None or request.duration_s is None:
            return None
        if not request.duration_s > 0 or request.duration_s > self.window_s:
            return None
        return (
            float(request.duration_s),
            int(request.top_k),
            float(request.top_p),
            float(request.temperature),
            float(request.cfg_coef),
            self._prompt_lengths(request.prompt),
        )

    def _prompt_lengths(self, prompt: str) -> tuple[int, ...]:
        """Token count of ``prompt`` in the model's ``description`` text conditioner (1 for a LUT 'noop')."""
        model = self._require_model()
        conditioners = dict(model.lm.condition_provider.conditioners.items())  # an nn.ModuleDict
        tokenize = getattr(conditioners.get("description"), "tokenize", None)
        if tokenize is None:
            return ()
        tokens = tokenize([prompt])
        ids = tokens["input_ids"] if isinstance(tokens, dict) else tokens[0]
        return (int(ids.shape[-1]),)

    def generate_batch(
        self, requests: Sequence[GenRequest], progress: ProgressFn | None = None
    ) -> list[Audio]:
        """Generate several compatible text-only requests in one batched audiocraft call.

        Seed semantics: row ``i`` samples from a generator seeded with ``requests[i].seed`` (see
        :func:`per_row_sampling`), so each clip equals the clip its request gives alone with
        :meth:`generate`, whatever else is in the batch: bit-identical on CPU (checked by the tests);
        on a GPU, batched matmuls may round differently from batch-1 ones, which can flip a token
        that sits on a sampling boundary.

        Args:
            requests: Requests with equal, non-``None`` :meth:`batch_key` (same duration and sampling
                parameters, prompts of equal token length, no melody, no continuation, one window).
            progress: Called with the fraction of the whole batch done.

        Returns:
            One clip per request, in order.

        Raises:
            InvalidInput: The requests cannot share a call.
        """
        if not requests:
            return []
        keys = {self.batch_key(r) for r in requests}
        if None in keys or len(keys) != 1:
            raise InvalidInput(
                "batched requests need equal duration, sampling and prompt token length, one window, "
                "and no melody/continuation"
            )
        first = requests[0]
        duration_s = self._check(first)
        with self._lock:
            model = self._require_model()
            duration_s = self._check(first)
            model_s = self._model_duration(duration_s)
            self._configure(model, first, model_s)
            prompts = [r.prompt for r in requests]
            plan = self._plan(model_s)

            def call(show: bool) -> list[Any]:
                # BaseGenModel.generate, except that each row's tokens are decoded on their own: EnCodec's
                # batched convolutions differ from batch-1 ones in the last float bit, per-row decoding
                # makes a batched clip bit-identical to the same request generated alone.
                attributes, prompt_tokens = model._prepare_tokens_and_attributes(prompts, None)
                tokens = model._generate_tokens(attributes, prompt_tokens, show)
                return [model.generate_audio(tokens[i : i + 1])[0] for i in range(tokens.shape[0])]

            sinks = [r.on_audio for r in requests]
            wav = self._run(model, call, plan, [r.seed for r in requests], progress, sinks, duration_s)
            sr = int(model.sample_rate)
            return [to_audio(wav[i], sr, duration_s) for i in range(len(requests))]


def release_memory() -> None:
    """Collect garbage, give freed heap back to the OS, and cached GPU memory back to the driver.

    Loading a checkpoint reads whole state dicts that are freed once copied into the model; glibc
    keeps those pages in its arenas (hundreds of MB to GB of resident memory per model) until
    ``malloc_trim`` returns them.
    """
    gc.collect()
    trim_heap()
    import sys

    torch = sys.modules.get("torch")
    if torch is not None and torch.cuda.is_available():
        torch.cuda.empty_cache()


def trim_heap() -> bool:
    """``malloc_trim(0)``: return free heap pages to the OS (glibc only; ``False`` elsewhere)."""
    import ctypes
    import ctypes.util

    name = ctypes.util.find_library("c")
    if name is None:
        return False
    try:
        return bool(ctypes.CDLL(name).malloc_trim(0))
    except (OSError, AttributeError):  # not glibc (musl, macOS)
        return False
