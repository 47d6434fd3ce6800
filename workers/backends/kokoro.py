"""Kokoro backend: ``kokoro.KModel`` (Kokoro-82M, StyleTTS2 + iSTFTNet, 24 kHz) fed by espeak-ng G2P.

Where the weights come from (first match wins), never from the hub at load:

1. ``tiny:kokoro``: the tiny random Kokoro of :func:`workers.tiny.ensure_tiny` (dev preset, tests).
2. ``<models_dir>/<model id>/`` or a folder named by ``source``: ``config.json``, a ``*.pth`` checkpoint
   (``kokoro-v1_0.pth``) and ``voices/<name>.pt``, the layout of ``hexgrad/Kokoro-82M``.
3. With ``settings.allow_downloads`` (``soundry models pull kokoro-82m``): those files of
   ``hexgrad/Kokoro-82M`` fetched into ``<models_dir>/kokoro-82m/`` first. Otherwise
   :class:`ModelUnavailable` at once.

``KModel(repo_id=..., config=<path>, model=<path>)`` is given both paths, so it never calls the hub.

Text to phonemes: kokoro's English pipeline (``KPipeline`` with misaki's ``en.G2P``) downloads a spaCy
model when it is built and fails offline. This backend uses misaki's espeak-ng G2P instead (through
phonemizer-fork and the espeak-ng library and data bundled by espeakng-loader; all offline) and hands
the phonemes to ``KModel`` directly: English through ``misaki.espeak.EspeakFallback`` (espeak's IPA
mapped onto misaki's English phoneme set, what ``KPipeline`` itself uses for words outside its
lexicon), Spanish, French, Hindi, Italian and Brazilian Portuguese through ``misaki.espeak.EspeakG2P``
(what ``KPipeline`` uses for them). The language is the request's, else the first voice's (its first
letter, :data:`gen_server.contract.catalog.KOKORO_LANGUAGES`).

Voices: a voice pack is ``[510, 1, 256]``; the row for a phoneme string of length ``n`` is ``n - 1``.
A blend ``af_bella(2)+af_sky(1)`` is the weighted mean of the packs (weights normalised,
:mod:`gen_server.contract.voice_mix`). Word timings come from the model's own per-symbol durations
(``pred_dur``; 600 samples of 24 kHz audio per frame in Kokoro-82M). ``speed`` divides the durations,
as in kokoro.
Seeds: the source excitation draws noise from torch's generator; each sentence draws it from its own
seed (job seed, sentence index, retry), so a seed repeats the audio on one device.
"""

from __future__ import annotations

import json
import logging
import math
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from gen_server.audio import Audio, Word
from gen_server.contract.catalog import KOKORO_FILES, KOKORO_ID, KOKORO_LANGUAGES, KOKORO_REPO, ModelEntry
from gen_server.contract.voice_mix import parse_voice_mix
from gen_server.errors import GenerationFailed, InvalidInput, ModelUnavailable
from gen_server.settings import Settings
from workers import timings
from workers.backends._audiocraft_weights import unavailable_message
from workers.backends.base import GenRequest, ProgressFn
from workers.memory import module_bytes, release_memory
from workers.sentences import speak
from workers.speech_check import RETRY_SEED_STEP
from workers.text import Segment, segment_text

if TYPE_CHECKING:
    import torch

logger = logging.getLogger(__name__)

SAMPLE_RATE = 24000
SAMPLES_PER_FRAME = 600
"""24 kHz samples per duration frame of Kokoro-82M (``KPipeline.join_timestamps``: 'multiply by 600'):
twice the product of the iSTFTNet upsampling rates and its iSTFT hop (:func:`frame_samples`)."""
MAX_PHONEMES = 510
"""Longest phoneme string one ``KModel`` call takes (its 512 positions less BOS/EOS; the voice pack's
rows)."""
MAX_SEGMENT_CHARS = 200
"""Sentences longer than this are cut at clause marks first (their phonemes stay well under 510)."""
ESPEAK_CODES: dict[str, str] = {
    "en-us": "en-us",
    "en-gb": "en-gb",
    "es": "es",
    "fr": "fr-fr",
    "hi": "hi",
    "it": "it",
    "pt-br": "pt-br",
}
"""Soundry's language code -> espeak-ng's voice, for every language of :data:`KOKORO_LANGUAGES`."""
_ALIASES = {"fr-fr": "fr", "pt": "pt-br"}


