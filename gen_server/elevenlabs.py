"""ElevenLabs compatibility: its request shapes, output formats, voices and errors mapped onto Soundry jobs.

Apps written against ElevenLabs' API (or its official SDKs, given Soundry's URL as ``base_url``) call
``POST /v1/sound-generation``, ``POST /v1/text-to-speech/{voice_id}`` and ``GET /v1/voices`` here.
Each call is one ordinary Soundry job, waited for and answered with the audio.

* ``output_format`` (query) is ElevenLabs' ``codec_samplerate[_bitrate]`` code: the job is made at that
  rate, mono, in that codec and bitrate (``mp3`` -> mp3 job, ``opus`` -> ogg/Opus job, ``wav``, ``pcm``,
  ``ulaw``, ``alaw`` -> a 16-bit WAV job delivered as it is or as raw s16le / G.711 bytes).
* Voices: every speaker of every speech model that needs no reference audio is a voice, with the id
  ``<model>`` (single-speaker models) or ``<model>:<speaker>``; a bare speaker name works when one
  model has it. ElevenLabs' premade voice ids (:data:`PREMADE_VOICES`) speak with the default voice.
  The caller's voices of the library (``POST /v1/voices``, consent-checked clones) are listed first
  (``category`` ``cloned``) and speak through a cloning model (:func:`library_speech_job`).
* Errors on these paths have ElevenLabs' shape, ``{"detail": {"status", "message"}}`` (see
  :func:`error_body`); the rest of the API keeps Soundry's.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Final, Literal, get_args

from pydantic import BaseModel, ConfigDict, Field, field_validator
from pydantic.json_schema import SkipJsonSchema
from pydantic_core import PydanticCustomError

from gen_server.audio.encode import MEDIA_TYPES, EncodeFormat
from gen_server.captions import CharacterAlignment
from gen_server.contract import examples
from gen_server.contract.catalog import Catalog, Kind, ModelEntry
from gen_server.contract.result import JobView
from gen_server.contract.spec import MAX_SEED, AudioFormat, JobRequest, PostProcess, Sampling
from gen_server.contract.voice import VoiceView
from gen_server.errors import InvalidInput, NotFound
from gen_server.jobs import Caller, JobService

PATH_PREFIXES: Final[tuple[str, ...]] = (
    "/v1/sound-generation",
    "/v1/text-to-speech",
    "/v1/voices",
    "/v2/voices",
)
"""Paths (and everything under them) that answer errors in ElevenLabs' shape."""

DEFAULT_SFX_DURATION_S: Final[float] = 5.0
"""Clip length when ``duration_seconds`` is null (ElevenLabs lets its model guess; ours cannot)."""

MAX_ELEVENLABS_SEED: Final[int] = 2**32 - 1
JOB_TIMEOUT_S: Final[float] = 600.0

OutputFormatCode = Literal[
    "mp3_22050_32",
    "mp3_24000_48",
    "mp3_44100_32",
    "mp3_44100_64",
    "mp3_44100_96",
    "mp3_44100_128",
    "mp3_44100_192",
    "opus_48000_32",
    "opus_48000_64",
    "opus_48000_96",
    "opus_48000_128",
    "opus_48000_192",
    "pcm_8000",
    "pcm_16000",
    "pcm_22050",
    "pcm_24000",
    "pcm_32000",
    "pcm_44100",
    "pcm_48000",
    "wav_8000",
    "wav_16000",
    "wav_22050",
    "wav_24000",
    "wav_32000",
    "wav_44100",
    "wav_48000",
    "ulaw_8000",
    "alaw_8000",
]
"""Every ``output_format`` ElevenLabs' API (SDK 2.x) lists; the default is ``mp3_44100_128``."""

