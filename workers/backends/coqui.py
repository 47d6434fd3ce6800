"""Coqui TTS backend (VITS, XTTS-v2, any coqui-tts model that loads from a folder).

Where the weights come from (first match wins):

1. ``tiny:vits`` / ``tiny:xtts``: the tiny random VITS or XTTS-v2 from :func:`workers.tiny.ensure_tiny`.
2. ``<models_dir>/<model id>/`` or a folder named by ``source``, holding ``config.json`` and a
   checkpoint (``model.pth``, ``model_file.pth``, ``checkpoint.pth`` or one ``*.pth``).
3. A coqui model name (``tts_models/en/vctk/vits``) found in coqui's own model folder
   (``~/.local/share/tts`` or ``$TTS_HOME``), or for hub-hosted ones (XTTS-v2) in the Hugging Face
   cache. Nothing is downloaded unless ``settings.allow_downloads``; otherwise
   :class:`ModelUnavailable` at once.

Text is normalised and split into sentences by :mod:`workers.text`; each sentence is synthesized
on its own and the waves are joined with short pauses.

Voice references reach XTTS as WAV files, which coqui reads with ``torchaudio.load``. Since
torchaudio 2.9 that decodes through torchcodec, which needs FFmpeg's shared libraries on the system
(none on a bare machine: ``RuntimeError: Could not load libtorchcodec``). While cloning, the backend
has coqui read them with soundfile instead (:func:`_soundfile_references`).

XTTS conditions each sentence on the references (``get_conditioning_latents``); the backend computes that
once per job, and for a library voice (``voice_id``) once per voice and model, cached in the artifact
store (:func:`gen_server.storage.voice_conditioning_key`, deleted with the voice). Measured on the
real-size architecture: benchmarks/results/xtts_conditioning.md.
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import tempfile
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from importlib.util import find_spec
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import soundfile as sf

from gen_server.audio import Audio, Word
from gen_server.contract.catalog import ModelEntry
from gen_server.errors import GenerationFailed, InvalidInput, ModelUnavailable
from gen_server.settings import Settings
from gen_server.storage import ArtifactStore, open_store, voice_conditioning_key
from workers import timings
from workers.backends._audiocraft_sampling import seed_everything
from workers.backends._audiocraft_weights import unavailable_message
from workers.backends.base import GenRequest, ProgressFn
from workers.memory import module_bytes, release_memory
from workers.sentences import speak
from workers.speech_check import RETRY_SEED_STEP
from workers.text import Segment, segment_text

if TYPE_CHECKING:
    import torch

logger = logging.getLogger(__name__)

CHECKPOINT_NAMES = ("model.pth", "model_file.pth", "checkpoint.pth", "model.pth.tar", "model_file.pth.tar")


@dataclass(frozen=True, slots=True)
class CoquiSource:
    """How to load one coqui model.

    Attributes:
        model_path: Checkpoint file, or the folder itself for models that load from a folder (XTTS).
        config_path: Its ``config.json``; ``None`` with ``model_name``.
        model_name: A coqui catalog name to load through coqui's own manager (already downloaded).
    """

    model_path: Path | None = None
    config_path: Path | None = None
    model_name: str | None = None


def _folder_source(folder: Path) -> CoquiSource | None:
    """A :class:`CoquiSource` for a checkpoint folder, or ``None`` if it holds no usable model."""
    config = folder / "config.json"
    if not config.is_file():
        return None
    try:
        model_type = str(json.loads(config.read_text()).get("model", ""))
    except (OSError, ValueError):
        return None
    if model_type == "xtts":
        return CoquiSource(model_path=folder, config_path=config)
    for name in CHECKPOINT_NAMES:
        if (folder / name).is_file():
            return CoquiSource(model_path=folder / name, config_path=config)
    candidates = sorted(folder.glob("*.pth"))
    if len(candidates) == 1:
        return CoquiSource(model_path=candidates[0], config_path=config)
    return None


def _coqui_catalog_item(model_name: str) -> dict[str, Any] | None:
    """coqui's own entry for ``model_name`` from its packaged ``.models.json`` (no import of TTS)."""
    spec = find_spec("TTS")
    if spec is None or not spec.submodule_search_locations:
        return None
    models_json = Path(next(iter(spec.submodule_search_locations))) / ".models.json"
    try:
        catalog = json.loads(models_json.read_text())
        kind, lang, dataset, model = model_name.split("/")
        item = catalog[kind][lang][dataset][model]
    except (OSError, ValueError, KeyError):
        return None
    return dict(item)


