"""Between the UI's controls and the API's job requests: pure functions, no Gradio, no HTTP.

The API validates every request (one place for the rules); these functions only translate control
values to request fields and back ("reuse these settings"), and pick what the controls offer for a
model from its catalog entry.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

Kind = Literal["music", "sfx", "speech"]
KINDS: tuple[Kind, ...] = ("music", "sfx", "speech")
KIND_TITLES: dict[str, str] = {"music": "Music", "sfx": "Sound effects", "speech": "Speech"}

FORMATS = ("wav", "flac", "mp3", "ogg")
WAV_SUBTYPES = ("pcm16", "pcm24", "float32")
SAMPLE_RATES = ("native", "8000", "16000", "22050", "24000", "32000", "44100", "48000")
CHANNELS = ("native", "mono", "stereo")
TRIM = ("default", "on", "off")
LOUDNESS = ("default", "LUFS target", "peak normalise")
DEFAULT_TOP_K = 250
DEFAULT_LUFS = -16.0

# Control names per kind, in the order the UI's submit endpoints take them.
COMMON_FIELDS = (
    "model",
    "seed",
    "format",
    "wav_subtype",
    "trim",
    "fade_in_s",
    "fade_out_s",
    "loudness",
    "target_lufs",
    "true_peak_dbtp",
    "sample_rate",
    "channels",
)
GENERATIVE_FIELDS = (
    *("prompt", "duration_s", "top_k", "top_p", "temperature", "cfg_coef", "continuation"),
    *("steps", "negative_prompt"),  # diffusion models (Stable Audio)
)
TOKEN_SAMPLING = ("top_k", "top_p", "temperature")
"""Controls of token models (MusicGen/AudioGen) that diffusion models do not take."""
DIFFUSION_CONTROLS = ("steps", "negative_prompt")
"""Controls of diffusion models (Stable Audio) that token models do not take."""
FIELDS: dict[Kind, tuple[str, ...]] = {
    "music": (
        *GENERATIVE_FIELDS[:2],
        *COMMON_FIELDS,
        *GENERATIVE_FIELDS[2:],
        "melody",
        "tempo_bpm",
        "loop",
        "loop_bars",
    ),
    "sfx": (*GENERATIVE_FIELDS[:2], *COMMON_FIELDS, *GENERATIVE_FIELDS[2:], "loop"),
    "speech": (
        *("text", *COMMON_FIELDS, "voice", "language", "speed"),
        *("voice_id", "references", "reference_mic"),
    ),
}
# Controls that hold reference audio (file paths); submitted as upload ids.
AUDIO_FIELDS = ("melody", "continuation", "references", "reference_mic")


def model_label(entry: Mapping[str, Any]) -> str:
    """Dropdown label: the id, its licence and a non-commercial flag."""
    flag = {"allowed": "", "conditional": " · commercial use conditional"}.get(
        str(entry.get("commercial_use")), " · non-commercial"
    )
    dev = " · dev" if entry.get("dev") else ""
    return f"{entry['id']} — {entry.get('licence', 'licence unknown')}{flag}{dev}"


def models_of(
    models: Sequence[Mapping[str, Any]], kind: str, *, commercial_only: bool = False
) -> list[Mapping[str, Any]]:
    """The models of ``kind`` (their own kind or one of their ``other_kinds``: Stable Audio makes music and
    sfx); with ``commercial_only``, those whose outputs may be used commercially."""
    return [
        m
        for m in models
        if (m.get("kind") == kind or kind in (m.get("other_kinds") or ()))
        and (not commercial_only or m.get("commercial_use") in ("allowed", "conditional"))
    ]


def initial_model(models: Sequence[Mapping[str, Any]], kind: str) -> str | None:
    """The model a tab shows first: the one the server marks ``default`` for the kind (what an API
    request naming no model gets); from a server that marks none, a dev model when offered (runs
    anywhere), the bundled voice, else the first listed."""
    mine = models_of(models, kind)
    for pick in (
        lambda m: m.get("default") is True,
        lambda m: m.get("dev") and not m.get("melody") and not m.get("voice_cloning"),
        lambda m: m.get("family") == "piper",
        lambda m: True,
    ):
        found = [m for m in mine if pick(m)]
        if found:
            return str(found[0]["id"])
    return None


@dataclass(frozen=True, slots=True)
class Capabilities:
    """What a model's controls may offer, from its catalog entry."""

    min_duration_s: float = 0.5
    max_duration_s: float = 30.0
    top_k_max: int = 4096
    melody: bool = False
    continuation: bool = False
    voice_cloning: bool = False
    speakers: tuple[str, ...] = ()
    voice_blending: bool = False
    languages: tuple[str, ...] = ()
    stereo: bool = False
    steps: int | None = None
    """Diffusion models: their default denoising steps (``None``: a token model)."""
    guidance: float | None = None
    summary: str = ""

    @property
    def diffusion(self) -> bool:
        return self.steps is not None

    @property
    def shows_voice(self) -> bool:
        return bool(self.speakers)

    @property
    def shows_language(self) -> bool:
        return len(self.languages) > 1 or self.voice_cloning

    def applicable(
        self, values: Mapping[str, Any], reused: Mapping[str, Any]
    ) -> tuple[dict[str, Any], dict[str, Any]]:
        """Blank what the model's form does not show: a hidden control may still hold a value from the
        model chosen before (the form updates a moment after the choice; a quick submit can beat it)."""
        hidden = set()
        if not self.shows_voice:
            hidden.add("voice")
        if not self.shows_language:
            hidden.add("language")
        if not self.melody:
            hidden |= {"melody", "melody_upload"}
        if not self.continuation:
            hidden |= {"continuation", "continuation_upload"}
        if not self.voice_cloning:
            hidden |= {"voice_id", "references", "reference_mic", "reference_uploads"}
        hidden |= set(TOKEN_SAMPLING if self.diffusion else DIFFUSION_CONTROLS)
        return (
            {k: (None if k in hidden else v) for k, v in values.items()},
            {k: v for k, v in reused.items() if k not in hidden},
        )

    @classmethod
    def of(cls, entry: Mapping[str, Any] | None) -> Capabilities:
        if not entry:
            return cls(summary="Choose a model.")
        can = [
            name
            for name, flag in (
                ("melody conditioning", entry.get("melody")),
                ("continuation", entry.get("continuation")),
                ("voice cloning", entry.get("voice_cloning")),
                ("voice blends such as a(2)+b(1)", entry.get("voice_blending")),
            )
            if flag
        ]
        commercial = {
            "allowed": "allowed",
            "conditional": f"allowed if: {entry.get('commercial_condition')}",
        }.get(str(entry.get("commercial_use")), "**not allowed** (non-commercial weights)")
        lines = [
            f"**{entry['id']}**: {entry.get('description', '')}",
            f"Licence: {entry.get('licence', 'unknown')}. Commercial use: {commercial}.",
            f"Native rate {entry.get('sample_rate', '?')} Hz, {entry.get('channels', 1)} channel(s)"
            + (f"; up to {entry['max_duration_s']:g} s" if entry.get("kind") != "speech" else "")
            + (f"; can do {', '.join(can)}" if can else "")
            + ".",
        ]
        return cls(
            min_duration_s=float(entry.get("min_duration_s", 0.5)),
            max_duration_s=float(entry.get("max_duration_s", 30.0)),
            top_k_max=int(entry.get("codebook_size") or 4096),
            melody=bool(entry.get("melody")),
            continuation=bool(entry.get("continuation")),
            voice_cloning=bool(entry.get("voice_cloning")),
            speakers=tuple(entry.get("speakers") or ()),
            voice_blending=bool(entry.get("voice_blending")),
            languages=tuple(entry.get("languages") or ()),
            stereo=int(entry.get("channels", 1)) > 1,
            steps=int(entry["steps"]) if entry.get("steps") is not None else None,
            guidance=float(entry["guidance"]) if entry.get("guidance") is not None else None,
            summary="  \n".join(lines),
        )