# ElevenLabs' premade voices (id -> name) as its API lists them, plus the long-standing "Rachel".
PREMADE_VOICES: Final[dict[str, str]] = {
    "21m00Tcm4TlvDq8ikWAM": "Rachel",
    "EXAVITQu4vr4xnSDxMaL": "Sarah",
    "CwhRBWXzGAHq8TQ4Fs17": "Roger",
    "FGY2WhTYpPnrIDTdsKH5": "Laura",
    "IKne3meq5aSn9XLyUdCD": "Charlie",
    "JBFqnCBsd6RMkjVDRZzb": "George",
    "N2lVS1w4EtoT3dr4eOWO": "Callum",
    "SAz9YHcvj6GT2YYXdXww": "River",
    "SOYHLrjzK2X1ezoPC6cr": "Harry",
    "TX3LPaxmHKxFdv7VOQHJ": "Liam",
    "Xb7hH8MSUJpSbSDYk0k2": "Alice",
    "XrExE9yKIg1WjnnlVkGX": "Matilda",
    "bIHbv24MWmeRgasZH58o": "Will",
    "cgSgspJ2msm6clMCkdW9": "Jessica",
    "cjVigY5qzO86Huf0OWal": "Eric",
    "hpp4J3VqNfWAUOO0d1Us": "Bella",
    "iP95p4xoKVk53GoZ742B": "Chris",
    "nPczCjzI2devNBz1zQrb": "Brian",
    "onwK4e9ZLuTAKqWW03F9": "Daniel",
    "pFZP5JQG7iQjIQuC4Bku": "Lily",
    "pNInz6obpgDQGcFmaJgB": "Adam",
    "pqHfZKP75CvOlQylNhV4": "Bill",
}
"""ElevenLabs premade voice ids accepted as ``voice_id``: they speak with the default speech voice."""


# --------------------------------------------------------------------------------------------- errors


class VoiceNotFound(NotFound):
    code = "voice_not_found"


def applies_to(path: str, method: str = "GET") -> bool:
    """True when ``path`` is one of the ElevenLabs-compatible routes (or under one).

    Soundry's voice library shares ``/v1/voices``: its routes (``POST /v1/voices`` and everything under
    ``/v1/voices/``) answer in Soundry's shape; only the list, ``GET /v1/voices``, is ElevenLabs'.
    """
    if path.startswith("/v1/voices/") or (path == "/v1/voices" and method != "GET"):
        return False
    return any(path == p or path.startswith(p + "/") for p in PATH_PREFIXES)


def error_body(status: int, code: str, message: str, field: str | None) -> dict[str, Any]:
    """ElevenLabs' error shape, which its SDKs put in ``ApiError.body``; the message names the field."""
    del status
    if field and not message.startswith(f"{field}:"):
        message = f"{field}: {message}"
    return {"detail": {"status": code, "message": message}}


class ElevenLabsErrorDetail(BaseModel):
    status: str = Field(examples=["voice_not_found"], description="Machine-readable code")
    message: str = Field(
        examples=["duration_seconds: Input should be less than or equal to 30"],
        description="What went wrong, naming the field when one is at fault",
    )


class ElevenLabsError(BaseModel):
    """Every error on the ElevenLabs-compatible routes has ElevenLabs' shape."""

    detail: ElevenLabsErrorDetail


ERROR_RESPONSES: Final[dict[int | str, dict[str, Any]]] = {
    status: {"model": ElevenLabsError, "description": description}
    for status, description in (
        (401, "Missing or invalid API key (xi-api-key or Authorization: Bearer)"),
        (404, "No such voice (status voice_not_found)"),
        (413, "Request body too large"),
        (422, "Invalid input; the message starts with the field's name"),
        (429, "Rate limit or job quota reached; see Retry-After"),
        (500, "Generation failed"),
        (503, "Model or dependency unavailable"),
    )
}


@contextmanager
def renamed_fields(names: dict[str, str]) -> Iterator[None]:
    """Report Soundry's job fields under the ElevenLabs names the caller used (``model`` -> ``model_id``)."""
    try:
        yield
    except InvalidInput as e:
        if e.field in names:
            e.field = names[e.field]
        raise


# --------------------------------------------------------------------------------------------- formats