def coqui_data_dir() -> Path:
    """coqui's model download folder (``get_user_data_dir('tts')``: ``$TTS_HOME``, XDG, ~/.local/share)."""
    from trainer.io import get_user_data_dir

    return Path(get_user_data_dir("tts"))


def resolve_coqui_source(entry: ModelEntry, settings: Settings) -> CoquiSource:
    """Where to load ``entry`` from (see the module docstring for the order).

    Raises:
        ModelUnavailable: Not local and downloads are off (fast, no network).
    """
    if entry.source.startswith("tiny:"):
        from workers.tiny import ensure_tiny

        folder = ensure_tiny(entry.source, settings.resolved_models_dir)
        # the same rules as a real checkpoint folder: XTTS loads from the folder, VITS from model.pth
        found = _folder_source(folder)
        return found or CoquiSource(model_path=folder / "model.pth", config_path=folder / "config.json")
    for folder in (settings.resolved_models_dir / entry.id, Path(entry.source)):
        if folder.is_dir() and (found := _folder_source(folder)) is not None:
            return found
    item = _coqui_catalog_item(entry.source)
    if item is not None and "repo_id" in item:
        # hub-hosted (XTTS-v2): coqui would call snapshot_download every time; find the cached copy
        from huggingface_hub import snapshot_download
        from huggingface_hub.errors import LocalEntryNotFoundError

        try:
            path = snapshot_download(
                item["repo_id"],
                allow_patterns=item.get("allow"),
                ignore_patterns=item.get("ignore"),
                local_files_only=not settings.allow_downloads,
            )
        except LocalEntryNotFoundError as e:
            raise ModelUnavailable(
                unavailable_message(entry, settings, f"{item['repo_id']} is not in the Hugging Face cache")
            ) from e
        except OSError as e:
            raise ModelUnavailable(unavailable_message(entry, settings, str(e))) from e
        found = _folder_source(Path(path))
        if found is None:
            raise ModelUnavailable(unavailable_message(entry, settings, f"{path} holds no coqui checkpoint"))
        return found
    folder = coqui_data_dir() / entry.source.replace("/", "--")
    if folder.is_dir() or settings.allow_downloads:
        return CoquiSource(model_name=entry.source)
    raise ModelUnavailable(unavailable_message(entry, settings, f"{entry.source} is not in {folder.parent}"))


