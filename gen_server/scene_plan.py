"""Check a scene request and plan it: component jobs on a timeline, and the mix that sums them.

:func:`parse_scene` validates a scene as decoded from JSON or YAML; :func:`validation_error` turns
pydantic's errors (the API's too) into an :class:`~gen_server.errors.InvalidInput` naming the item,
quoting its ``id``: ``tracks[1].items[0] ('door'): start_s: ...``,
``field="tracks[1].items[0].start_s"``.

:func:`build_scene` checks a :class:`~gen_server.contract.scene.SceneRequest` against the catalog and
turns it into a :class:`~gen_server.contract.scene.ScenePlan` (what the mixing task reads) plus one
ordinary :class:`~gen_server.contract.spec.JobSpec` per item, built with
:func:`~gen_server.contract.spec.build_spec` so every catalog rule of single jobs applies unchanged.
Every error names the item.

Levels: every component is rendered as an ordinary job normalised to :data:`STEM_LUFS`, so an item's
``gain_db`` sets its level relative to the others; the mix is then normalised to the scene's loudness
target under its true-peak ceiling (:func:`mix_post`).
"""

from __future__ import annotations

import contextlib
import math
import re
import secrets
from collections.abc import Callable, Sequence
from typing import Any, Final

from pydantic import ValidationError

from gen_server.contract.catalog import Catalog
from gen_server.contract.scene import (
    MAX_ITEMS,
    SCENE_KIND,
    SCENE_MAX_S,
    SCENE_MODEL,
    Duck,
    PlannedTrack,
    SceneComponent,
    SceneItem,
    ScenePlan,
    SceneRequest,
)
from gen_server.contract.spec import MAX_SEED, JobRequest, JobSpec, PostProcess, Sampling, build_spec
from gen_server.errors import REQUEST_PARTS, InvalidInput, field_path

STEM_LUFS: Final[float] = -23.0
"""Loudness every component is rendered at (LUFS), so gains are relative to equal loudness."""
STEM_TRUE_PEAK_DBTP: Final[float] = -1.0
WATERMARK_HEADROOM_DB: Final[float] = 0.5
"""The mix is limited this far under its true-peak ceiling: the watermark, added after mastering at
26 dB under the music, can raise a peak by up to about 0.45 dB."""

SPEECH_WORDS_PER_S: Final[float] = 3.0
"""Typical speaking rate (the bundled voice says 2.7-3.8 words/s), for planning a speech item's length."""
SPEECH_FAST_WORDS_PER_S: Final[float] = 5.0
"""Faster than voices speak at speed 1: overlap checks use it (no pauses) to refuse only sure overlaps."""


def item_path(track: int, item: int) -> str:
    """``tracks[T].items[I]``: how errors and the manifest name an item."""
    return f"tracks[{track}].items[{item}]"


def validation_error(errors: Sequence[Any], body: Any = None) -> InvalidInput:
    """The first of pydantic's (or FastAPI's) ``errors`` as an :class:`InvalidInput` naming the item.

    Args:
        errors: ``ValidationError.errors()`` (locations may start with ``body``).
        body: The request body, to quote an item's ``id`` in the message.

    Returns:
        E.g. ``InvalidInput("tracks[1].items[0] ('door'): start_s: ...", field="tracks[1].items[0].start_s")``
    """
    if not errors:
        return InvalidInput("invalid scene", field="body")
    first = _best(errors)
    loc = list(first.get("loc", ()))
    if len(loc) == 2 and loc[0] in ("header", "query", "path"):
        return InvalidInput(f"{loc[1]}: {first.get('msg', 'invalid value')}", field=str(loc[1]))
    while loc and loc[0] in REQUEST_PARTS:
        loc = loc[1:]
    message = str(first.get("msg", "invalid value"))
    if first.get("type") == "json_invalid" or (loc and isinstance(loc[0], int)):
        return InvalidInput(f"body: {message}", field="body")
    field = field_path(loc)
    if (
        len(loc) >= 4
        and loc[0] == "tracks"
        and loc[2] == "items"
        and isinstance(loc[1], int)
        and isinstance(loc[3], int)
    ):
        path = item_path(loc[1], loc[3])
        label = None
        with contextlib.suppress(KeyError, IndexError, TypeError, AttributeError):
            label = body["tracks"][loc[1]]["items"][loc[3]].get("id")
        where = f"{path} ('{label}')" if isinstance(label, str) and label else path
        rest = field[len(path) + 1 :] or "item"
        return InvalidInput(f"{where}: {rest}: {message}", field=field)
    return InvalidInput(f"{field}: {message}", field=field)


