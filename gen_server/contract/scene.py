"""Scenes: the schemas of one request for a finished mix of speech, music and sound effects on a timeline.

A :class:`SceneRequest` (input) holds :class:`SceneTrack` s of :class:`SceneItem` s. A
:class:`ScenePlan` (small versioned JSON, no audio; stored with the scene and read by the mixing task
:data:`TASK_SCENE_MIX`) holds one :class:`SceneComponent` per item, each rendered as an ordinary job;
:func:`component_error` is the error a scene ends with when one of them fails or is cancelled.
:class:`SceneView` is how the API shows a scene. Checking a request and planning it (catalog rules,
the timeline, levels, errors naming the item) is :mod:`gen_server.scene_plan`.

The scene itself is a job record too (``kind`` :data:`SCENE_KIND`, ``model`` :data:`SCENE_MODEL`): its
id works with ``GET /v1/jobs/{id}`` and ``/audio`` like any job's. A scene asked for with ``export``
also gets its stems, captions and editable timelines (:mod:`gen_server.scene_export`), downloaded as one
zip from ``GET /v1/scenes/{id}/export``.
"""

from __future__ import annotations

from typing import Annotated, Final, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from gen_server.contract import examples
from gen_server.contract.catalog import Kind
from gen_server.contract.result import JobError, JobResult, JobState
from gen_server.contract.spec import MAX_SEED, AudioFormat, FiniteFloat, JobSpec, WavSubtype

TASK_SCENE_MIX: Final[str] = "soundry.scene_mix"
"""Celery task name of the task that mixes a scene after its last component (workers/scene_tasks.py)."""
SCENE_MODEL: Final[str] = "scene"
"""``model`` of a scene's own job record."""
SCENE_KIND: Final[Kind] = "music"
"""``kind`` (and so the queue of the mixing task) of a scene's own job record: a finished mixed track."""
SCENE_MAX_S: Final[float] = 600.0
"""Longest scene (s)."""
MAX_TRACKS: Final[int] = 16
MAX_ITEMS: Final[int] = 64

LoudnessPreset = Literal["podcast", "music", "broadcast"]
LOUDNESS_PRESETS: Final[dict[str, float]] = {"podcast": -16.0, "music": -14.0, "broadcast": -23.0}
"""Integrated loudness targets (LUFS): podcast -16, music streaming -14, broadcast (EBU R128) -23."""

_LABEL = r"^[A-Za-z0-9_.\- ]{1,64}$"


class Duck(BaseModel):
    """Sidechain ducking of a bed under the scene's speech.

    The bed goes down by ``duck_db`` while speech sounds (its 1 ms level within ``threshold_db`` of the
    speech's loudest millisecond), ``lookahead_ms`` before it starts and ``hold_ms`` after it stops, in
    linear-in-dB ramps lasting ``attack_ms`` (down) and ``release_ms`` (back up).
    """

    model_config = ConfigDict(extra="forbid")

    duck_db: FiniteFloat = Field(
        15.0, ge=0.0, le=60.0, description="Gain reduction under speech (dB); 0: off"
    )
    attack_ms: FiniteFloat = Field(50.0, ge=1.0, le=2000.0, description="Ramp down time (ms)")
    release_ms: FiniteFloat = Field(500.0, ge=1.0, le=5000.0, description="Ramp back up time (ms)")
    hold_ms: FiniteFloat = Field(
        200.0, ge=0.0, le=2000.0, description="Stay down this long after speech (ms)"
    )
    lookahead_ms: FiniteFloat = Field(50.0, ge=0.0, le=500.0, description="Start ducking before speech (ms)")
    threshold_db: FiniteFloat = Field(
        -35.0, ge=-80.0, le=0.0, description="Speech level counted as speaking, relative to its loudest (dB)"
    )


