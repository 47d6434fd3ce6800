"""Job requests (input), job specs (what travels on the queue) and their validation."""

from __future__ import annotations

import math
import secrets
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from gen_server import speech_markup
from gen_server.audio import looping
from gen_server.contract.catalog import Catalog, Kind, ModelEntry
from gen_server.contract.voice_mix import check_voice
from gen_server.errors import InvalidInput

AudioFormat = Literal["wav", "flac", "mp3", "ogg"]
WavSubtype = Literal["pcm16", "pcm24", "float32"]
WebhookEvent = Literal["start", "progress", "completed"]
WEBHOOK_EVENTS: tuple[WebhookEvent, ...] = ("start", "progress", "completed")
"""Webhook events in the order a job sends them: started, progress (at most every 0.5 s), completed."""
MAX_SEED = 2**31 - 1
MAX_DIFFUSION_STEPS = 500
MIN_INIT_NOISE, MAX_INIT_NOISE = 0.31, 500.0
"""Noise level (sigma) a variation of initial audio starts from (the schedule runs from 0.3 to 500)."""
DEFAULT_TOP_K = 250
MIN_BPM, MAX_BPM = 40.0, 300.0
MAX_LOOP_BARS = 64
MIN_LOOP_S = 1.0
"""Shortest loop (its wrap is measured on 1024-sample frames, and it needs room for a crossfade)."""
BITRATE_RANGES_KBPS: dict[str, tuple[int, int]] = {"mp3": (8, 320), "ogg": (8, 510)}
"""Lossy formats and the bitrates (kbit/s) their encoders take (MP3: libmp3lame CBR; ogg: Opus)."""

FiniteFloat = Annotated[float, Field(allow_inf_nan=False)]


class Sampling(BaseModel):
    """Sampling controls (set on every call): token sampling for MusicGen/AudioGen (top_k, top_p,
    temperature), denoising for diffusion models such as Stable Audio (steps, negative_prompt), and the
    guidance strength both use (cfg_coef)."""

    model_config = ConfigDict(extra="forbid")

    top_k: int | None = Field(
        None, ge=0, le=4096, description="Keep the k most likely tokens (default 250, at most the codebook)"
    )
    top_p: FiniteFloat = Field(0.0, ge=0.0, le=1.0, description="Nucleus sampling mass (0: off, uses top_k)")
    temperature: FiniteFloat = Field(1.0, gt=0.0, le=5.0, description="Softmax temperature")
    cfg_coef: FiniteFloat = Field(
        3.0,
        ge=0.0,
        le=20.0,
        description="Classifier-free guidance strength (diffusion models: the model's default when omitted)",
    )
    steps: int | None = Field(
        None, ge=1, le=MAX_DIFFUSION_STEPS, description="Diffusion models: denoising steps (model default)"
    )
    negative_prompt: str | None = Field(
        None, max_length=2000, description="Diffusion models: what the audio should not sound like"
    )

    @field_validator("negative_prompt")
    @classmethod
    def _strip_negative(cls, value: str | None) -> str | None:
        return (value.strip() or None) if value is not None else None


class PostProcess(BaseModel):
    """Post-processing options; ``None`` means the default for the job's kind."""

    model_config = ConfigDict(extra="forbid")

    trim_silence: bool | None = Field(None, description="Trim leading/trailing silence")
    fade_in_s: FiniteFloat | None = Field(None, ge=0.0, le=30.0)
    fade_out_s: FiniteFloat | None = Field(None, ge=0.0, le=30.0)
    target_lufs: FiniteFloat | None = Field(
        None, ge=-70.0, le=-5.0, description="Integrated loudness target (ITU-R BS.1770)"
    )
    peak_normalize: bool | None = Field(None, description="Normalise to the peak ceiling instead of LUFS")
    true_peak_dbtp: FiniteFloat = Field(-1.0, ge=-20.0, le=0.0, description="True-peak ceiling in dBTP")
    sample_rate: int | None = Field(None, ge=8000, le=192000, description="Output rate in Hz")
    channels: Literal[1, 2] | None = Field(None, description="Output channels (mono/stereo)")


