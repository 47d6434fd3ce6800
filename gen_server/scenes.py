"""The scene service: plan a scene, record its jobs, queue its items, report on it.

A scene is N+1 ordinary job records: one per item (``soundry.generate`` on the item's queue, visible at
``/v1/jobs/{id}`` like any job, its record naming the scene) and one for the mix (``kind`` ``music``,
``model`` ``scene``), whose id is the scene id. The items are queued at once; their ids are the
scene's pending set (:func:`keys.scene_pending`). The worker that records the last item as succeeded
queues ``soundry.scene_mix`` (task id = scene id), which loads the plan from ``keys.scene(id)``; one
that records an item as failed or cancelled fails the scene's job, naming the item. No Celery chord:
nothing waits on results, and the API holds no subscription per scene.

A scene made with ``export`` has its stems, captions and timelines stored beside the mix by the mixing
task; :meth:`SceneService.export` zips them (:func:`gen_server.scene_export.write_bundle`).
"""

from __future__ import annotations

import contextlib
import json
import logging
import tempfile
import time
import uuid
from typing import IO, Any, Final

from gen_server.celery_config import JOB_PRIORITY
from gen_server.contract.result import JobError, JobState, JobView
from gen_server.contract.scene import (
    SceneComponent,
    SceneComponentView,
    ScenePlan,
    SceneRequest,
    SceneView,
    component_error,
)
from gen_server.contract.spec import JobSpec
from gen_server.errors import Conflict, InvalidInput, NotFound, SoundryError
from gen_server.jobs import TERMINAL, Caller, JobService
from gen_server.records import keys
from gen_server.records.jobs import JobRecord
from gen_server.scene_export import bundle_root, write_bundle
from gen_server.scene_plan import build_scene

logger = logging.getLogger(__name__)

_MIX_SHARE = 0.1
"""Share of a scene's progress given to mixing (the rest is its components' mean progress)."""
_SPOOL_BYTES: Final[int] = 64 * 1024 * 1024
"""An export bundle is built in memory up to this size, then in a temporary file."""