class SceneItem(BaseModel):
    """One clip on a track: what to generate and where it goes."""

    model_config = ConfigDict(extra="forbid")

    kind: Kind
    id: str | None = Field(None, pattern=_LABEL, description="Label used in messages and the manifest")
    model: str | None = Field(None, description="Catalog id; the kind's default when omitted")
    prompt: str | None = Field(None, max_length=20_000, description="Text description (music, sfx)")
    text: str | None = Field(None, max_length=50_000, description="Text to speak (speech)")
    voice: str | None = Field(
        None, max_length=200, description="Speech: a speaker of the model, or a speech model id (Piper voice)"
    )
    language: str | None = Field(None, max_length=16)
    speed: FiniteFloat = Field(1.0, ge=0.25, le=4.0, description="Speaking rate multiplier (speech)")
    seed: int | None = Field(None, ge=0, le=MAX_SEED)
    start_s: FiniteFloat = Field(0.0, ge=0.0, le=SCENE_MAX_S, description="Where the clip starts (s)")
    duration_s: FiniteFloat | None = Field(
        None, gt=0.0, le=SCENE_MAX_S, description="Clip length (s): required for music and sfx"
    )
    gain_db: FiniteFloat = Field(0.0, ge=-60.0, le=24.0, description="Level relative to the other items (dB)")
    pan: FiniteFloat = Field(0.0, ge=-1.0, le=1.0, description="Stereo position: -1 left, 0 centre, 1 right")
    fade_in_s: FiniteFloat = Field(0.0, ge=0.0, le=30.0)
    fade_out_s: FiniteFloat = Field(0.0, ge=0.0, le=30.0)
    duck: Duck | None = Field(
        None, description="Duck under speech: music beds duck by default; {duck_db: 0} turns it off"
    )

    @field_validator("prompt", "text")
    @classmethod
    def _strip(cls, value: str | None) -> str | None:
        return value.strip() if value is not None else None


class SceneTrack(BaseModel):
    """A lane of the timeline: its items may overlap only by a crossfade (+ ``max_overlap_s``)."""

    model_config = ConfigDict(extra="forbid")

    name: str | None = Field(None, max_length=64)
    gain_db: FiniteFloat = Field(0.0, ge=-60.0, le=24.0, description="Added to every item's gain (dB)")
    items: list[SceneItem] = Field(min_length=1, max_length=MAX_ITEMS)


class SceneRequest(BaseModel):
    """What a client submits to ``POST /v1/scenes``."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "name": "podcast intro",
                    "loudness_target": "podcast",
                    "export": True,
                    "tracks": [
                        {
                            "name": "voice",
                            "items": [{"kind": "speech", "text": "Welcome to the show.", "start_s": 1}],
                        },
                        {
                            "name": "bed",
                            "items": [
                                {
                                    "kind": "music",
                                    "prompt": "warm lofi",
                                    "duration_s": 6,
                                    "gain_db": -4,
                                    "fade_out_s": 1,
                                }
                            ],
                        },
                    ],
                }
            ]
        },
    )

    name: str = Field("scene", min_length=1, max_length=100)
    loudness_target: LoudnessPreset | Annotated[float, Field(ge=-40.0, le=-5.0, allow_inf_nan=False)] = Field(
        "podcast",
        description="Integrated loudness of the mix: podcast (-16), music (-14), broadcast (-23) or LUFS",
    )
    true_peak_dbtp: FiniteFloat = Field(
        -1.0,
        ge=-9.0,
        le=0.0,
        description="True-peak ceiling of the mix (dBTP); limited 0.5 dB under it, room for the watermark",
    )
    sample_rate: int = Field(48000, ge=8000, le=96000, description="Mix rate (Hz)")
    channels: Literal[1, 2] = 2
    length_s: FiniteFloat | None = Field(
        None, gt=0.0, le=SCENE_MAX_S, description="Total length (s); the end of the last clip when omitted"
    )
    max_overlap_s: FiniteFloat = Field(
        0.25,
        ge=0.0,
        le=10.0,
        description="Overlap allowed between items of one track beyond their crossfade (s)",
    )
    seed: int | None = Field(None, ge=0, le=MAX_SEED, description="Seeds every item (item i gets seed + i)")
    format: AudioFormat = "wav"
    wav_subtype: WavSubtype = "pcm16"
    export: bool = Field(
        False,
        description="Also keep the parts for an editor: one stem per track (the mix's length and format; "
        "item gains, pans, fades and ducking baked in), captions (WebVTT, SRT) when the scene has speech, "
        "and timelines that reference the stems with the track and master gains (timeline.otio, "
        "project.rpp): GET /v1/scenes/{id}/export?format=zip",
    )
    tracks: list[SceneTrack] = Field(min_length=1, max_length=MAX_TRACKS)

    @field_validator("name")
    @classmethod
    def _printable(cls, value: str) -> str:
        if any(ord(c) < 32 or ord(c) == 127 for c in value):
            raise ValueError("name contains control characters")
        return value.strip() or "scene"

    @property
    def target_lufs(self) -> float:
        """The loudness target in LUFS (presets resolved)."""
        target = self.loudness_target
        return LOUDNESS_PRESETS[target] if isinstance(target, str) else float(target)


class SceneComponent(BaseModel):
    """One planned item: its own job and where its audio goes in the mix."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    path: str = Field(description="Where the item is in the request, e.g. tracks[1].items[0]")
    label: str
    track: int
    item: int
    kind: Kind
    model: str
    job_id: str
    start_s: float
    duration_s: float | None = Field(description="Length on the timeline (s); speech: its generated length")
    planned_s: float = Field(description="Planned length (s); speech: an estimate from the text")
    gain_db: float = Field(description="Item gain plus its track's gain (dB)")
    pan: float
    fade_in_s: float
    fade_out_s: float
    duck: Duck | None = None
    key: bool = Field(False, description="Feeds the ducking sidechain (speech)")