class JobRequest(BaseModel):
    """What a client submits to ``POST /v1/jobs``."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {"kind": "speech", "text": "Welcome to Soundry.", "seed": 1},
                {"kind": "music", "prompt": "lofi hip hop with warm piano", "duration_s": 8},
                {"kind": "sfx", "prompt": "a door creaks open", "duration_s": 3},
            ]
        },
    )

    kind: Kind
    model: str | None = Field(None, description="Catalog id; the kind's default when omitted")
    prompt: str | None = Field(None, description="Text description (music, sfx)")
    text: str | None = Field(None, description="Text to speak (speech)")
    duration_s: FiniteFloat | None = Field(None, gt=0.0, description="Clip length in seconds (music, sfx)")
    seed: int | None = Field(None, ge=0, le=MAX_SEED, description="Random seed; drawn when omitted")
    sampling: Sampling = Field(default_factory=Sampling)
    voice: str | None = Field(
        None,
        description="Speaker name (multi-speaker models); models that blend voices (Kokoro) also take a "
        "weighted blend such as af_bella(2)+af_sky(1)",
    )
    language: str | None = Field(None, description="Language code (multilingual models)")
    speed: FiniteFloat = Field(1.0, ge=0.25, le=4.0, description="Speaking rate multiplier")
    melody_upload: str | None = Field(None, description="Upload id of a melody reference (melody models)")
    continuation_upload: str | None = Field(None, description="Upload id of audio to continue")
    init_audio_upload: str | None = Field(
        None,
        description="Diffusion models (Stable Audio): upload id of audio to make a variation of (the "
        "pipeline's initial audio): it is encoded and noised to init_noise_level, then denoised toward "
        "the prompt",
    )
    init_noise_level: FiniteFloat = Field(
        1.0,
        ge=MIN_INIT_NOISE,
        le=MAX_INIT_NOISE,
        description="Noise level (sigma) a variation of init_audio_upload starts from, as in "
        "stable-audio-tools: low stays close to the upload, 500 (the full schedule) keeps little of it",
    )
    reference_uploads: list[str] = Field(
        default_factory=list,
        max_length=3,
        description="Voice refs: upload ids of 1-3 clips to clone (only where SOUNDRY_CLONING=open; "
        "otherwise name a verified voice with voice_id)",
    )
    voice_id: str | None = Field(
        None,
        max_length=64,
        description="Cloning models: a voice of your library (POST /v1/voices), consent verified",
    )
    tempo_bpm: FiniteFloat | None = Field(
        None,
        ge=MIN_BPM,
        le=MAX_BPM,
        description="Music: exact tempo. The model is asked for it, the result measured and time-stretched "
        "(Rubber Band) to this BPM; a stretch beyond 8 % is done but reported in the result's warnings",
    )
    loop: bool = Field(
        False,
        description="Music, sfx: a seamless loop (no click or gap when played on repeat). Music is cut on "
        "bar lines (whole bars of duration_s, or loop_bars), sfx at a quiet point",
    )
    loop_bars: int | None = Field(
        None, ge=1, le=MAX_LOOP_BARS, description="Music loop length in 4/4 bars (needs loop and tempo_bpm)"
    )
    post: PostProcess = Field(default_factory=PostProcess)
    format: AudioFormat = "wav"
    wav_subtype: WavSubtype = "pcm16"
    bitrate_kbps: int | None = Field(
        None,
        ge=8,
        le=510,
        description="Bitrate of mp3 (8-320, default 192) or ogg/Opus (8-510, default 128) output, kbit/s",
    )
    callback_url: str | None = Field(
        None,
        description="Webhook URL: receives the events in webhook_events_filter as signed Standard Webhooks "
        'POSTs of {"type", "timestamp", "data": job} (headers webhook-id, webhook-timestamp, '
        "webhook-signature)",
    )
    webhook_events_filter: list[WebhookEvent] = Field(
        ["completed"],
        min_length=1,
        max_length=3,
        description="Events POSTed to callback_url: start (a worker starts the job), progress (at most one "
        "per 0.5 s), completed (succeeded, failed or cancelled)",
    )

    @field_validator("prompt", "text")
    @classmethod
    def _strip(cls, value: str | None) -> str | None:
        return value.strip() if value is not None else None


class JobSpec(BaseModel):
    """A validated, fully resolved job: small versioned JSON on the queue (no audio inside)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    version: Literal[1] = 1
    job_id: str
    kind: Kind
    model: str
    prompt: str
    duration_s: float | None = Field(None, description="Clip length (s); none for speech (the text decides)")
    seed: int
    sampling: Sampling
    voice: str | None = None
    language: str | None = None
    speed: float = 1.0
    melody_upload: str | None = None
    continuation_upload: str | None = None
    init_audio_upload: str | None = None
    init_noise_level: float = 1.0
    reference_uploads: tuple[str, ...] = ()
    voice_id: str | None = Field(None, description="The library voice cloned (its clips: voices/<id>/)")
    voice_consent_sha256: str | None = Field(None, description="SHA-256 of that voice's consent clip")
    tempo_bpm: float | None = None
    loop: bool = False
    loop_bars: int | None = None
    post: PostProcess
    format: AudioFormat = "wav"
    wav_subtype: WavSubtype = "pcm16"
    bitrate_kbps: int | None = Field(
        None, description="Lossy bitrate in kbit/s; the format's default if none"
    )
    callback_url: str | None = None
    webhook_events_filter: tuple[WebhookEvent, ...] = ("completed",)
    owner: str | None = None
    licence: str | None = Field(None, description="The model's licence (catalog), for the file's tags")
    lexicon: dict[str, str] = Field(
        default_factory=dict, description="Speech: pronunciations its text uses (word -> respelling)"
    )

    @property
    def queue(self) -> Kind:
        return self.kind