def _opt_float(value: Any) -> Any:
    """A number from a control; empty is ``None``; text that is no number goes as typed (the API names it)."""
    if isinstance(value, str):
        value = value.strip()
    if value is None or value == "":
        return None
    try:
        return float(value)
    except (TypeError, ValueError):
        return value


def post_options(values: Mapping[str, Any]) -> dict[str, Any]:
    """The request's ``post`` object from the post-processing controls (defaults left out)."""
    post: dict[str, Any] = {}
    trim = values.get("trim") or "default"
    if trim != "default":
        post["trim_silence"] = trim == "on"
    for name in ("fade_in_s", "fade_out_s"):
        number = _opt_float(values.get(name))
        if number is not None:
            post[name] = number
    loudness = values.get("loudness") or "default"
    if loudness == "LUFS target":
        lufs = _opt_float(values.get("target_lufs"))
        post["target_lufs"] = DEFAULT_LUFS if lufs is None else lufs
    elif loudness == "peak normalise":
        post["peak_normalize"] = True
    peak = _opt_float(values.get("true_peak_dbtp"))
    if peak is not None and peak != -1.0:
        post["true_peak_dbtp"] = peak
    rate = values.get("sample_rate") or "native"
    if rate != "native":
        post["sample_rate"] = int(rate)
    channels = values.get("channels") or "native"
    if channels != "native":
        post["channels"] = 1 if channels == "mono" else 2
    return post


