"""Measured generation speed per model and queue, and each job's estimated time to finish (ETA).

Workers record every job they finish (:meth:`SpeedRecords.observe`: one Lua call updating
exponentially weighted means in :data:`keys.SPEED`), so the figures follow the hardware, precision
and batch sizes actually in use::

    model:<id>:wall_per_audio_s   wall seconds a job of that model took per second of audio (a batched
                                  call's jobs each take the whole call's time)
    queue:<name>:busy_s           model seconds one job of that queue costs (a batched call's time
                                  shared by the jobs it served): what it adds to the wait of jobs behind

The API reads that hash and the worker list in the same round trip as the job record, and
:func:`eta_s` estimates:

* running: the time so far stretched by the progress (``elapsed * (1 - p) / p``), once there is
  progress to go by; before that, the job's own estimate less the time so far;
* queued: the jobs ahead in its queue times that queue's busy seconds per job, shared by the live
  workers consuming the queue, plus the job's own estimate (seconds of audio times its model's wall
  seconds per audio second; a speech job's length is estimated from its text). Jobs already running
  are not counted, so a queued ETA errs short by at most one job.

``None`` where nothing has been measured yet (a model no worker has finished a job of).
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from typing import Any, Final

import redis

from gen_server.contract.spec import JobSpec
from gen_server.records import keys

ALPHA: Final = 0.3
"""Weight of the newest observation in the moving means."""
SPEECH_CHARS_PER_S: Final = 15.0
"""Characters of text per second of speech, to estimate a queued speech job's length (~150 words/min)."""
WORKER_LIVE_S: Final = 60.0
"""A worker that has not reported for this long no longer counts as serving its queues."""

# KEYS: speed hash. ARGV: alpha, then field, value pairs. Moves each field's mean towards its value.
OBSERVE_LUA = """
local alpha = tonumber(ARGV[1])
for i = 2, #ARGV, 2 do
  local value = tonumber(ARGV[i + 1])
  local old = tonumber(redis.call('HGET', KEYS[1], ARGV[i]))
  if old then value = old + alpha * (value - old) end
  redis.call('HSET', KEYS[1], ARGV[i], tostring(value))
end
return 1
"""


def _wall_field(model: str) -> str:
    return f"model:{model}:wall_per_audio_s"


def _busy_field(queue: str) -> str:
    return f"queue:{queue}:busy_s"


class SpeedRecords:
    """The workers' writes of measured speed (reads go through :meth:`JobRecords.read`)."""

    def __init__(self, client: redis.Redis) -> None:
        self.redis = client
        self._observe = client.register_script(OBSERVE_LUA)

    def observe(self, spec: JobSpec, *, generation_s: float, batch_size: int, audio_s: float) -> None:
        """Fold one finished job into the means: its call took ``generation_s`` for ``batch_size`` jobs."""
        if generation_s <= 0 or audio_s <= 0 or batch_size < 1:
            return
        self._observe(
            keys=[keys.SPEED],
            args=[
                ALPHA,
                _wall_field(spec.model),
                generation_s / audio_s,
                _busy_field(spec.queue),
                generation_s / batch_size,
            ],
        )


def audio_seconds(spec: JobSpec) -> float:
    """The audio a job will make: its duration, or for speech an estimate from its text's length."""
    if spec.duration_s:
        return float(spec.duration_s)
    return max(len(spec.prompt or ""), 1) / SPEECH_CHARS_PER_S


def live_workers(workers: Mapping[str, str], queue: str, now: float) -> int:
    """Workers that reported within :data:`WORKER_LIVE_S` and consume ``queue`` (``keys.WORKERS`` values)."""
    count = 0
    for raw in workers.values():
        try:
            info: dict[str, Any] = json.loads(raw)
        except ValueError:
            continue
        queues = str(info.get("queues", "")).split(",")
        if queue in queues and now - float(info.get("seen_at", 0)) <= WORKER_LIVE_S:
            count += 1
    return count


def eta_s(
    spec: JobSpec,
    state: str,
    *,
    progress: float,
    started_at: float | None,
    position: int | None,
    speed: Mapping[str, str],
    workers: Mapping[str, str],
    now: float | None = None,
) -> float | None:
    """Seconds until the job is expected to finish (see the module docstring), or ``None``."""
    now = time.time() if now is None else now
    per_audio_s = _number(speed.get(_wall_field(spec.model)))
    own = audio_seconds(spec) * per_audio_s if per_audio_s is not None else None
    if state == "running":
        elapsed = max(now - started_at, 0.0) if started_at else 0.0
        if progress >= 0.02:
            return round(elapsed * (1 - progress) / progress, 1)
        return round(max(own - elapsed, 0.0), 1) if own is not None else None
    if state != "queued" or own is None:
        return None
    ahead = max((position or 1) - 1, 0)
    wait = 0.0
    if ahead:
        busy = _number(speed.get(_busy_field(spec.queue)))
        if busy is None:
            return None
        wait = ahead * busy / max(live_workers(workers, spec.queue, now), 1)
    return round(wait + own, 1)


def _number(raw: str | None) -> float | None:
    try:
        return float(raw) if raw is not None else None
    except ValueError:
        return None
