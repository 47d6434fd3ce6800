"""What a finished job returns and what the API shows about a job."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from gen_server.contract import examples
from gen_server.contract.spec import AudioFormat, JobSpec

JobState = Literal["queued", "running", "succeeded", "failed", "cancelled"]


class WordTiming(BaseModel):
    """One spoken word of a speech result and when it sounds in the stored file."""

    model_config = ConfigDict(extra="forbid")

    text: str
    start_s: float = Field(ge=0)
    end_s: float = Field(ge=0)
    source: Literal["model", "aligned", "estimated"] = Field(
        description="model: the voice's own durations; aligned: forced alignment of the audio to the text; "
        "estimated: spread over the sentence's sound by word length"
    )


class SpeechCheck(BaseModel):
    """The automatic check of a speech result (transcribed and compared with its text; length, silences
    and loops checked), see the README."""

    model_config = ConfigDict(extra="forbid")

    wer: float | None = Field(description="Word error rate of the recogniser over the sentences it compared")
    passed: bool
    retries: int = Field(description="Sentences made again with the next seed because a check failed")
    sentences: int


class AudioAnalysis(BaseModel):
    """What an editor needs to know about a music or sfx result, measured on the stored file."""

    model_config = ConfigDict(extra="forbid")

    tempo_bpm: float | None = Field(None, description="Music: measured tempo (beats per minute)")
    beats_s: list[float] | None = Field(None, description="Music: beat times in the file (seconds)")
    downbeats_s: list[float] | None = Field(None, description="Music: bar starts, 4/4 assumed (seconds)")
    downbeat_confidence: float | None = Field(
        None, description="Share of low-frequency onset energy on the chosen bar phase (0.25: no accent)"
    )
    key: str | None = Field(None, description='Music: key and mode, e.g. "A minor"')
    key_confidence: float | None = Field(
        None, description="Correlation of the clip's chroma with the key's profile (below ~0.5: no clear key)"
    )
    loudness_lufs: float | None = Field(None, description="Integrated loudness (ITU-R BS.1770)")
    loudness_range_lu: float | None = Field(
        None, description="Loudness range (EBU Tech 3342); none for clips under 3 s"
    )
    true_peak_dbtp: float | None = None


class TempoFit(BaseModel):
    """How a music result was brought to the tempo its job asked for."""

    model_config = ConfigDict(extra="forbid")

    requested_bpm: float
    generated_bpm: float | None = Field(
        description="Tempo the model made (none: no beat found, not stretched)"
    )
    stretch: float = Field(description="Speed factor applied (requested / generated; 1: untouched)")


class LoopInfo(BaseModel):
    """Where a loop result was cut and how smooth its wrap is (ratios <= 1: no rougher than the clip)."""

    model_config = ConfigDict(extra="forbid")

    bars: int | None = Field(None, description="Music: whole 4/4 bars in the loop (none for sfx)")
    length_s: float
    crossfade_s: float = Field(description="Audio after the cut blended into the loop's start")
    seam_jump_ratio: float | None = Field(description="Sample step at the wrap / the clip's median step")
    seam_flux_ratio: float | None = Field(
        description="Spectral flux across the wrap / the clip's median (music: at its own bar lines)"
    )


class JobResult(BaseModel):
    """Small dict stored in the result backend once a job's artifact is written."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [examples.JOB_RESULT]})

    job_id: str
    artifact: str = Field(description="Storage key of the audio file")
    manifest: str = Field(description="Storage key of the sidecar JSON manifest")
    format: AudioFormat
    sample_rate: int
    channels: int
    duration_s: float
    seed: int
    model: str
    sha256: str
    watermark_payload: str | None = None
    generation_s: float = 0.0
    batch_size: int = Field(1, ge=1, description="Jobs served by the one model call that made this audio")
    cached: bool = Field(False, description="True when a redelivered job found its artifact already written")
    qc: SpeechCheck | None = Field(None, description="Speech: the automatic check (none when it is off)")
    words: list[WordTiming] | None = Field(
        None,
        description="Speech: every spoken word with its start and end in the file (captions come from these)",
    )
    analysis: AudioAnalysis | None = Field(None, description="Music, sfx: tempo, beats, key, loudness")
    tempo: TempoFit | None = Field(None, description="Music with tempo_bpm: how it was brought to it")
    loop: LoopInfo | None = Field(None, description="Loops: the cut and its seam")
    warnings: list[str] | None = Field(None, description="What the result could not do exactly as asked")
    c2pa: bool = Field(
        False,
        description="The stored file carries signed C2PA Content Credentials (wav, mp3, flac; ogg cannot)",
    )


class JobError(BaseModel):
    code: str
    message: str
    field: str | None = None


class JobView(BaseModel):
    """A job as the API shows it."""

    model_config = ConfigDict(json_schema_extra={"examples": [examples.JOB_VIEW, examples.QUEUED_JOB_VIEW]})

    id: str
    state: JobState
    kind: str
    model: str
    progress: float = Field(0.0, ge=0.0, le=1.0)
    queue_position: int | None = Field(None, description="1-based place in its queue while queued (1: next)")
    eta_s: float | None = Field(
        None,
        description="Estimated seconds until the job finishes, from the workers' measured speed (queue wait "
        "plus generation); in GET /v1/jobs/{id} while queued or running, null until a worker has "
        "finished a job of this model",
    )
    created_at: float
    finished_at: float | None = None
    worker: str | None = Field(None, description="Worker process that ran (or runs) the job")
    attempts: int = Field(0, description="Times a worker started the job (redeliveries included)")
    spec: JobSpec
    result: JobResult | None = None
    error: JobError | None = None
    webhook_attempts: list[dict[str, Any]] = Field(
        default_factory=list,
        description="The latest 50 webhook delivery attempts, oldest first: time (unix s), event type, "
        "webhook-id, HTTP status or error",
    )
    links: dict[str, str] = Field(default_factory=dict)

    def public(self) -> dict[str, Any]:
        return self.model_dump(mode="json")


class ErrorDetail(BaseModel):
    code: str = Field(examples=["invalid_input"])
    message: str = Field(examples=["duration_s must be between 0.5 and 300.0 s for 'musicgen-small'"])
    field: str | None = Field(None, examples=["duration_s"])


class ErrorResponse(BaseModel):
    """Every error the API returns has this one shape."""

    error: ErrorDetail


ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    status: {"model": ErrorResponse, "description": description}
    for status, description in (
        (400, "Bad request"),
        (401, "Missing or invalid API key"),
        (404, "No such job, model, upload or batch (or not yours)"),
        (409, "Conflict with the job's state"),
        (413, "Request body too large"),
        (416, "Requested byte range outside the file"),
        (422, "Invalid input; `field` names it"),
        (429, "Rate limit or job quota reached; see Retry-After"),
        (500, "Internal error"),
        (503, "Model or dependency unavailable"),
    )
}