def _fail(message: str, field: str) -> InvalidInput:
    return InvalidInput(message, field=field)


def build_spec(  # noqa: C901, PLR0912 (a rule per branch; split it when it grows)
    req: JobRequest,
    catalog: Catalog,
    *,
    job_id: str,
    owner: str | None = None,
    max_prompt_chars: int = 2000,
    max_text_chars: int = 5000,
) -> JobSpec:
    """Check ``req`` against the catalog and resolve defaults (model, seed).

    Raises:
        InvalidInput: naming the offending field.
    """
    entry: ModelEntry = catalog.get(req.model) if req.model else catalog.default_for(req.kind)
    if not entry.makes(req.kind):
        raise _fail(f"model '{entry.id}' makes {entry.kind}, not {req.kind}", "model")

    if req.kind == "speech":
        text = req.text if req.text is not None else req.prompt
        if not text:
            raise _fail("speech needs non-empty 'text'", "text")
        if len(text) > max_text_chars:
            raise _fail(f"text is {len(text)} characters; the limit is {max_text_chars}", "text")
        if req.duration_s is not None:
            raise _fail("speech length follows the text; omit duration_s", "duration_s")
        # SSML or inline tags: refused here, with the position, before anything is queued
        speech_markup.parse(text, req.language or (entry.languages[0] if entry.languages else "en"))
        prompt, duration = text, None
    else:
        if not req.prompt:
            raise _fail(f"{req.kind} needs a non-empty 'prompt'", "prompt")
        if len(req.prompt) > max_prompt_chars:
            raise _fail(f"prompt is {len(req.prompt)} characters; the limit is {max_prompt_chars}", "prompt")
        if req.text is not None:
            raise _fail(f"'text' is for speech; {req.kind} takes 'prompt'", "text")
        duration = _clip_seconds(req, entry)
        prompt = req.prompt
    _check_text(prompt, "text" if req.kind == "speech" else "prompt")

    sampling = req.sampling
    if entry.codebook_size is not None:
        if sampling.top_k is not None and sampling.top_k > entry.codebook_size:
            raise _fail(
                f"top_k must be at most the codebook size ({entry.codebook_size}) of '{entry.id}'",
                "sampling.top_k",
            )
        if sampling.top_k is None:
            sampling = sampling.model_copy(update={"top_k": min(DEFAULT_TOP_K, entry.codebook_size)})
    if req.melody_upload and not entry.melody:
        melody_models = "musicgen-melody" + (
            ", dev-musicgen-melody-tiny" if "dev-musicgen-melody-tiny" in catalog else ""
        )
        raise _fail(f"model '{entry.id}' takes no melody; use {melody_models}", "melody_upload")
    if req.continuation_upload and not entry.continuation:
        raise _fail(f"model '{entry.id}' cannot continue audio", "continuation_upload")
    _check_cloning(req, entry)
    if req.voice is not None:
        check_voice(req.voice, entry)
    if req.language is not None and entry.languages and req.language not in entry.languages:
        raise _fail(
            f"language '{req.language}' not offered by '{entry.id}'; languages: {', '.join(entry.languages)}",
            "language",
        )
    if req.kind == "speech" and (req.sampling != Sampling()):
        raise _fail("sampling controls apply to music and sfx only", "sampling")
    if req.post.target_lufs is not None and req.post.peak_normalize:
        raise _fail("choose target_lufs or peak_normalize, not both", "post.peak_normalize")
    if req.bitrate_kbps is not None:
        if req.format not in BITRATE_RANGES_KBPS:
            raise _fail(f"bitrate_kbps applies to mp3 and ogg output, not {req.format}", "bitrate_kbps")
        low, high = BITRATE_RANGES_KBPS[req.format]
        if not low <= req.bitrate_kbps <= high:
            raise _fail(f"bitrate_kbps for {req.format} must be {low}-{high}", "bitrate_kbps")

    _check_edit(req)
    if "webhook_events_filter" in req.model_fields_set and not req.callback_url:
        raise _fail("webhook_events_filter needs a callback_url", "webhook_events_filter")

    language = req.language
    if language is None and entry.voice_cloning:
        language = "en"
    voice = req.voice if req.voice is not None else (entry.speakers[0] if entry.speakers else None)
    return JobSpec(
        job_id=job_id,
        kind=req.kind,
        model=entry.id,
        prompt=prompt,
        duration_s=duration,
        seed=req.seed if req.seed is not None else secrets.randbelow(MAX_SEED),
        sampling=_diffusion_sampling(req, entry, sampling),
        voice=voice,
        language=language,
        speed=req.speed,
        melody_upload=req.melody_upload,
        continuation_upload=req.continuation_upload,
        init_audio_upload=req.init_audio_upload,
        init_noise_level=req.init_noise_level,
        reference_uploads=tuple(req.reference_uploads),
        voice_id=req.voice_id,
        tempo_bpm=req.tempo_bpm,
        loop=req.loop,
        loop_bars=req.loop_bars,
        post=req.post,
        format=req.format,
        wav_subtype=req.wav_subtype,
        bitrate_kbps=req.bitrate_kbps,
        callback_url=req.callback_url,
        webhook_events_filter=tuple(e for e in WEBHOOK_EVENTS if e in req.webhook_events_filter),
        owner=owner,
        licence=entry.licence_terms,
    )