def _best(errors: Sequence[Any]) -> Any:
    """The first error, or for a union (several errors on one field), the one about the value's limits."""
    field = field_path(errors[0].get("loc", ()))
    same = [e for e in errors if field_path(e.get("loc", ())) == field]
    for error in same:
        kind = str(error.get("type", ""))
        if not (kind.endswith(("_type", "_parsing")) or kind == "literal_error"):
            return error
    return errors[0]


def parse_scene(data: Any) -> SceneRequest:
    """Validate a scene as decoded from JSON or YAML.

    Raises:
        InvalidInput: naming the field of the first problem (:func:`validation_error`).
    """
    try:
        return SceneRequest.model_validate(data)
    except ValidationError as e:
        raise validation_error(e.errors(), data) from e


def _words(text: str) -> int:
    return len(re.findall(r"\w+", text))


def estimate_speech_s(
    text: str, speed: float = 1.0, *, words_per_s: float = SPEECH_WORDS_PER_S, pause_s: float = 0.25
) -> float:
    """Planned length of speaking ``text`` (s): words at ``words_per_s`` plus ``pause_s`` per sentence."""
    sentences = max(1, len(re.findall(r"[.!?]+(\s|$)", text)))
    return (_words(text) / words_per_s + pause_s * sentences) / max(speed, 1e-6)


def mix_post(target_lufs: float, true_peak_dbtp: float, sample_rate: int, channels: int) -> PostProcess:
    """Post-processing of a finished mix: loudness to ``target_lufs`` under the ceiling, nothing else.

    No trim and no fades (the timeline's own fades are already in the mix); the rate and channels are
    the mix's own, so resampling is a no-op.
    """
    return PostProcess(
        trim_silence=False,
        fade_in_s=0.0,
        fade_out_s=0.0,
        target_lufs=target_lufs,
        true_peak_dbtp=true_peak_dbtp,
        sample_rate=sample_rate,
        channels=1 if channels == 1 else 2,
    )


def _label(item: SceneItem, path: str) -> str:
    return item.id or path


def _where(path: str, item: SceneItem) -> str:
    return f"{path} ('{item.id}')" if item.id else path


def _fail(path: str, item: SceneItem, field: str, message: str) -> InvalidInput:
    return InvalidInput(f"{_where(path, item)}: {message}", field=f"{path}.{field}")


def _speech_voices(catalog: Catalog) -> list[str]:
    return [e.id for e in catalog if e.kind == "speech" and not e.voice_cloning]


def _item_request(
    item: SceneItem, path: str, catalog: Catalog, sample_rate: int, seed: int | None
) -> JobRequest:
    """The ordinary job request for ``item`` (kind rules that single jobs do not have checked here)."""
    model, voice = item.model, item.voice
    if item.kind == "speech":
        if item.duck is not None:
            raise _fail(
                path, item, "duck", "duck applies to music and sfx items; speech is what they duck under"
            )
        if voice is not None and model is None and voice in catalog and catalog.get(voice).kind == "speech":
            model, voice = voice, None  # a Piper voice (or any speech model) named as the voice
    else:
        for name in ("text", "voice", "language"):
            if getattr(item, name) is not None:
                raise _fail(path, item, name, f"'{name}' is for speech items; {item.kind} takes 'prompt'")
        if item.duration_s is None:
            raise _fail(
                path, item, "duration_s", f"{item.kind} items need duration_s (seconds on the timeline)"
            )
    try:
        return JobRequest(
            kind=item.kind,
            model=model,
            prompt=item.prompt,
            text=item.text,
            duration_s=item.duration_s,
            seed=seed,
            voice=voice,
            language=item.language,
            speed=item.speed,
            post=PostProcess(
                target_lufs=STEM_LUFS, true_peak_dbtp=STEM_TRUE_PEAK_DBTP, sample_rate=sample_rate
            ),
        )
    except ValidationError as e:
        first = e.errors()[0]
        raise _fail(path, item, field_path(first["loc"]), str(first["msg"])) from e