class PlannedTrack(BaseModel):
    """A track of the plan: its name (as given, or ``track N``) and the gain its items share."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    gain_db: float = Field(description="The track's gain (dB), also counted in each component's gain_db")


class ScenePlan(BaseModel):
    """A validated scene: small versioned JSON, stored with the scene and read by the mixing task."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    version: Literal[1] = 1
    scene_id: str
    name: str
    spec: JobSpec = Field(description="The scene's own job spec (kind music, model 'scene')")
    target_lufs: float
    true_peak_dbtp: float
    sample_rate: int
    channels: int
    length_s: float | None
    planned_s: float
    components: tuple[SceneComponent, ...]
    tracks: tuple[PlannedTrack, ...] = Field(
        (), description="One per request track (empty in plans stored before exports existed)"
    )
    export: bool = Field(False, description="Also store stems, captions and timelines (SceneRequest.export)")


def component_error(component: SceneComponent, state: str, error: JobError | None) -> JobError:
    """The scene's error when its component ``component`` ended ``state`` (failed or cancelled)."""
    what = "was cancelled" if state == "cancelled" else "failed"
    detail = f": {error.code}: {error.message}" if error and state != "cancelled" else ""
    where = f"{component.path} ('{component.label}')" if component.label != component.path else component.path
    return JobError(
        code="component_failed",
        message=f"{where} (job {component.job_id}) {what}{detail}",
        field=component.path,
    )


class SceneComponentView(BaseModel):
    """A component as ``GET /v1/scenes/{id}`` shows it."""

    model_config = ConfigDict(json_schema_extra={"examples": examples.SCENE_VIEW["components"]})

    path: str
    label: str
    kind: str
    model: str
    job_id: str
    start_s: float
    duration_s: float | None = Field(
        None, description="Generated length (s), once done; else the planned one"
    )
    gain_db: float
    state: JobState
    progress: float = Field(0.0, ge=0.0, le=1.0)
    error: JobError | None = None
    links: dict[str, str] = Field(default_factory=dict)


class SceneView(BaseModel):
    """A scene as the API shows it (``POST`` answers with it too); the mixed track is the job ``id``."""

    model_config = ConfigDict(json_schema_extra={"examples": [examples.SCENE_VIEW]})

    id: str
    name: str
    state: JobState
    progress: float = Field(0.0, ge=0.0, le=1.0)
    created_at: float
    finished_at: float | None = None
    target_lufs: float
    true_peak_dbtp: float
    sample_rate: int
    channels: int
    planned_s: float
    components: list[SceneComponentView]
    result: JobResult | None = None
    mix: dict[str, float] | None = Field(
        None, description="Measured on the finished mix: loudness_lufs, true_peak_dbtp, duration_s"
    )
    error: JobError | None = None
    links: dict[str, str] = Field(default_factory=dict)