def build_request(  # noqa: C901, PLR0912 (a rule per branch; split it when it grows)
    kind: Kind, values: Mapping[str, Any], uploads: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    """A ``POST /v1/jobs`` body from control values (by name) and upload ids.

    Args:
        kind: ``music``, ``sfx`` or ``speech``.
        values: Control values keyed by the names in :data:`FIELDS` (missing ones take defaults).
        uploads: ``melody_upload``, ``continuation_upload`` (ids) and ``reference_uploads`` (list of ids).

    Returns:
        The request; the API validates it and names the offending field if anything is wrong.
    """
    req: dict[str, Any] = {"kind": kind}
    if values.get("model"):
        req["model"] = values["model"]
    if kind == "speech":
        req["text"] = values.get("text") or ""
        if values.get("voice"):
            req["voice"] = values["voice"]
        if values.get("language"):
            req["language"] = values["language"]
        speed = _opt_float(values.get("speed"))
        if speed is not None and speed != 1.0:
            req["speed"] = speed
        if values.get("voice_id"):  # a voice of the library (Voices tab) instead of raw references
            req["voice_id"] = values["voice_id"]
    else:
        req["prompt"] = values.get("prompt") or ""
        duration = _opt_float(values.get("duration_s"))
        if duration is not None:
            req["duration_s"] = duration
        sampling: dict[str, Any] = {}
        top_k = values.get("top_k")
        if top_k is not None and int(top_k) != DEFAULT_TOP_K:
            # The default is left out: the API then caps it at the model's codebook size.
            sampling["top_k"] = int(top_k)
        for name in ("top_p", "temperature", "cfg_coef", "steps"):
            number = _opt_float(values.get(name))
            if number is not None:
                sampling[name] = int(number) if name == "steps" and float(number).is_integer() else number
        if (values.get("negative_prompt") or "").strip():
            sampling["negative_prompt"] = values["negative_prompt"].strip()
        if sampling:
            req["sampling"] = sampling
        edit = _edit_options(values)
        if "loop_bars" in edit:
            req.pop("duration_s", None)
        req.update(edit)
    seed = values.get("seed")
    if isinstance(seed, str):
        seed = seed.strip()
    if seed is not None and seed != "":
        # A number goes as a number; anything else goes as typed, and the API names the field.
        req["seed"] = int(seed) if str(seed).isdigit() else seed
    post = post_options(values)
    if post:
        req["post"] = post
    req["format"] = values.get("format") or "wav"
    if req["format"] == "wav" and values.get("wav_subtype"):
        req["wav_subtype"] = values["wav_subtype"]
    for name, upload in (uploads or {}).items():
        if upload:
            req[name] = upload
    return req


def _edit_options(values: Mapping[str, Any]) -> dict[str, Any]:
    """``tempo_bpm``, ``loop`` and ``loop_bars`` from the music/sfx "Edit-ready" controls (empty: off).
    ``loop_bars`` goes instead of ``duration_s`` (the bars decide the length)."""
    out: dict[str, Any] = {}
    tempo = _opt_float(values.get("tempo_bpm"))
    if tempo is not None:
        out["tempo_bpm"] = tempo
    if values.get("loop"):
        out["loop"] = True
        bars = _opt_float(values.get("loop_bars"))
        if bars is not None:
            out["loop_bars"] = int(bars) if isinstance(bars, float) and bars.is_integer() else bars
    return out


def values_from_spec(spec: Mapping[str, Any]) -> dict[str, Any]:
    """Control values (by name) that reproduce a job's spec: the inverse of :func:`build_request`."""
    post = spec.get("post") or {}
    sampling = spec.get("sampling") or {}
    if post.get("target_lufs") is not None:
        loudness, lufs = "LUFS target", float(post["target_lufs"])
    elif post.get("peak_normalize"):
        loudness, lufs = "peak normalise", DEFAULT_LUFS
    else:
        loudness, lufs = "default", DEFAULT_LUFS
    trim = post.get("trim_silence")
    channels = post.get("channels")
    values: dict[str, Any] = {
        "model": spec.get("model"),
        "seed": "" if spec.get("seed") is None else str(spec["seed"]),
        "format": spec.get("format", "wav"),
        "wav_subtype": spec.get("wav_subtype", "pcm16"),
        "trim": "default" if trim is None else ("on" if trim else "off"),
        "fade_in_s": "" if post.get("fade_in_s") is None else f"{post['fade_in_s']:g}",
        "fade_out_s": "" if post.get("fade_out_s") is None else f"{post['fade_out_s']:g}",
        "loudness": loudness,
        "target_lufs": lufs,
        "true_peak_dbtp": post.get("true_peak_dbtp", -1.0),
        "sample_rate": str(post["sample_rate"]) if post.get("sample_rate") else "native",
        "channels": {1: "mono", 2: "stereo"}.get(channels, "native") if channels else "native",
    }
    if spec.get("kind") == "speech":
        values.update(
            text=spec.get("prompt", ""),
            voice=spec.get("voice"),
            language=spec.get("language"),
            speed=spec.get("speed", 1.0),
            voice_id=spec.get("voice_id"),
        )
    else:
        values.update(
            prompt=spec.get("prompt", ""),
            duration_s=spec.get("duration_s"),
            top_k=sampling.get("top_k") if sampling.get("top_k") is not None else DEFAULT_TOP_K,
            top_p=sampling.get("top_p", 0.0),
            temperature=sampling.get("temperature", 1.0),
            cfg_coef=sampling.get("cfg_coef", 3.0),
            loop=bool(spec.get("loop")),
        )
        if sampling.get("steps") is not None:  # a diffusion model's job (token models have none)
            values.update(steps=sampling["steps"], negative_prompt=sampling.get("negative_prompt") or "")
    if spec.get("kind") == "music":
        values.update(
            tempo_bpm="" if spec.get("tempo_bpm") is None else f"{spec['tempo_bpm']:g}",
            loop_bars="" if spec.get("loop_bars") is None else str(spec["loop_bars"]),
        )
    return values


def reused_uploads(spec: Mapping[str, Any]) -> dict[str, Any]:
    """The reference-audio upload ids of a spec, to send again when its settings are reused."""
    refs = {
        "melody_upload": spec.get("melody_upload"),
        "continuation_upload": spec.get("continuation_upload"),
        "reference_uploads": list(spec.get("reference_uploads") or []),
    }
    return {k: v for k, v in refs.items() if v}