@dataclass(frozen=True, slots=True)
class KokoroFolder:
    """One Kokoro model on disk (the layout of ``hexgrad/Kokoro-82M``)."""

    config: Path
    checkpoint: Path
    voices: dict[str, Path]

    @classmethod
    def find(cls, folder: Path) -> KokoroFolder | None:
        """The model in ``folder``, or ``None`` without a config, one checkpoint and a voice."""
        config = folder / "config.json"
        preferred = folder / "kokoro-v1_0.pth"
        checkpoints = [preferred] if preferred.is_file() else sorted(folder.glob("*.pth"))
        voices = {p.stem: p for p in sorted((folder / "voices").glob("*.pt"))}
        if not config.is_file() or len(checkpoints) != 1 or not voices:
            return None
        return cls(config, checkpoints[0], voices)


def _download(entry: ModelEntry, folder: Path, settings: Settings) -> None:
    """Fetch Kokoro-82M's config, checkpoint and voices into ``folder`` (``soundry models pull``)."""
    from huggingface_hub import snapshot_download

    repo = KOKORO_REPO if entry.id == KOKORO_ID else entry.source
    try:
        snapshot_download(repo, allow_patterns=list(KOKORO_FILES), local_dir=folder)
    except Exception as e:  # network and hub errors alike: the folder stays as it was
        raise ModelUnavailable(
            unavailable_message(entry, settings, f"{repo} could not be fetched ({e})")
        ) from e


def resolve_kokoro_folder(entry: ModelEntry, settings: Settings) -> KokoroFolder:
    """Where to load ``entry`` from (see the module docstring for the order).

    Raises:
        ModelUnavailable: Not local and downloads are off (fast, no network), or the download failed.
    """
    if entry.source.startswith("tiny:"):
        from workers.tiny import ensure_tiny

        folder = ensure_tiny(entry.source, settings.resolved_models_dir)
        found = KokoroFolder.find(folder)
        if found is None:
            raise ModelUnavailable(f"the tiny Kokoro at {folder} is incomplete")
        return found
    local = settings.resolved_models_dir / entry.id
    for folder in (local, Path(entry.source)):
        if folder.is_dir() and (found := KokoroFolder.find(folder)) is not None:
            return found
    if not settings.allow_downloads:
        missing = f"no config.json, kokoro-v1_0.pth and voices/*.pt in {local}"
        raise ModelUnavailable(unavailable_message(entry, settings, missing))
    _download(entry, local, settings)
    found = KokoroFolder.find(local)
    if found is None:
        raise ModelUnavailable(
            unavailable_message(entry, settings, f"{local} is incomplete after the download")
        )
    return found


def frame_samples(config: Path) -> int:
    """Output samples per predicted duration frame of the model ``config`` describes (F0 runs at twice
    the frame rate and the generator upsamples it by its rates and its iSTFT hop)."""
    net = json.loads(config.read_text(encoding="utf-8"))["istftnet"]
    return 2 * math.prod(int(r) for r in net["upsample_rates"]) * int(net["gen_istft_hop_size"])


def language_for(entry: ModelEntry, language: str | None, voices: list[str]) -> str:
    """The Soundry language code (a key of :data:`ESPEAK_CODES`) a request speaks.

    ``language`` when given (``en`` means the first voice's English, American unless it is a British
    ``b`` voice), else the first voice's language.

    Raises:
        InvalidInput: (field ``language``) a language this model does not speak here.
    """
    first = voices[0] if voices else ""
    own = KOKORO_LANGUAGES.get(first[:1], "en-us")
    if language is None:
        return own
    code = language.lower().replace("_", "-")
    if code == "en":
        return own if own.startswith("en") else "en-us"
    code = _ALIASES.get(code, code)
    if code not in ESPEAK_CODES:
        known = ", ".join(ESPEAK_CODES)
        raise InvalidInput(
            f"language '{language}' not offered by '{entry.id}'; languages: {known}", field="language"
        )
    return code


@dataclass(frozen=True, slots=True)
class _Text:
    """What ``EspeakFallback`` reads of a misaki token: its ``text``."""

    text: str


class _EnglishG2P:
    """misaki's espeak English (``EspeakFallback``) on whole sentences: text -> misaki phonemes."""

    def __init__(self, british: bool) -> None:
        from misaki.espeak import EspeakFallback

        self._g2p = EspeakFallback(british=british)

    def __call__(self, text: str) -> str:
        phonemes, _ = self._g2p(_Text(text))
        return str(phonemes or "")