class SceneService:
    """Scenes on top of the job service (same Redis, queue, storage and catalog)."""

    def __init__(self, jobs: JobService) -> None:
        self.jobs = jobs

    # ------------------------------------------------------------------------------------- submit

    def submit(self, req: SceneRequest, caller: Caller, *, idempotency_key: str | None = None) -> SceneView:
        """Plan ``req``, record the scene and its component jobs, queue the components.

        Raises:
            InvalidInput: naming the item (``tracks[T].items[I].field``).
            RateLimited: the caller's job quota cannot take the scene's jobs now.
        """
        owner = caller.owner or "local"
        redis = self.jobs.redis
        idem = keys.idempotency(owner, f"scene:{idempotency_key}") if idempotency_key else None
        if idem is not None:
            existing = redis.get(idem)
            if existing:
                return self.get(str(existing), caller)
        scene_id = uuid.uuid4().hex
        settings = self.jobs.settings
        plan, specs = build_scene(
            req,
            self.jobs.catalog,
            scene_id=scene_id,
            owner=caller.owner,
            max_prompt_chars=settings.max_prompt_chars,
            max_text_chars=settings.max_text_chars,
        )
        if caller.max_concurrent_jobs is not None:
            self._check_quota(owner, caller, len(specs) + 1)
        if idem is not None and not redis.set(idem, scene_id, nx=True, ex=24 * 3600):
            return self.get(str(redis.get(idem) or scene_id), caller)
        self._record(plan, specs, owner)
        for spec in specs:
            self.jobs.queue.send(spec, priority=JOB_PRIORITY)
        logger.info(
            "scene %s (%s): %d components queued, mix on '%s' once they succeeded",
            scene_id,
            plan.name,
            len(specs),
            plan.spec.queue,
        )
        return self.get(scene_id, caller)

    def _check_quota(self, owner: str, caller: Caller, needed: int) -> None:
        limit = caller.max_concurrent_jobs or 0
        if needed > limit:
            raise InvalidInput(
                f"this scene needs {needed} jobs at once (its items and the mix); this API key allows "
                f"{limit}: split the scene or use a key with a larger quota",
                field="tracks",
            )
        self.jobs.check_quota(owner, caller, needed)

    def _record(self, plan: ScenePlan, specs: list[JobSpec], owner: str) -> None:
        """Job records for the components (each naming its scene) and the mix, and the plan."""
        now = time.time()
        retention = self.jobs.settings.job_retention_s
        pipe = self.jobs.redis.pipeline()
        records = self.jobs.records
        for spec in specs:
            records.create(pipe, spec, owner, priority=JOB_PRIORITY, scene=plan.scene_id)
        records.create(pipe, plan.spec, owner, priority=None)  # the mix: queued once its items succeeded
        pipe.sadd(keys.scene_pending(plan.scene_id), *(spec.job_id for spec in specs))
        pipe.expire(keys.scene_pending(plan.scene_id), retention)
        pipe.hset(
            keys.scene(plan.scene_id),
            mapping={"plan": plan.model_dump_json(), "owner": owner, "created_at": now},
        )
        pipe.expire(keys.scene(plan.scene_id), retention)
        pipe.zadd(keys.owner_scenes(owner), {plan.scene_id: now})
        pipe.execute()

    # ---------------------------------------------------------------------------------------- read

    def plan(self, scene_id: str, caller: Caller) -> tuple[ScenePlan, float]:
        """The scene's plan and creation time.

        Raises:
            NotFound: no such scene, or another key's.
        """
        record: dict[str, str] = self.jobs.redis.hgetall(keys.scene(scene_id))  # type: ignore[assignment]
        if not record or (not caller.admin and caller.owner and record.get("owner") != caller.owner):
            raise NotFound(f"no scene '{scene_id}'", field="scene_id")
        return ScenePlan.model_validate_json(record["plan"]), float(record["created_at"])

    def get(self, scene_id: str, caller: Caller) -> SceneView:
        """The scene with each component's state; a failed or cancelled item fails the scene."""
        plan, created_at = self.plan(scene_id, caller)
        mixed = self.jobs.get(scene_id, caller)
        records = self.jobs.records.read_many([c.job_id for c in plan.components])
        views = [self._component_view(c, record) for c, record in zip(plan.components, records, strict=True)]
        state: JobState = mixed.state
        error = mixed.error
        if state not in ("succeeded", "cancelled"):
            broken = [
                (c, v)
                for c, v in zip(plan.components, views, strict=True)
                if v.state in ("failed", "cancelled")
            ]
            if broken:
                error = self._component_failed(scene_id, *broken[0])  # the error already stored, if any
                state = "failed"
        if state not in TERMINAL and state != "running":
            started = any(v.state in ("running", "succeeded") for v in views)
            state = "running" if started else "queued"
        share = sum(v.progress for v in views) / max(len(views), 1)
        progress = 1.0 if state == "succeeded" else (1 - _MIX_SHARE) * share + _MIX_SHARE * mixed.progress
        links = {"self": f"/v1/scenes/{scene_id}", "job": f"/v1/jobs/{scene_id}"}
        if mixed.result is not None:
            links["audio"] = f"/v1/jobs/{scene_id}/audio"
            if plan.export:
                links["export"] = f"/v1/scenes/{scene_id}/export?format=zip"
        return SceneView(
            id=scene_id,
            name=plan.name,
            state=state,
            progress=min(max(progress, 0.0), 1.0),
            created_at=created_at,
            finished_at=mixed.finished_at,
            target_lufs=plan.target_lufs,
            true_peak_dbtp=plan.true_peak_dbtp,
            sample_rate=plan.sample_rate,
            channels=plan.channels,
            planned_s=plan.planned_s,
            components=views,
            result=mixed.result,
            mix=self._mix_stats(mixed),
            error=error,
            links=links,
        )

    @staticmethod
    def _component_view(c: SceneComponent, record: JobRecord | None) -> SceneComponentView:
        common: dict[str, Any] = {
            "path": c.path,
            "label": c.label,
            "kind": c.kind,
            "model": c.model,
            "job_id": c.job_id,
            "start_s": c.start_s,
            "gain_db": c.gain_db,
            "links": {"job": f"/v1/jobs/{c.job_id}"},
        }
        if record is None:
            gone = JobError(code="not_found", message=f"job {c.job_id} expired or was deleted")
            return SceneComponentView(**common, duration_s=c.duration_s, state="failed", error=gone)
        duration = record.result.duration_s if record.result is not None else (c.duration_s or c.planned_s)
        if record.result is not None:
            common["links"]["audio"] = f"/v1/jobs/{c.job_id}/audio"
        progress = 1.0 if record.state == "succeeded" else record.progress
        return SceneComponentView(
            **common, duration_s=duration, state=record.state, progress=progress, error=record.error
        )

    def _component_failed(self, scene_id: str, c: SceneComponent, view: SceneComponentView) -> JobError:
        """The scene's error for its component ``c`` that failed, recorded on the scene's job if not yet.

        The worker that ended the component records it; this covers a component whose record expired.
        """
        error = component_error(c, view.state, view.error)
        if self.jobs.records.fail(scene_id, error):
            logger.warning("scene %s failed: %s", scene_id, error.message)
            return error
        stored = self.jobs.records.read_many([scene_id])[0]
        return stored.error if stored is not None and stored.error is not None else error

    def _mix_stats(self, mixed: JobView) -> dict[str, float] | None:
        if mixed.result is None:
            return None
        try:
            manifest = json.loads(self.jobs.store.get(mixed.result.manifest))
        except (SoundryError, ValueError) as e:
            logger.warning("scene %s: manifest unreadable: %s", mixed.id, e)
            return None
        stats = manifest.get("mix")
        if not isinstance(stats, dict):
            return None
        return {k: float(v) for k, v in stats.items() if isinstance(v, int | float)}

    # -------------------------------------------------------------------------------------- export

    def export(self, scene_id: str, caller: Caller) -> tuple[IO[bytes], str]:
        """The scene's export bundle (zip: mix, stems, captions, timelines, manifest) and its file name.

        Returns:
            The zip, rewound (spooled to disk past 64 MiB; the caller closes it), and ``<name>.zip``.

        Raises:
            NotFound: no such scene for ``caller``, or its files expired.
            Conflict: the scene has not succeeded, or was made without ``export: true``.
        """
        plan, _ = self.plan(scene_id, caller)
        if not plan.export:
            raise Conflict(
                f"scene '{scene_id}' was made without export: true, so it has no stems or timelines; "
                'submit it again with "export": true',
                field="export",
            )
        view = self.get(scene_id, caller)
        if view.state != "succeeded" or view.result is None:
            raise Conflict(
                f"scene '{scene_id}' is {view.state}; its export exists once it succeeded", field="scene_id"
            )
        manifest = json.loads(self.jobs.store.get(view.result.manifest))
        if not isinstance(manifest.get("export"), dict):
            raise Conflict(
                f"scene '{scene_id}' was mixed without its export (by a worker older than exports); "
                "submit it again",
                field="export",
            )
        root = bundle_root(plan.name)
        spool = tempfile.SpooledTemporaryFile(max_size=_SPOOL_BYTES)  # noqa: SIM115 (the caller closes it)
        try:
            write_bundle(spool, root=root, store=self.jobs.store, manifest=manifest)
        except BaseException:
            spool.close()
            raise
        spool.seek(0)
        return spool, f"{root}.zip"

    # -------------------------------------------------------------------------------------- cancel

    def cancel(self, scene_id: str, caller: Caller) -> SceneView:
        """Cancel the mix and every unfinished component.

        Raises:
            Conflict: the scene already succeeded or failed.
        """
        view = self.get(scene_id, caller)
        if view.state in TERMINAL:
            if view.state == "cancelled":
                return view
            raise Conflict(f"scene '{scene_id}' already {view.state}", field="scene_id")
        self.jobs.cancel(scene_id, caller)  # first: a component cancelled below must not read as a failure
        for component in view.components:
            if component.state not in TERMINAL:
                with contextlib.suppress(Conflict, NotFound):  # it may have ended meanwhile
                    self.jobs.cancel(component.job_id, caller)
        return self.get(scene_id, caller)