def _check_cloning(req: JobRequest, entry: ModelEntry) -> None:
    """A cloning model needs a voice: a library ``voice_id`` or raw ``reference_uploads`` (whether raw
    uploads are allowed is the server's policy, checked at submit); other models take neither."""
    if req.reference_uploads and not entry.voice_cloning:
        raise _fail(f"model '{entry.id}' does not clone voices", "reference_uploads")
    if req.voice_id is not None and not entry.voice_cloning:
        raise _fail(f"model '{entry.id}' does not clone voices; voice_id needs a cloning model", "voice_id")
    if req.voice_id is not None and req.reference_uploads:
        raise _fail("name a voice_id or reference_uploads, not both", "reference_uploads")
    if entry.voice_cloning and not req.reference_uploads and req.voice_id is None:
        raise _fail(
            f"model '{entry.id}' needs a voice_id (a voice of your library, POST /v1/voices) or 1-3 "
            "reference_uploads (voice to clone)",
            "reference_uploads",
        )


def _diffusion_sampling(req: JobRequest, entry: ModelEntry, sampling: Sampling) -> Sampling:
    """Diffusion controls: refused for token models, defaults filled in for diffusion models.

    Diffusion models (``entry.steps`` set) take steps, negative_prompt, cfg_coef (their own default when
    omitted) and a variation upload; token sampling (top_k, top_p, temperature) does not apply to them.
    """
    if "init_noise_level" in req.model_fields_set and not req.init_audio_upload:
        raise _fail("init_noise_level needs an init_audio_upload", "init_noise_level")
    if entry.steps is None:
        for name in ("steps", "negative_prompt"):
            if getattr(req.sampling, name) is not None:
                raise _fail(
                    f"sampling.{name} applies to diffusion models (Stable Audio), not '{entry.id}'",
                    f"sampling.{name}",
                )
        if req.init_audio_upload:
            raise _fail(
                f"model '{entry.id}' takes no initial audio (diffusion models do)",
                "init_audio_upload",
            )
        return sampling
    defaults = Sampling()
    for name in ("top_k", "top_p", "temperature"):
        if getattr(req.sampling, name) != getattr(defaults, name):
            raise _fail(
                f"sampling.{name} is token sampling; '{entry.id}' is a diffusion model", f"sampling.{name}"
            )
    update: dict[str, object] = {}
    if sampling.steps is None:
        update["steps"] = entry.steps
    if "cfg_coef" not in req.sampling.model_fields_set and entry.guidance is not None:
        update["cfg_coef"] = entry.guidance
    return sampling.model_copy(update=update) if update else sampling