def _item_spec(
    item: SceneItem,
    path: str,
    catalog: Catalog,
    *,
    job_id: str,
    owner: str | None,
    sample_rate: int,
    seed: int | None,
    max_prompt_chars: int,
    max_text_chars: int,
) -> JobSpec:
    request = _item_request(item, path, catalog, sample_rate, seed)
    try:
        return build_spec(
            request,
            catalog,
            job_id=job_id,
            owner=owner,
            max_prompt_chars=max_prompt_chars,
            max_text_chars=max_text_chars,
        )
    except InvalidInput as e:
        field = e.field or "body"
        message = e.message
        if field == "voice":
            entry = catalog.get(request.model) if request.model else catalog.default_for("speech")
            speakers = ", ".join(entry.speakers) or "none (single-speaker model)"
            message = (
                f"unknown voice '{item.voice}' for '{entry.id}' (speakers: {speakers}); a speech model "
                f"id also works as the voice: {', '.join(_speech_voices(catalog))}"
            )
        raise _fail(path, item, field, message) from e


def _check_overlaps(req: SceneRequest, spans: dict[tuple[int, int], tuple[float, float]]) -> None:
    """Items of one track may overlap by their crossfade plus ``max_overlap_s``; the later one is named."""
    for t, track in enumerate(req.tracks):
        order = sorted(range(len(track.items)), key=lambda i: (track.items[i].start_s, i))
        previous: int | None = None  # the earlier item that ends last
        for i in order:
            item = track.items[i]
            if previous is not None:
                prev_item = track.items[previous]
                prev_end = spans[(t, previous)][1]
                overlap = prev_end - item.start_s
                crossfade = min(prev_item.fade_out_s, item.fade_in_s)
                allowed = crossfade + req.max_overlap_s
                if overlap > allowed + 1e-9:
                    prev_path = item_path(t, previous)
                    estimated = " (estimated from its text)" if prev_item.kind == "speech" else ""
                    before = f"{overlap:.2f} s before {_where(prev_path, prev_item)} ends at {prev_end:.2f} s"
                    rule = f"their crossfade ({crossfade:g} s) plus max_overlap_s ({req.max_overlap_s:g} s)"
                    message = (
                        f"starts at {item.start_s:g} s, {before}{estimated}; items on one track may "
                        f"overlap by {rule}: start it at {prev_end - allowed:.2f} s or later, or put it on "
                        "another track"
                    )
                    raise _fail(item_path(t, i), item, "start_s", message)
            if previous is None or spans[(t, i)][1] > spans[(t, previous)][1]:
                previous = i


