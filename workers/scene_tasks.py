"""``soundry.scene_mix``: mixes a scene once all its components succeeded.

The worker that records the scene's last component as succeeded queues it (task id = scene id,
:meth:`workers.runtime.WorkerRuntime.succeeded`), so it never waits on anything: it loads each
component's stored audio, mixes the timeline
(:func:`gen_server.audio.mix.mix`), and hands the sum to :func:`workers.pipeline.finish`, the same
code that finishes every job: loudness to the scene's target under its true-peak ceiling, watermark,
encode, store. The manifest then gets the scene's part: every component with its own job id and
where it went, and the loudness and true peak measured on the mix. A scene asked for with ``export``
also gets its stems, captions and timelines stored beside the mix
(:func:`gen_server.scene_export.export_scene`) before that manifest entry is written.

Works under Celery's solo and threads pools alike: it needs no model, only the worker runtime's
storage, Redis and watermarker. It runs under the same wrapper as every job
(:func:`workers.tasks.run_recorded`: record, attempts, errors). Idempotent by scene id: a
redelivered mix whose manifest lists its components returns the stored result.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import Any

from celery import Task
from celery.exceptions import Ignore

from gen_server.audio import Audio, Word
from gen_server.audio.encode import decode
from gen_server.audio.mix import MixResult, clip_for, mix
from gen_server.audio.postprocess import loudness_lufs, true_peak_dbtp
from gen_server.audio.watermark import Watermarker
from gen_server.content_credentials import Signing
from gen_server.contract.result import JobError, JobResult
from gen_server.contract.scene import TASK_SCENE_MIX, SceneComponent, ScenePlan
from gen_server.errors import GenerationFailed, NotFound
from gen_server.records import keys
from gen_server.scene_export import export_scene
from gen_server.storage import ArtifactStore, manifest_key
from workers.backends.base import ProgressFn
from workers.celery_app import app
from workers.pipeline import cached_result, finish
from workers.runtime import runtime
from workers.tasks import RETRY_TRANSIENT, run_recorded
from workers.webhook_tasks import job_events

logger = logging.getLogger(__name__)


def load_component(store: ArtifactStore, component: SceneComponent) -> tuple[Audio, JobResult]:
    """A finished component's audio and result, read back from storage by its job id.

    Raises:
        GenerationFailed: the component has no stored audio.
    """
    try:
        manifest = json.loads(store.get(manifest_key(component.job_id)))
        result = JobResult.model_validate(manifest["result"])
        return decode(store.get(result.artifact)), result
    except (NotFound, KeyError, ValueError) as e:
        raise GenerationFailed(
            f"{component.path} ('{component.label}', job {component.job_id}) has no stored audio: {e}"
        ) from e


def _components_entry(plan: ScenePlan, results: list[JobResult], mixed: MixResult) -> list[dict[str, Any]]:
    rate = plan.sample_rate
    out: list[dict[str, Any]] = []
    for i, (component, result) in enumerate(zip(plan.components, results, strict=True)):
        placed = mixed.placements[i]
        entry: dict[str, Any] = {
            "path": component.path,
            "label": component.label,
            "kind": component.kind,
            "model": component.model,
            "job_id": component.job_id,
            "artifact": result.artifact,
            "sha256": result.sha256,
            "watermark_payload": result.watermark_payload,
            "seed": result.seed,
            "start_s": round(placed.start / rate, 6),
            "end_s": round(placed.stop / rate, 6),
            "gain_db": component.gain_db,
            "pan": component.pan,
            "fade_in_s": component.fade_in_s,
            "fade_out_s": component.fade_out_s,
        }
        if component.duck is not None and i in mixed.duck_db:
            curve = mixed.duck_db[i]
            entry["duck"] = {
                **component.duck.model_dump(),
                "ducked_s": round(float((curve < -0.5).sum()) / 1000.0, 3),
                "max_reduction_db": round(float(-curve.min()) if curve.size else 0.0, 2),
            }
        out.append(entry)
    return out


def scene_words(results: Sequence[JobResult], mixed: MixResult, rate: int) -> tuple[Word, ...]:
    """The spoken words of the scene's speech components, placed where each landed in the mix (a word
    cut off by a component's length is dropped), in time order: the scene's captions."""
    words: list[Word] = []
    for result, placed in zip(results, mixed.placements, strict=True):
        start_s, stop_s = placed.start / rate, placed.stop / rate
        for w in result.words or ():
            word = Word(w.text, w.start_s + start_s, min(w.end_s + start_s, stop_s), w.source)
            if word.start_s < word.end_s:
                words.append(word)
    return tuple(sorted(words, key=lambda w: (w.start_s, w.end_s)))


def render_scene(
    plan: ScenePlan,
    *,
    store: ArtifactStore,
    watermarker: Watermarker,
    watermark_key: bytes,
    progress: Callable[[float], None] | None = None,
    signing: Signing | None = None,
) -> JobResult:
    """Mix ``plan`` from its stored components and store the finished track (idempotent by scene id).

    Args:
        plan: The scene.
        store: Artifact storage (components are read from it, the mix is written to it).
        watermarker: The worker's :class:`~gen_server.audio.watermark.Watermarker`.
        watermark_key: Key of the job payloads.
        progress: Called with a fraction in [0, 1] as the work goes on.
        signing: Signs the mix and its stems with C2PA Content Credentials (``None``: unsigned).

    Returns:
        The mix's result (also stored in its manifest).
    """
    spec = plan.spec
    done = cached_result(spec, store)
    if done is not None and "scene" in json.loads(store.get(done.manifest)):
        logger.info("scene %s already mixed; not mixing again", plan.scene_id)
        return done
    started = time.perf_counter()
    loaded = [load_component(store, c) for c in plan.components]
    if progress is not None:
        progress(0.3)
    clips = [clip_for(c, audio) for c, (audio, _) in zip(plan.components, loaded, strict=True)]
    mixed = mix(
        clips,
        sample_rate=plan.sample_rate,
        channels=plan.channels,
        length_s=plan.length_s,
        keep_parts=plan.export,
    )
    if progress is not None:
        progress(0.6)
    result = finish(
        spec,
        replace(mixed.audio, words=scene_words([r for _, r in loaded], mixed, plan.sample_rate)),
        watermarker=watermarker,
        watermark_key=watermark_key,
        store=store,
        generation_s=time.perf_counter() - started,
        signing=signing,
    )
    final = decode(store.get(result.artifact))
    measured = {
        "loudness_lufs": round(loudness_lufs(final), 3),
        "true_peak_dbtp": round(true_peak_dbtp(final), 3),
        "target_lufs": plan.target_lufs,
        "ceiling_dbtp": plan.true_peak_dbtp,
        "duration_s": round(final.duration_s, 4),
    }
    if measured["true_peak_dbtp"] > plan.true_peak_dbtp + 0.05:
        logger.warning(
            "scene %s: true peak %.2f dBTP is over its ceiling %.1f dBTP after watermarking",
            plan.scene_id,
            measured["true_peak_dbtp"],
            plan.true_peak_dbtp,
        )
    manifest = json.loads(store.get(result.manifest))
    if plan.export:  # stored before the "scene" entry, which marks the whole task done
        if progress is not None:
            progress(0.8)
        manifest["export"] = export_scene(
            plan,
            mixed,
            result,
            store=store,
            watermarker=watermarker,
            watermark_key=watermark_key,
            created_at=float(manifest.get("created_at") or 0.0),
            signing=signing,
        )
    manifest["scene"] = {
        "scene_id": plan.scene_id,
        "name": plan.name,
        "plan": plan.model_dump(mode="json"),
        "components": _components_entry(plan, [r for _, r in loaded], mixed),
    }
    manifest["mix"] = measured
    store.put(result.manifest, json.dumps(manifest, indent=2).encode())
    logger.info(
        "scene %s mixed: %d components, %.2f s, %.2f LUFS (target %.1f), true peak %.2f dBTP",
        plan.scene_id,
        len(plan.components),
        final.duration_s,
        measured["loudness_lufs"],
        plan.target_lufs,
        measured["true_peak_dbtp"],
    )
    return result


@app.task(name=TASK_SCENE_MIX, bind=True, **RETRY_TRANSIENT)
def scene_mix(self: Task, scene_id: str) -> None:
    """Mix the scene ``scene_id`` (the task id is the scene id; its plan is in Redis)."""
    rt = runtime()
    raw = rt.redis.hget(keys.scene(scene_id), "plan")
    if not raw:
        message = f"scene '{scene_id}' has no plan (expired or never recorded)"
        rt.failed(scene_id, JobError(code="generation_failed", message=message), None)
        logger.error(message)
        raise Ignore()
    plan = ScenePlan.model_validate_json(raw if isinstance(raw, str | bytes) else str(raw))

    def work(report: ProgressFn, attempt: int) -> JobResult:
        logger.info("scene %s (attempt %d): mixing %d components", scene_id, attempt, len(plan.components))
        return render_scene(
            plan,
            store=rt.store,
            watermarker=rt.watermarker,
            watermark_key=rt.watermark_key,
            progress=report,
            signing=rt.scene_signing(plan),
        )

    run_recorded(self, scene_id, work, job_events(plan.spec))