def _check_text(text: str, field: str) -> None:
    bad = [c for c in text if (ord(c) < 32 and c not in "\n\t\r") or ord(c) == 127]
    if bad:
        raise _fail(f"{field} contains control characters (e.g. U+{ord(bad[0]):04X})", field)


def _clip_seconds(req: JobRequest, entry: ModelEntry) -> float:
    """The kept length of a music/sfx clip: ``duration_s`` (the model's default), or a music loop's bars.

    Raises:
        InvalidInput: Out of the model's range, including the extra a loop or tempo needs generated.
    """
    if req.loop_bars is not None:
        if req.duration_s is not None:
            raise _fail("a loop of loop_bars bars has their length; omit duration_s", "duration_s")
        if req.tempo_bpm is None:
            raise _fail(
                "loop_bars needs tempo_bpm (the bar length); without it a loop takes the whole bars that "
                "fit duration_s",
                "loop_bars",
            )
        duration = req.loop_bars * looping.bar_seconds(req.tempo_bpm)
    else:
        duration = req.duration_s if req.duration_s is not None else min(8.0, entry.max_duration_s)
    field = "loop_bars" if req.loop_bars is not None else "duration_s"
    if not (entry.min_duration_s <= duration <= entry.max_duration_s) or not math.isfinite(duration):
        raise _fail(
            f"duration_s must be between {entry.min_duration_s} and {entry.max_duration_s} s for "
            f"'{entry.id}'" + (f" (loop_bars gives {duration:.2f} s)" if req.loop_bars else ""),
            field,
        )
    needed = looping.generation_seconds(
        req.kind, duration, tempo_bpm=req.tempo_bpm, loop=req.loop, loop_bars=req.loop_bars
    )
    if needed > entry.max_duration_s:
        raise _fail(
            f"a {'loop' if req.loop else 'clip at an exact tempo'} of {duration:.2f} s generates "
            f"{needed:.2f} s (room for the cut), more than the {entry.max_duration_s} s '{entry.id}' makes",
            field,
        )
    if req.loop and duration < MIN_LOOP_S:
        raise _fail(f"a loop must be at least {MIN_LOOP_S} s long", field)
    return duration


def _check_edit(req: JobRequest) -> None:
    """Tempo and loop options: who may ask for them, and the post-processing a loop rules out."""
    if req.tempo_bpm is not None and req.kind != "music":
        raise _fail(f"tempo_bpm applies to music, not {req.kind}", "tempo_bpm")
    if req.loop and req.kind not in ("music", "sfx"):
        raise _fail(f"loop applies to music and sfx, not {req.kind}", "loop")
    if req.loop_bars is not None and (req.kind != "music" or not req.loop):
        raise _fail("loop_bars applies to music loops (loop: true)", "loop_bars")
    if req.loop:
        if req.post.trim_silence:
            raise _fail("trim_silence would break a loop; omit it", "post.trim_silence")
        for name in ("fade_in_s", "fade_out_s"):
            if getattr(req.post, name):
                raise _fail(f"{name} would break a loop (it fades at the wrap); omit it", f"post.{name}")