def build_scene(
    req: SceneRequest,
    catalog: Catalog,
    *,
    scene_id: str,
    owner: str | None = None,
    new_id: Callable[[], str] | None = None,
    max_prompt_chars: int = 2000,
    max_text_chars: int = 5000,
) -> tuple[ScenePlan, list[JobSpec]]:
    """Check ``req`` and plan it: the scene's plan and one job spec per item (in plan order).

    Args:
        req: The scene request.
        catalog: Models this server offers (each item goes through ``build_spec``).
        scene_id: Id of the scene's own job.
        owner: Owner recorded on every job.
        new_id: Makes component job ids (default: random hex).
        max_prompt_chars: Prompt limit of one item.
        max_text_chars: Text limit of one item.

    Returns:
        ``(plan, specs)``; ``specs[k]`` is the job of ``plan.components[k]``.

    Raises:
        InvalidInput: naming the item, e.g. ``field="tracks[1].items[0].start_s"``.
    """
    make_id = new_id or (lambda: secrets.token_hex(16))
    total = sum(len(t.items) for t in req.tracks)
    if total > MAX_ITEMS:
        raise InvalidInput(f"a scene holds at most {MAX_ITEMS} items; this one has {total}", field="tracks")
    components: list[SceneComponent] = []
    specs: list[JobSpec] = []
    spans: dict[tuple[int, int], tuple[float, float]] = {}  # (track, item) -> (start, certain end)
    planned_end = 0.0
    k = 0
    for t, track in enumerate(req.tracks):
        for i, item in enumerate(track.items):
            path = item_path(t, i)
            seed = (
                item.seed
                if item.seed is not None
                else ((req.seed + k) % MAX_SEED if req.seed is not None else None)
            )
            spec = _item_spec(
                item,
                path,
                catalog,
                job_id=make_id(),
                owner=owner,
                sample_rate=req.sample_rate,
                seed=seed,
                max_prompt_chars=max_prompt_chars,
                max_text_chars=max_text_chars,
            )
            if spec.kind == "speech":
                planned = estimate_speech_s(spec.prompt, spec.speed)
                certain = estimate_speech_s(
                    spec.prompt, spec.speed, words_per_s=SPEECH_FAST_WORDS_PER_S, pause_s=0.0
                )
            else:
                planned = certain = float(spec.duration_s or 0.0)
            end = item.start_s + planned
            spans[(t, i)] = (item.start_s, item.start_s + certain)
            if end > SCENE_MAX_S:
                field = "text" if spec.kind == "speech" else "duration_s"
                raise _fail(
                    path, item, field, f"ends at {end:.1f} s, past the {SCENE_MAX_S:g} s limit of a scene"
                )
            if req.length_s is not None:
                if item.start_s >= req.length_s:
                    raise _fail(
                        path,
                        item,
                        "start_s",
                        f"starts at {item.start_s:g} s, after the scene ends (length_s {req.length_s:g})",
                    )
                if item.start_s + certain > req.length_s + 1e-9:
                    field = "text" if spec.kind == "speech" else "duration_s"
                    raise _fail(
                        path,
                        item,
                        field,
                        f"ends at {item.start_s + certain:.2f} s, after the scene ends "
                        f"(length_s {req.length_s:g}); it may last at most "
                        f"{req.length_s - item.start_s:.2f} s",
                    )
            duck = item.duck
            if duck is None and spec.kind == "music":
                duck = Duck()
            if duck is not None and duck.duck_db == 0:
                duck = None
            components.append(
                SceneComponent(
                    path=path,
                    label=_label(item, path),
                    track=t,
                    item=i,
                    kind=spec.kind,
                    model=spec.model,
                    job_id=spec.job_id,
                    start_s=item.start_s,
                    duration_s=spec.duration_s,
                    planned_s=round(planned, 3),
                    gain_db=item.gain_db + track.gain_db,
                    pan=item.pan,
                    fade_in_s=item.fade_in_s,
                    fade_out_s=item.fade_out_s,
                    duck=duck,
                    key=spec.kind == "speech",
                )
            )
            specs.append(spec)
            planned_end = max(planned_end, end)
            k += 1
    _check_overlaps(req, spans)
    planned_s = req.length_s if req.length_s is not None else min(planned_end, SCENE_MAX_S)
    scene_spec = JobSpec(
        job_id=scene_id,
        kind=SCENE_KIND,
        model=SCENE_MODEL,
        prompt=f"scene: {req.name}",
        duration_s=round(planned_s, 3),
        seed=req.seed if req.seed is not None else 0,
        sampling=Sampling(),
        post=mix_post(
            req.target_lufs, req.true_peak_dbtp - WATERMARK_HEADROOM_DB, req.sample_rate, req.channels
        ),
        format=req.format,
        wav_subtype=req.wav_subtype,
        owner=owner,
    )
    plan = ScenePlan(
        scene_id=scene_id,
        name=req.name,
        spec=scene_spec,
        target_lufs=req.target_lufs,
        true_peak_dbtp=req.true_peak_dbtp,
        sample_rate=req.sample_rate,
        channels=req.channels,
        length_s=req.length_s,
        planned_s=round(planned_s, 3),
        components=tuple(components),
        tracks=tuple(
            PlannedTrack(name=track.name or f"track {t + 1}", gain_db=track.gain_db)
            for t, track in enumerate(req.tracks)
        ),
        export=req.export,
    )
    if not math.isfinite(plan.planned_s):  # pragma: no cover - every input above is finite
        raise InvalidInput("scene length is not finite", field="tracks")
    return plan, specs