@dataclass(frozen=True, slots=True)
class OutputFormat:
    """One ElevenLabs ``output_format``: codec, rate (Hz) and bitrate (kbit/s, lossy codecs only)."""

    code: str
    codec: Literal["mp3", "opus", "wav", "pcm", "ulaw", "alaw"]
    sample_rate: int
    bitrate_kbps: int | None

    @property
    def job_format(self) -> AudioFormat:
        """The format the job writes: raw codes are made as 16-bit WAV and converted on delivery."""
        return {"mp3": "mp3", "opus": "ogg"}.get(self.codec, "wav")  # type: ignore[return-value]

    @property
    def delivered(self) -> EncodeFormat:
        """The format of the bytes the caller gets."""
        return self.codec if self.codec in ("pcm", "ulaw", "alaw") else self.job_format

    @property
    def media_type(self) -> str:
        return MEDIA_TYPES[self.delivered]

    def post(self, **overrides: Any) -> PostProcess:
        """Post-processing that makes the job's audio mono at this rate."""
        return PostProcess(sample_rate=self.sample_rate, channels=1, **overrides)


def output_format(code: str) -> OutputFormat:
    """Parse ``mp3_44100_128``-style codes (see :data:`OutputFormatCode`)."""
    if code not in get_args(OutputFormatCode):
        raise InvalidInput(f"unknown output_format '{code}'", field="output_format")
    codec, rate, *rest = code.split("_")
    return OutputFormat(code, codec, int(rate), int(rest[0]) if rest else None)  # type: ignore[arg-type]


MEDIA_TYPES_OUT: Final[tuple[str, ...]] = tuple(
    sorted({output_format(c).media_type for c in get_args(OutputFormatCode)})
)
"""Media types these routes answer with (for the OpenAPI document)."""


# --------------------------------------------------------------------------------------------- requests


def _query_only(value: Any) -> Any:
    if value is not None:
        raise PydanticCustomError(
            "query_parameter",
            "output_format is a query parameter (?output_format=mp3_44100_128), not a body field",
        )
    return value


class SoundGenerationRequest(BaseModel):
    """ElevenLabs ``POST /v1/sound-generation`` body (``seed`` is Soundry's extension)."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {"text": "glass shattering on concrete", "duration_seconds": 2.0, "prompt_influence": 0.5},
                {"text": "a heavy wooden door creaks open", "model_id": "eleven_text_to_sound_v2", "seed": 7},
            ]
        },
    )

    text: str = Field(min_length=1, max_length=2000, description="What the sound effect should be")
    loop: bool | None = Field(
        False,
        description="Seamless loop: cut at a quiet point with its end blended into its start, so it repeats "
        "with no click or gap (at least 1 s)",
    )
    duration_seconds: float | None = Field(
        None,
        ge=0.5,
        le=30.0,
        allow_inf_nan=False,
        description=f"Clip length in seconds, 0.5-30; null: {DEFAULT_SFX_DURATION_S:g} s",
    )
    prompt_influence: float | None = Field(
        0.3,
        ge=0.0,
        le=1.0,
        allow_inf_nan=False,
        description="0-1: how closely to follow the text (null: 0.3)",
    )
    model_id: str | None = Field(
        None,
        description="eleven_text_to_sound_v2/v3 (or any eleven_text_to_sound_*, eleven_sfx_*): the default "
        "sfx model; or a catalog sfx model id",
    )
    seed: int | None = Field(None, ge=0, le=MAX_SEED, description="Soundry extension: repeatable output")
    output_format: SkipJsonSchema[Any] = Field(None, exclude=True)

    _output_format_in_query = field_validator("output_format")(_query_only)


class VoiceSettings(BaseModel):
    """ElevenLabs voice settings: ``speed`` is applied; the others are accepted and have no effect."""

    model_config = ConfigDict(extra="allow")

    stability: float | None = Field(None, ge=0.0, le=1.0, description="Accepted; no effect")
    similarity_boost: float | None = Field(None, ge=0.0, le=1.0, description="Accepted; no effect")
    style: float | None = Field(None, ge=0.0, le=1.0, description="Accepted; no effect")
    use_speaker_boost: bool | None = Field(None, description="Accepted; no effect")
    speed: float | None = Field(
        None, ge=0.25, le=4.0, allow_inf_nan=False, description="Speaking rate (1: normal)"
    )


class TextToSpeechRequest(BaseModel):
    """ElevenLabs ``POST /v1/text-to-speech/{voice_id}`` body."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {"text": "Dr. Smith arrived at 3 p.m. Then he left.", "model_id": "eleven_multilingual_v2"},
                {
                    "text": "Welcome back.",
                    "voice_settings": {"stability": 0.5, "similarity_boost": 0.75, "speed": 1.1},
                    "language_code": "en",
                    "seed": 42,
                },
            ]
        },
    )

    text: str = Field(min_length=1, description="What to say")
    model_id: str | None = Field(
        None,
        description="An ElevenLabs id (eleven_multilingual_v2, eleven_flash_v2_5, ...: the voice's own "
        "model) or a catalog speech model id",
    )
    language_code: str | None = Field(
        None, max_length=16, description="ISO 639-1 code; the model must offer it"
    )
    voice_settings: VoiceSettings | None = None
    seed: int | None = Field(
        None,
        ge=0,
        le=MAX_ELEVENLABS_SEED,
        description="Repeatable output; values over 2^31-1 are taken mod 2^31",
    )
    previous_text: str | None = Field(None, description="Accepted; no effect")
    next_text: str | None = Field(None, description="Accepted; no effect")
    previous_request_ids: list[str] | None = Field(None, description="Accepted; no effect")
    next_request_ids: list[str] | None = Field(None, description="Accepted; no effect")
    use_pvc_as_ivc: bool | None = Field(None, description="Accepted; no effect")
    apply_text_normalization: Literal["auto", "on", "off"] | None = Field(
        None, description="Accepted; Soundry always spells numbers out"
    )
    apply_language_text_normalization: bool | None = Field(None, description="Accepted; no effect")
    pronunciation_dictionary_locators: list[dict[str, Any]] | None = Field(
        None, description="Not supported: a non-empty list is refused"
    )
    audio_effects: dict[str, Any] | None = Field(None, description="Not supported: refused unless null")