class CoquiBackend:
    """coqui-tts ``TTS`` behind the :class:`~workers.backends.base.Backend` interface.

    Request fields used: ``prompt`` (text), ``voice`` (speaker of multi-speaker models),
    ``language`` (multilingual models), ``references`` (voice cloning; written to temporary WAV
    files for coqui), ``speed`` (VITS: ``length_scale / speed``; XTTS: its ``speed``), ``seed``.
    """

    def __init__(self, entry: ModelEntry, settings: Settings) -> None:
        self.entry = entry
        self.settings = settings
        self.device = settings.device
        self._tts: Any = None
        self._base_length_scale: float | None = None
        self._durations: DurationTap | None = None
        self._lock = threading.RLock()
        self.store: ArtifactStore | None = None
        """Where library voices' conditioning is cached (opened from ``settings`` on first use)."""

    @property
    def loaded(self) -> bool:
        return self._tts is not None

    def load(self) -> None:
        """Load the model (idempotent).

        Raises:
            ModelUnavailable: Weights are neither local nor downloadable.
        """
        with self._lock:
            if self._tts is not None:
                return
            source = resolve_coqui_source(self.entry, self.settings)
            logger.info("loading %s from %s on %s", self.entry.id, source, self.device)
            from TTS.api import TTS

            try:
                if source.model_name is not None:
                    tts = TTS(source.model_name, progress_bar=False)
                else:
                    model_path, config_path = str(source.model_path), str(source.config_path)
                    tts = TTS(model_path=model_path, config_path=config_path, progress_bar=False)
            except OSError as e:
                raise ModelUnavailable(unavailable_message(self.entry, self.settings, str(e))) from e
            tts = tts.to(self.device)
            model = tts.synthesizer.tts_model
            self._base_length_scale = float(model.length_scale) if hasattr(model, "length_scale") else None
            self._durations = DurationTap.install(model)
            self._tts = tts

    def unload(self) -> None:
        """Drop the model and free device memory."""
        with self._lock:
            if self._tts is None:
                return
            self._tts = None
            release_memory()
            logger.info("unloaded %s", self.entry.id)

    def memory_bytes(self) -> int:
        """Parameter and buffer bytes of the loaded TTS model and vocoder."""
        if self._tts is None:
            return 0
        synth = self._tts.synthesizer
        return module_bytes(synth.tts_model, getattr(synth, "vocoder_model", None))

    @property
    def sample_rate(self) -> int:
        if self._tts is None:
            return self.entry.sample_rate
        return int(self._tts.synthesizer.output_sample_rate)

    def _speaker(self, tts: Any, request: GenRequest) -> str | None:
        clones = bool(getattr(tts.synthesizer.tts_model.config, "supports_cloning", False))
        if clones:
            return None
        speakers = list(tts.speakers or []) if tts.is_multi_speaker else []
        if not speakers:
            if request.voice is not None:
                raise InvalidInput(f"'{self.entry.id}' has a single voice; omit 'voice'", field="voice")
            return None
        voice = request.voice or (self.entry.speakers[0] if self.entry.speakers else speakers[0])
        if voice not in speakers:
            shown = ", ".join(speakers[:20]) + (" ..." if len(speakers) > 20 else "")
            message = f"unknown voice '{voice}' for '{self.entry.id}'; speakers: {shown}"
            raise InvalidInput(message, field="voice")
        return voice

    def _language(self, tts: Any, request: GenRequest) -> str | None:
        if not tts.is_multi_lingual:
            return None
        languages = list(tts.languages or [])
        language = request.language or (self.entry.languages[0] if self.entry.languages else "en")
        if languages and language not in languages:
            raise InvalidInput(
                f"language '{language}' not offered by '{self.entry.id}'; languages: {', '.join(languages)}",
                field="language",
            )
        return language

    def generate(self, request: GenRequest, *, progress: ProgressFn | None = None) -> Audio:
        """Speak ``request.prompt``.

        Args:
            request: Text, voice/language/references, speed and seed.
            progress: Fraction of sentences done, in [0, 1]; may raise to cancel.

        Returns:
            Mono audio at the model's output rate.
        """
        if not request.prompt.strip():
            raise InvalidInput("nothing to speak: empty text", field="text")
        if not request.speed > 0:
            raise InvalidInput("speed must be positive", field="speed")
        with self._lock:
            if self._tts is None:
                self.load()
            tts = self._tts
            model = tts.synthesizer.tts_model
            speaker = self._speaker(tts, request)
            language = self._language(tts, request)
            clones = bool(getattr(model.config, "supports_cloning", False))
            if clones and not request.references:
                raise InvalidInput(f"'{self.entry.id}' needs 1-3 voice references", field="reference_uploads")
            if request.references and not clones:
                raise InvalidInput(f"'{self.entry.id}' does not clone voices", field="reference_uploads")
            segments = segment_text(request.prompt, language=language or "en", lexicon=dict(request.lexicon))
            if not segments:
                raise InvalidInput("nothing to speak: the text has no letters or digits", field="text")
            if self._base_length_scale is None and not clones and request.speed != 1.0:
                logger.warning("%s cannot change speed; ignoring speed=%s", self.entry.id, request.speed)
            with (
                tempfile.TemporaryDirectory(prefix="soundry-refs-") as tmp,
                _soundfile_references() if request.references else contextlib.nullcontext(),
            ):
                refs = _write_references(request.references, Path(tmp)) or None
                conditioning = self._conditioning(model, refs, request.voice_id) if refs else None
                seed_everything(request.seed)
                import torch

                def make(segment: Segment, index: int, retry: int) -> np.ndarray:
                    speed = float(request.speed) * segment.speed  # SSML prosody rate on top
                    kwargs: dict[str, Any] = {}
                    if self._base_length_scale is not None:
                        model.length_scale = self._base_length_scale / speed  # stateful: every call
                    elif clones:
                        kwargs["speed"] = speed
                    if retry:  # a retry draws from its own seed (the first try continues the job's)
                        seed_everything(request.seed + retry * RETRY_SEED_STEP + index)
                    if self._durations:
                        self._durations.last = None
                    with torch.inference_mode():
                        wav = tts.tts(
                            segment.text,
                            speaker=speaker,
                            language=language,
                            speaker_wav=refs,
                            split_sentences=False,
                            **kwargs,
                        )
                    return _trim_tail(np.asarray(wav, dtype=np.float32).reshape(-1), self.sample_rate)

                def words_of(segment: Segment, wave: np.ndarray) -> list[Word]:
                    # VITS: from its own durations; XTTS reports none: English force-aligned, else estimated
                    found = self._durations.words(segment.text, wave) if self._durations else []
                    return found or timings.aligned_or_estimated(
                        segment.text, wave, self.sample_rate, language
                    )

                with _fixed_conditioning(model, conditioning):
                    audio = speak(segments, make, words_of, request, self.sample_rate, progress)
            if not np.isfinite(audio.samples).all():
                raise GenerationFailed("the model produced non-finite samples")
            peak = float(np.abs(audio.samples).max()) if audio.frames else 0.0
            return audio.with_samples(audio.samples / peak) if peak > 1.0 else audio

    def _voice_store(self) -> ArtifactStore | None:
        if self.store is None:
            try:
                self.store = open_store(self.settings)
            except Exception:  # no store: conditioning is computed per job, as for raw uploads
                logger.warning("no artifact store: voice conditioning is not cached", exc_info=True)
        return self.store

    def _conditioning(self, model: Any, refs: list[str], voice_id: str | None) -> tuple[Any, Any] | None:
        """XTTS's ``(gpt_cond_latent, speaker_embedding)`` for ``refs``: computed once per job (coqui
        would compute it again for every sentence), and for a library voice (``voice_id``) once per voice
        and model, kept in the store under :func:`~gen_server.storage.voice_conditioning_key`.

        ``None`` for models other than XTTS (coqui conditions them itself).
        """
        from TTS.tts.models.xtts import Xtts

        if not isinstance(model, Xtts):
            return None
        import torch

        key = voice_conditioning_key(voice_id, self.entry.id) if voice_id else None
        store = self._voice_store() if key else None
        if store is not None and key is not None and store.exists(key):
            try:
                saved = torch.load(io.BytesIO(store.get(key)), map_location=self.device, weights_only=True)
                return saved["gpt_cond_latent"], saved["speaker_embedding"]
            except Exception:  # unreadable (a partial write, another torch): computed again below
                logger.warning("voice %s: cached conditioning %s unreadable; recomputing", voice_id, key)
        config = model.config  # what XTTS's synthesize() would pass (its "best tuning knobs")
        with torch.inference_mode():
            latent, embedding = model.get_conditioning_latents(
                audio_path=refs,
                max_ref_length=config["max_ref_len"],
                gpt_cond_len=config["gpt_cond_len"],
                gpt_cond_chunk_len=config["gpt_cond_chunk_len"],
                sound_norm_refs=config["sound_norm_refs"],
            )
        if store is not None and key is not None:
            buffer = io.BytesIO()
            saved = {"gpt_cond_latent": latent.cpu().clone(), "speaker_embedding": embedding.cpu().clone()}
            torch.save(saved, buffer)  # clones: a view would save its whole storage
            store.put(key, buffer.getvalue())
        return latent, embedding