class _EspeakG2P:
    """misaki's ``EspeakG2P`` for the other languages: text -> phonemes."""

    def __init__(self, language: str) -> None:
        from misaki.espeak import EspeakG2P

        self._g2p = EspeakG2P(language=language)

    def __call__(self, text: str) -> str:
        phonemes, _ = self._g2p(text)
        return str(phonemes or "")


def phoneme_chunks(phonemes: str, limit: int = MAX_PHONEMES) -> list[str]:
    """``phonemes`` cut at spaces into pieces of at most ``limit`` characters (a word longer than that
    is cut inside)."""
    if len(phonemes) <= limit:
        return [phonemes] if phonemes else []
    chunks: list[str] = []
    current = ""
    for word in phonemes.split(" "):
        while len(word) > limit:
            if current:
                chunks.append(current)
                current = ""
            chunks.append(word[:limit])
            word = word[limit:]
        candidate = f"{current} {word}" if current else word
        if len(candidate) > limit:
            chunks.append(current)
            current = word
        else:
            current = candidate
    if current:
        chunks.append(current)
    return chunks


class KokoroBackend:
    """``kokoro.KModel`` behind the :class:`~workers.backends.base.Backend` interface.

    Request fields used: ``prompt`` (text), ``voice`` (a voice pack name or a weighted blend),
    ``language``, ``speed``, ``seed``, ``lexicon``.
    """

    def __init__(self, entry: ModelEntry, settings: Settings) -> None:
        self.entry = entry
        self.settings = settings
        self.device = settings.device
        self._model: Any = None
        self._folder: KokoroFolder | None = None
        self._packs: dict[str, torch.Tensor] = {}
        self._g2p: dict[str, Callable[[str], str]] = {}
        self._frame_samples = SAMPLES_PER_FRAME
        self._lock = threading.RLock()

    @property
    def loaded(self) -> bool:
        return self._model is not None

    @property
    def sample_rate(self) -> int:
        return SAMPLE_RATE

    @property
    def voices(self) -> list[str]:
        """The voice packs of the loaded model (its ``voices/`` folder)."""
        return list(self._folder.voices) if self._folder is not None else []

    def load(self) -> None:
        """Load the model from its folder (idempotent).

        Raises:
            ModelUnavailable: The folder is missing or incomplete and cannot be downloaded.
        """
        with self._lock:
            if self._model is not None:
                return
            folder = resolve_kokoro_folder(self.entry, self.settings)
            logger.info("loading %s from %s on %s", self.entry.id, folder.checkpoint.parent, self.device)
            from kokoro import KModel

            repo = KOKORO_REPO if not self.entry.dev else f"soundry/{self.entry.id}"
            try:
                model = KModel(repo_id=repo, config=str(folder.config), model=str(folder.checkpoint))
            except (OSError, RuntimeError, KeyError, ValueError) as e:
                raise ModelUnavailable(
                    unavailable_message(self.entry, self.settings, f"{folder.checkpoint} does not load ({e})")
                ) from e
            self._model = model.to(self.device).eval()
            self._frame_samples = frame_samples(folder.config)
            self._folder = folder
            self._packs = {}

    def unload(self) -> None:
        """Drop the model and its voice packs."""
        with self._lock:
            if self._model is None:
                return
            self._model = None
            self._packs = {}
            release_memory()

    def memory_bytes(self) -> int:
        """Parameter and buffer bytes of the model plus the voice packs in use."""
        if self._model is None:
            return 0
        packs = sum(p.numel() * p.element_size() for p in self._packs.values())
        return module_bytes(self._model) + packs

    # -- voices ------------------------------------------------------------------------------------

    def _pack(self, name: str) -> torch.Tensor:
        if self._folder is None:
            raise RuntimeError("the model is not loaded")
        if name not in self._packs:
            import torch

            path = self._folder.voices.get(name)
            if path is None:
                known = ", ".join(self._folder.voices)
                raise InvalidInput(
                    f"unknown voice '{name}' for '{self.entry.id}'; speakers: {known}", field="voice"
                )
            pack = torch.load(path, map_location="cpu", weights_only=True).float()
            if pack.dim() != 3 or pack.shape[1:] != (1, 256):
                raise GenerationFailed(f"voice pack {path} has shape {tuple(pack.shape)}, not [510, 1, 256]")
            self._packs[name] = pack
        return self._packs[name]

    def voice_pack(self, voice: str | None) -> tuple[torch.Tensor, list[str]]:
        """The voice pack ``[510, 1, 256]`` for ``voice`` (a name or a blend; the first voice when
        ``None``) and the names it mixes.

        Raises:
            InvalidInput: (field ``voice``) a malformed blend or an unknown voice.
        """
        with self._lock:
            if self._model is None:
                self.load()
            mix = parse_voice_mix(voice) if voice else ((self.voices[0], 1.0),)
            packs = [(self._pack(name), weight) for name, weight in mix]
            blended = packs[0][0] * packs[0][1]
            for pack, weight in packs[1:]:
                blended = blended + pack * weight
            return blended, [name for name, _ in mix]

    def _g2p_for(self, language: str) -> Callable[[str], str]:
        if language not in self._g2p:
            if language in ("en-us", "en-gb"):
                self._g2p[language] = _EnglishG2P(british=language == "en-gb")
            else:
                self._g2p[language] = _EspeakG2P(ESPEAK_CODES[language])
        return self._g2p[language]

    def phonemes(self, text: str, language: str) -> str:
        """``text`` as the phonemes kokoro reads (misaki's espeak G2P for ``language``)."""
        with self._lock:
            return self._g2p_for(language)(text).strip()

    # -- synthesis ---------------------------------------------------------------------------------

    def _speak_chunk(self, phonemes: str, pack: torch.Tensor, speed: float, seed: int) -> tuple[Any, Any]:
        import torch

        device = torch.device(self.device)
        devices = [device.index or 0] if device.type == "cuda" else []
        with torch.random.fork_rng(devices=devices), torch.inference_mode():
            torch.manual_seed(seed)
            ref = pack[len(phonemes) - 1].to(device)
            out = self._model(phonemes, ref, speed, return_output=True)
        return out.audio, out.pred_dur

    def _symbols(self, phonemes: str, durations: Any, samples: int) -> list[tuple[str, int]]:
        """``(symbol, samples)`` per model input: BOS, the phonemes the vocabulary knows, EOS."""
        vocab = self._model.vocab
        kept = [p for p in phonemes if vocab.get(p) is not None]
        frames = [int(d) for d in np.asarray(durations).reshape(-1)]
        if len(frames) != len(kept) + 2:
            return [("_", samples)]
        labels = ["_", *kept, "_"]
        out = [(label, f * self._frame_samples) for label, f in zip(labels, frames, strict=True)]
        rest = samples - sum(n for _, n in out)
        if rest > 0:
            out.append(("_", rest))
        return out

    def generate(self, request: GenRequest, *, progress: ProgressFn | None = None) -> Audio:
        """Speak ``request.prompt``.

        Args:
            request: Text, voice (or blend), language, speed (2.0 is twice as fast), seed.
            progress: Fraction of sentences done, in [0, 1]; may raise to cancel.

        Returns:
            Mono 24 kHz audio with word timings from the model's durations.
        """
        if not request.speed > 0:
            raise InvalidInput("speed must be positive", field="speed")
        with self._lock:
            if self._model is None:
                self.load()
            pack, names = self.voice_pack(request.voice)
            language = language_for(self.entry, request.language, names)
            segments = segment_text(
                request.prompt, language=language, max_chars=MAX_SEGMENT_CHARS, lexicon=dict(request.lexicon)
            )
            if not segments:
                raise InvalidInput("nothing to speak: the text has no letters or digits", field="text")
            last: list[tuple[str, int]] = []  # (symbol, samples) of the sentence made last

            def make(segment: Segment, index: int, retry: int) -> np.ndarray:
                speed = float(request.speed) * segment.speed  # SSML prosody rate on top
                seed = (request.seed + retry * RETRY_SEED_STEP) * 1009 + index
                waves: list[np.ndarray] = []
                last.clear()
                for k, chunk in enumerate(phoneme_chunks(self.phonemes(segment.text, language))):
                    audio, durations = self._speak_chunk(chunk, pack, speed, seed + k * 7919)
                    wave = audio.detach().float().cpu().numpy().reshape(-1).astype(np.float32)
                    if k:
                        last.append((" ", 0))  # the space the chunks were cut at
                    last.extend(self._symbols(chunk, durations.cpu().numpy(), wave.size))
                    waves.append(wave)
                return np.concatenate(waves) if waves else np.zeros(0, dtype=np.float32)

            def words_of(segment: Segment, wave: np.ndarray) -> list[Word]:
                if not last:
                    return timings.estimate(segment.text, wave, SAMPLE_RATE)
                return timings.from_symbols(segment.text, last, wave, SAMPLE_RATE)

            audio = speak(segments, make, words_of, request, SAMPLE_RATE, progress)
            if not np.isfinite(audio.samples).all():
                raise GenerationFailed("the model produced non-finite samples")
            return audio