# --------------------------------------------------------------------------------------------- voices


class Voice(BaseModel):
    """One voice in ElevenLabs' list shape (the fields its SDK reads; the rest are left out)."""

    voice_id: str
    name: str
    category: str = "premade"
    description: str | None = None
    labels: dict[str, str] = Field(default_factory=dict)
    preview_url: str | None = None
    available_for_tiers: list[str] = Field(default_factory=list)
    high_quality_base_model_ids: list[str] = Field(default_factory=list)
    library: VoiceView | None = Field(
        None, description="Soundry: the voice library's record of a cloned voice (POST /v1/voices)"
    )


class VoicesResponse(BaseModel):
    """``GET /v1/voices``."""

    model_config = ConfigDict(json_schema_extra={"examples": [examples.ELEVENLABS_VOICES]})

    voices: list[Voice]


class VoicesPage(BaseModel):
    """``GET /v2/voices`` (what the SDK's ``voices.search()`` reads)."""

    model_config = ConfigDict(json_schema_extra={"examples": [examples.ELEVENLABS_VOICES_PAGE]})

    voices: list[Voice]
    has_more: bool
    total_count: int
    next_page_token: str | None = None


def _speakable(entry: ModelEntry) -> bool:
    return entry.kind == "speech" and not entry.voice_cloning


def voices(catalog: Catalog) -> list[Voice]:
    """Every voice, the default first: one per speaker of each speech model that needs no reference audio."""
    default = catalog.default_for("speech")
    out: list[Voice] = []
    entries = sorted((e for e in catalog if _speakable(e)), key=lambda e: e.id != default.id)
    for entry in entries:
        labels = {"model": entry.id, "licence": entry.licence}
        if entry.languages:
            labels["language"] = ",".join(entry.languages)
        if entry.dev:
            labels["dev"] = "true"
        for speaker in entry.speakers or (None,):
            voice_id = f"{entry.id}:{speaker}" if speaker else entry.id
            is_default = entry.id == default.id and speaker in (
                None,
                entry.speakers[0] if entry.speakers else None,
            )
            out.append(
                Voice(
                    voice_id=voice_id,
                    name=voice_id,
                    description=entry.description,
                    labels={
                        **labels,
                        **({"speaker": speaker} if speaker else {}),
                        "default": str(is_default).lower(),
                    },
                    high_quality_base_model_ids=[entry.id],
                )
            )
    return out