@contextlib.contextmanager
def _fixed_conditioning(model: Any, conditioning: tuple[Any, Any] | None) -> Iterator[None]:
    """While active, the model's ``get_conditioning_latents`` returns ``conditioning`` (computed or read
    from the cache by :meth:`CoquiBackend._conditioning`) instead of recomputing it for each sentence.
    The backend's lock is held for the whole job, so no other job sees the model meanwhile."""
    if conditioning is None:
        yield
        return
    model.get_conditioning_latents = lambda *args, **kwargs: conditioning
    try:
        yield
    finally:
        del model.get_conditioning_latents


def _write_references(references: tuple[Audio, ...], folder: Path) -> list[str]:
    """Write voice references as 16-bit mono WAV files (what coqui's loaders expect); their paths."""
    paths: list[str] = []
    for i, ref in enumerate(references):
        path = folder / f"ref{i}.wav"
        mono = ref.samples.mean(axis=0) if ref.channels > 1 else ref.samples[0]
        sf.write(path, np.clip(mono, -1.0, 1.0), ref.sample_rate, subtype="PCM_16")
        paths.append(str(path))
    return paths


_REFERENCE_PATCH_LOCK = threading.Lock()


def _read_reference(path: str | Path, sampling_rate: int) -> torch.Tensor:
    """coqui's ``TTS.tts.models.xtts.load_audio`` with soundfile in place of ``torchaudio.load``.

    Same result for the WAV files :func:`_write_references` writes: float32 ``[1, frames]``, channels
    averaged, resampled to ``sampling_rate`` (torchaudio's resampler, pure torch), clipped to [-1, 1].
    """
    import torch
    import torchaudio

    data, rate = sf.read(str(path), dtype="float32", always_2d=True)
    audio = torch.from_numpy(np.ascontiguousarray(data.T)).mean(dim=0, keepdim=True)
    if rate != sampling_rate:
        audio = torchaudio.functional.resample(audio, rate, sampling_rate)
    return audio.clamp(-1.0, 1.0)


@contextlib.contextmanager
def _soundfile_references() -> Iterator[None]:
    """While active, XTTS reads voice references with :func:`_read_reference` (no FFmpeg needed)."""
    from TTS.tts.models import xtts

    with _REFERENCE_PATCH_LOCK:
        original = xtts.load_audio
        xtts.load_audio = _read_reference
        try:
            yield
        finally:
            xtts.load_audio = original


class DurationTap:
    """The input symbols and durations of a VITS model's last ``inference`` call (coqui's ``tts()``
    returns only the wave): its duration predictor's frames per symbol, times the hop, are samples."""

    def __init__(self, model: Any) -> None:
        self.model = model
        self.hop = int(model.config.audio["hop_length"])
        self.characters = model.tokenizer.characters
        self.last: tuple[list[int], list[float]] | None = None

    @classmethod
    def install(cls, model: Any) -> DurationTap | None:
        """Wrap ``model.inference`` (VITS only: XTTS has no duration predictor); ``None`` elsewhere."""
        if type(model).__name__ != "Vits" or getattr(model, "tokenizer", None) is None:
            return None
        tap = cls(model)
        inner = model.inference

        def inference(x: Any, aux_input: Any = None, **kwargs: Any) -> Any:
            outputs = inner(x, aux_input, **kwargs)
            durations = outputs.get("durations") if isinstance(outputs, dict) else None
            if durations is not None and x.shape[0] == 1:
                tap.last = (x[0].tolist(), durations.reshape(-1).tolist())
            return outputs

        model.inference = inference
        return tap

    def words(self, text: str, wave: np.ndarray) -> list[Word]:
        """The words of ``text`` timed from the last call; empty when there was none to read."""
        if self.last is None:
            return []
        ids, frames = self.last
        if len(ids) != len(frames):
            return []
        blank = getattr(self.characters, "blank", None)
        symbols = []
        for i, f in zip(ids, frames, strict=True):
            char = self.characters.id_to_char(i)
            symbols.append(("_" if char in (blank, self.characters.pad) else char, round(f * self.hop)))
        return timings.from_symbols(text, symbols, wave, self.model.config.audio["sample_rate"])


def _trim_tail(wave: np.ndarray, sample_rate: int) -> np.ndarray:
    """Drop the silence coqui appends after each sentence (its own ``PAD_SILENCE_SAMPLES``)."""
    from TTS.utils.synthesizer import PAD_SILENCE_SAMPLES

    pad = int(PAD_SILENCE_SAMPLES)
    if pad and wave.size > pad and not np.any(wave[-pad:]):
        return wave[:-pad]
    return wave