def library_voice(view: VoiceView) -> Voice:
    """A voice of the library in ElevenLabs' list shape (``category`` ``cloned``)."""
    labels = {"language": view.language, "state": view.state}
    return Voice(voice_id=view.id, name=view.name, category="cloned", labels=labels, library=view)


def resolve_voice(catalog: Catalog, voice_id: str, model_id: str | None) -> tuple[ModelEntry, str | None]:
    """The speech model and speaker (``None``: the model's default) a ``voice_id`` names.

    Raises:
        VoiceNotFound: no such voice (404).
        InvalidInput: ``model_id`` is unknown, not a speech model, or not the voice's model (field
            ``model_id``).
    """
    chosen = _speech_model(catalog, model_id)
    if voice_id in PREMADE_VOICES:
        return chosen or catalog.default_for("speech"), None
    model_part, _, speaker = voice_id.partition(":")
    if model_part in catalog:
        entry = catalog.get(model_part)
        if not _speakable(entry) or (speaker and speaker not in entry.speakers):
            raise _no_voice(catalog, voice_id)
        if chosen is not None and chosen.id != entry.id:
            raise InvalidInput(
                f"voice '{voice_id}' belongs to '{entry.id}', not '{chosen.id}'; omit model_id",
                field="model_id",
            )
        return entry, speaker or None
    if (
        not speaker
    ):  # a bare speaker name: of model_id's model, else of the default model, else the first with it
        default = catalog.default_for("speech")
        candidates = [chosen] if chosen is not None else [default, *(e for e in catalog if _speakable(e))]
        for entry in candidates:
            if voice_id in entry.speakers:
                return entry, voice_id
    raise _no_voice(catalog, voice_id)


def _no_voice(catalog: Catalog, voice_id: str) -> VoiceNotFound:
    known = ", ".join(v.voice_id for v in voices(catalog))
    return VoiceNotFound(
        f"voice '{voice_id}' not found; voices: {known}, or an ElevenLabs premade voice id (GET /v1/voices)",
        field="voice_id",
    )


def _speech_model(catalog: Catalog, model_id: str | None) -> ModelEntry | None:
    if model_id is None or (model_id.startswith("eleven_") and not _is_sfx_model_id(model_id)):
        return None
    if model_id not in catalog:
        raise InvalidInput(
            f"unknown model_id '{model_id}'; use an ElevenLabs speech model id (eleven_multilingual_v2, ...) "
            f"or a catalog speech model: {', '.join(e.id for e in catalog if _speakable(e))}",
            field="model_id",
        )
    entry = catalog.get(model_id)
    if not _speakable(entry):
        what = "needs reference audio (use POST /v1/jobs)" if entry.voice_cloning else f"makes {entry.kind}"
        raise InvalidInput(f"model '{entry.id}' {what}", field="model_id")
    return entry


def _is_sfx_model_id(model_id: str) -> bool:
    return model_id.startswith(("eleven_text_to_sound", "eleven_sfx"))


def _sfx_model(model_id: str | None) -> str | None:
    if model_id is None or _is_sfx_model_id(model_id):
        return None
    if model_id.startswith("eleven_"):
        raise InvalidInput(
            f"'{model_id}' is not a sound-effect model; use eleven_text_to_sound_v2 or a catalog sfx model",
            field="model_id",
        )
    return model_id  # a catalog id; the job's validation checks it makes sfx


# --------------------------------------------------------------------------------------------- jobs


def influence_to_cfg(influence: float) -> float:
    """Map prompt influence (0..1) to classifier-free guidance: 0 -> 1.0, 0.3 -> 2.8, 1 -> 7.0."""
    return 1.0 + 6.0 * influence


def sound_job(body: SoundGenerationRequest, fmt: OutputFormat) -> JobRequest:
    """The sfx job for a sound-generation request: exactly ``duration_seconds`` long (no silence trim)."""
    influence = 0.3 if body.prompt_influence is None else body.prompt_influence
    return JobRequest(
        kind="sfx",
        model=_sfx_model(body.model_id),
        prompt=body.text,
        duration_s=body.duration_seconds or DEFAULT_SFX_DURATION_S,
        seed=body.seed,
        loop=bool(body.loop),
        sampling=Sampling(cfg_coef=influence_to_cfg(influence)),
        format=fmt.job_format,
        bitrate_kbps=fmt.bitrate_kbps,
        post=fmt.post(trim_silence=False),
    )


def speech_job(voice_id: str, body: TextToSpeechRequest, fmt: OutputFormat, catalog: Catalog) -> JobRequest:
    """The speech job for a text-to-speech request."""
    entry, speaker = resolve_voice(catalog, voice_id, body.model_id)
    if body.pronunciation_dictionary_locators:
        raise InvalidInput(
            "pronunciation dictionaries are not supported", field="pronunciation_dictionary_locators"
        )
    if body.audio_effects is not None:
        raise InvalidInput("audio_effects are not supported", field="audio_effects")
    return _speech_request(body, fmt, entry.id, voice=speaker)


def _speech_request(
    body: TextToSpeechRequest, fmt: OutputFormat, model: str, **voice: str | None
) -> JobRequest:
    """The job for ``body`` on ``model``, speaking with ``voice`` (``voice=`` or ``voice_id=``)."""
    settings = body.voice_settings
    speed = settings.speed if settings is not None and settings.speed is not None else 1.0
    return JobRequest(
        kind="speech",
        model=model,
        text=body.text,
        language=body.language_code,
        speed=speed,
        seed=None if body.seed is None else body.seed % (MAX_SEED + 1),
        format=fmt.job_format,
        bitrate_kbps=fmt.bitrate_kbps,
        post=fmt.post(),
        **voice,
    )


def library_speech_job(
    voice: VoiceView, body: TextToSpeechRequest, fmt: OutputFormat, catalog: Catalog
) -> JobRequest:
    """The speech job for a text-to-speech request naming a voice of the library (a cloned voice).

    The model: ``model_id`` when it names a cloning model of the catalog, else the first cloning model
    (a real one before a dev one). The job names the voice by ``voice_id``; the server's cloning policy
    and the voice's state are checked at submit, as for ``POST /v1/jobs``.
    """
    cloning = sorted((e for e in catalog if e.voice_cloning), key=lambda e: e.dev)
    chosen = [e for e in cloning if e.id == body.model_id] or cloning
    if not chosen:
        raise InvalidInput("no model of this server clones voices", field="model_id")
    return _speech_request(body, fmt, chosen[0].id, voice_id=voice.id)


JOB_FIELDS: Final[dict[Kind, dict[str, str]]] = {
    "sfx": {"prompt": "text", "duration_s": "duration_seconds", "model": "model_id"},
    "speech": {
        "model": "model_id",
        "voice": "voice_id",
        "language": "language_code",
        "speed": "voice_settings.speed",
    },
}
"""Soundry job field -> the ElevenLabs field to name in an error, per kind."""


def generate(service: JobService, who: Caller, req: JobRequest, fmt: OutputFormat) -> tuple[bytes, JobView]:
    """Queue ``req``, wait for it, and return its audio encoded as ``fmt`` asks (blocking: run in a thread).

    Raises:
        InvalidInput: the job was refused (field named as the ElevenLabs caller knows it).
        ModelUnavailable: the model's weights are missing on the worker.
        GenerationFailed: the job failed, was cancelled or did not finish within :data:`JOB_TIMEOUT_S`.
    """
    with renamed_fields(JOB_FIELDS[req.kind]):
        view = service.submit(req, who)
    done = service.finished(view.id, who, JOB_TIMEOUT_S)
    data, _, _ = service.audio(view.id, who, fmt.delivered)
    return data, done


class AudioWithTimestamps(BaseModel):
    """``POST /v1/text-to-speech/{voice_id}/with-timestamps``: the audio and its character timings."""

    model_config = ConfigDict(json_schema_extra={"examples": [examples.AUDIO_WITH_TIMESTAMPS]})

    audio_base64: str
    alignment: CharacterAlignment | None = Field(description="Over the request's text")
    normalized_alignment: CharacterAlignment | None = Field(
        description="Over the text as spoken (numbers written out, as the voice read it)"
    )
