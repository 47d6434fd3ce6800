"""The job record: the one place a job's state lives, shared by the API (reads) and workers (writes).

One Redis hash per job (:func:`keys.job`) holds everything about it::

    spec, owner, created_at, scene?          written once at submit (scene: the scene it belongs to)
    state                                    queued -> running -> succeeded | failed | cancelled
    progress                                 0..1 while running, 1 once succeeded
    attempts, started_at, worker             counted and stamped by each worker start
    result | error                           JSON, written with the final state
    finished_at
    cancel_requested                         set by a cancel (which also makes the job cancelled at
                                             once); a running job stops at its next progress tick

Every state change is one Lua script (atomic on the server), so a final state is never overwritten:
a late worker, a redelivered message or a cancel racing a finish all find the record already final
and change nothing. Each change is published on :func:`keys.job_events` (``{"state", "progress"}``),
so waiting (``Prefer: wait``, SSE, the OpenAI and ElevenLabs routes) is pushed, not polled.

A queued job also sits in its queue's sorted set (:func:`keys.queued`, ordered like the broker
drains it: priority step, then arrival), so its queue position is one ``ZRANK``; a worker start,
a cancel or a final state takes it out.

Celery's result backend is not used: Celery only carries the messages.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Final

import redis
from redis.asyncio import Redis as AsyncRedis
from redis.typing import EncodableT, FieldT

from gen_server.celery_config import priority_step
from gen_server.contract.result import JobError, JobResult, JobState
from gen_server.contract.spec import JobSpec
from gen_server.records import keys

TERMINAL: Final[frozenset[JobState]] = frozenset({"succeeded", "failed", "cancelled"})
"""States a job never leaves."""

_SEQ_SPAN = 10**12
"""Queue-order scores are ``priority step * _SEQ_SPAN + arrival number``."""
_QUEUED = keys.queued("")

_IS_FINAL = """
local function is_final(state)
  return state == 'succeeded' or state == 'failed' or state == 'cancelled'
end
local function unqueue(job, prefix, id)
  local queue = redis.call('HGET', job, 'queue')
  if queue then redis.call('ZREM', prefix .. queue, id) end
end
"""
# The queue's sorted set is named from the record's ``queue`` field inside the scripts (ARGV[1] is
# :func:`keys.queued`'s prefix): one Redis server holds them all, as it holds the broker's lists.

# KEYS: job, events channel. ARGV: queued prefix, job id, worker, now.
# Returns {state, attempts, scene}: 'running' and the new count, or the final state (or 'missing') and 0;
# scene: the scene the job belongs to, or ''.
START_LUA = (
    _IS_FINAL
    + """
local state = redis.call('HGET', KEYS[1], 'state')
local scene = redis.call('HGET', KEYS[1], 'scene') or ''
if not state then return {'missing', 0, ''} end
if is_final(state) then return {state, 0, scene} end
unqueue(KEYS[1], ARGV[1], ARGV[2])
local n = redis.call('HINCRBY', KEYS[1], 'attempts', 1)
redis.call('HSET', KEYS[1], 'state', 'running', 'started_at', ARGV[4], 'worker', ARGV[3])
redis.call('PUBLISH', KEYS[2], cjson.encode({state='running', progress=0}))
return {'running', n, scene}
"""
)

# KEYS: job, events channel. ARGV: fraction. Returns 1 when recorded (the job is running).
PROGRESS_LUA = """
if redis.call('HGET', KEYS[1], 'state') ~= 'running' then return 0 end
redis.call('HSET', KEYS[1], 'progress', ARGV[1])
redis.call('PUBLISH', KEYS[2], cjson.encode({state='running', progress=tonumber(ARGV[1])}))
return 1
"""

# KEYS: job, events channel, stats hash. ARGV: queued prefix, job id, state, 'result'|'error', JSON, now.
# Returns 1 when this call made the job final, 0 when it already was (or has no record).
FINISH_LUA = (
    _IS_FINAL
    + """
local state = redis.call('HGET', KEYS[1], 'state')
if not state or is_final(state) then return 0 end
redis.call('HSET', KEYS[1], 'state', ARGV[3], ARGV[4], ARGV[5], 'finished_at', ARGV[6])
if ARGV[3] == 'succeeded' then redis.call('HSET', KEYS[1], 'progress', 1) end
unqueue(KEYS[1], ARGV[1], ARGV[2])
redis.call('HINCRBY', KEYS[3], ARGV[3], 1)
redis.call('PUBLISH', KEYS[2], cjson.encode({state=ARGV[3], progress=1}))
return 1
"""
)

# KEYS: job, events channel, stats hash. ARGV: queued prefix, job id, error JSON, now.
# The job is final (cancelled) at once; a running one also gets cancel_requested and stops at its next
# step (what it records later changes nothing). Returns the state after the call (false: no record).
CANCEL_LUA = (
    _IS_FINAL
    + """
local state = redis.call('HGET', KEYS[1], 'state')
if not state then return false end
if is_final(state) then return state end
redis.call('HSET', KEYS[1], 'cancel_requested', 1)
redis.call('HSET', KEYS[1], 'state', 'cancelled', 'error', ARGV[3], 'finished_at', ARGV[4])
unqueue(KEYS[1], ARGV[1], ARGV[2])
redis.call('HINCRBY', KEYS[3], 'cancelled', 1)
redis.call('PUBLISH', KEYS[2], cjson.encode({state='cancelled', progress=0}))
return 'cancelled'
"""
)

# KEYS: job. ARGV: queued prefix, job id. The 1-based queue position of a queued job, else false.
POSITION_LUA = """
if redis.call('HGET', KEYS[1], 'state') ~= 'queued' then return false end
local queue = redis.call('HGET', KEYS[1], 'queue')
if not queue then return false end
local rank = redis.call('ZRANK', ARGV[1] .. queue, ARGV[2])
if not rank then return false end
return rank + 1
"""

# KEYS: the queue's sorted set, the arrival counter. ARGV: the priority step's base score, job id.
ENQUEUE_LUA = """
redis.call('ZADD', KEYS[1], ARGV[1] + redis.call('INCR', KEYS[2]), ARGV[2])
"""


@dataclass(frozen=True, slots=True)
class JobRecord:
    """A job's record as read from Redis."""

    job_id: str
    spec: JobSpec
    owner: str
    created_at: float
    state: JobState
    progress: float = 0.0
    attempts: int = 0
    worker: str | None = None
    started_at: float | None = None
    finished_at: float | None = None
    result: JobResult | None = None
    error: JobError | None = None
    cancel_requested: bool = False
    scene: str | None = None

    @classmethod
    def parse(cls, job_id: str, fields: dict[str, str]) -> JobRecord:
        """The record from its hash's fields (strings, as a ``decode_responses`` client returns them)."""
        state: Any = fields.get("state", "queued")
        result, error = fields.get("result"), fields.get("error")
        return cls(
            job_id=job_id,
            spec=JobSpec.model_validate_json(fields["spec"]),
            owner=fields.get("owner", "local"),
            created_at=float(fields["created_at"]),
            state=state,
            progress=float(fields.get("progress") or 0.0),
            attempts=int(fields.get("attempts") or 0),
            worker=fields.get("worker"),
            started_at=_float(fields.get("started_at")),
            finished_at=_float(fields.get("finished_at")),
            result=JobResult.model_validate_json(result) if result else None,
            error=JobError.model_validate_json(error) if error else None,
            cancel_requested=bool(fields.get("cancel_requested")),
            scene=fields.get("scene"),
        )


@dataclass(frozen=True, slots=True)
class Start:
    """What a worker learns when it starts a job (:meth:`JobRecords.start`)."""

    state: str
    attempt: int
    scene: str | None


def ended_as(error: JobError) -> JobState:
    """The final state a job ending with ``error`` gets: ``cancelled`` for that code, else ``failed``."""
    return "cancelled" if error.code == "cancelled" else "failed"


def _float(raw: str | None) -> float | None:
    return float(raw) if raw else None


@dataclass(slots=True)
class JobRead:
    """What :meth:`JobRecords.read` returns: the record (``None``: no such job) and what goes with it."""

    record: JobRecord | None
    webhook_attempts: list[str]
    position: int | None = None
    speed: dict[str, str] = field(default_factory=dict)
    workers: dict[str, str] = field(default_factory=dict)


def _text_map(raw: Any) -> dict[str, str]:
    return {_text(k): _text(v) for k, v in (raw or {}).items()}


class JobRecords:
    """Reads and the only writes of job records on one Redis client (API and worker alike)."""

    def __init__(self, client: redis.Redis, retention_s: int) -> None:
        self.redis = client
        self.retention_s = retention_s
        self._start = client.register_script(START_LUA)
        self._progress = client.register_script(PROGRESS_LUA)
        self._finish = client.register_script(FINISH_LUA)
        self._cancel = client.register_script(CANCEL_LUA)

    # ------------------------------------------------------------------------------------ create

    def create(
        self,
        pipe: redis.client.Pipeline,
        spec: JobSpec,
        owner: str,
        *,
        priority: int | None,
        **extra: str,
    ) -> None:
        """Add the writes that record ``spec`` as ``owner``'s queued job to ``pipe``.

        ``extra`` fields are stored as given (``scene``). The job joins its queue's order (by the
        broker's priority step for the ``priority`` it is sent with and an arrival number drawn here);
        ``priority=None``: it is not sent yet (a scene's mix), so it has no place in a queue.
        """
        now = time.time()
        fields: dict[FieldT, EncodableT] = {
            "spec": spec.model_dump_json(),
            "owner": owner,
            "created_at": now,
            "state": "queued",
            "queue": spec.queue,
        }
        fields.update(extra)
        job_key = keys.job(spec.job_id)
        pipe.hset(job_key, mapping=fields)
        pipe.expire(job_key, self.retention_s)
        if priority is not None:
            # the arrival number is drawn by the server inside the same pipeline (no round trip)
            pipe.eval(
                ENQUEUE_LUA,
                2,
                keys.queued(spec.queue),
                keys.QUEUE_ARRIVALS,
                priority_step(priority) * _SEQ_SPAN,
                spec.job_id,
            )
        pipe.zadd(keys.ALL_JOBS, {spec.job_id: now})
        pipe.zadd(keys.owner_jobs(owner), {spec.job_id: now})
        pipe.sadd(keys.active_jobs(owner), spec.job_id)

    # -------------------------------------------------------------------------------------- read

    def read(self, job_id: str, *, with_schedule: bool = False) -> JobRead:
        """The record and its webhook attempts; with ``with_schedule`` also its queue position (while
        queued), the measured speeds and the worker list an ETA needs. One round trip."""
        pipe = self.redis.pipeline(transaction=False)
        self.add_read(pipe, job_id, with_schedule=with_schedule)
        return self.parse_read(job_id, pipe.execute(), with_schedule=with_schedule)

    async def aread(self, client: AsyncRedis, job_id: str, *, with_schedule: bool = False) -> JobRead:
        """:meth:`read` on an asyncio Redis client (the API's hot ``GET /v1/jobs/{id}``)."""
        pipe = client.pipeline(transaction=False)
        self.add_read(pipe, job_id, with_schedule=with_schedule)
        return self.parse_read(job_id, await pipe.execute(), with_schedule=with_schedule)

    @staticmethod
    def add_read(pipe: Any, job_id: str, *, with_schedule: bool) -> None:
        """Queue :meth:`read`'s commands on ``pipe`` (sync or asyncio; after other commands is fine:
        :meth:`parse_read` takes the replies from the end)."""
        pipe.hgetall(keys.job(job_id))
        pipe.lrange(keys.webhook_attempts(job_id), -50, -1)
        if with_schedule:
            # EVAL with the body, not a registered script: in a pipeline redis-py first asks
            # SCRIPT EXISTS in a round trip of its own; Redis caches the compiled body by hash anyway
            pipe.eval(POSITION_LUA, 1, keys.job(job_id), _QUEUED, job_id)
            pipe.hgetall(keys.SPEED)
            pipe.hgetall(keys.WORKERS)

    @staticmethod
    def parse_read(job_id: str, replies: list[Any], *, with_schedule: bool) -> JobRead:
        """The :class:`JobRead` from the last replies of a pipeline that ran :meth:`add_read`."""
        replies = replies[-(5 if with_schedule else 2) :]
        fields, attempts = replies[0], replies[1]
        read = JobRead(JobRecord.parse(job_id, fields) if fields else None, [_text(a) for a in attempts])
        if with_schedule:
            read.position = int(replies[2]) if replies[2] else None
            read.speed, read.workers = _text_map(replies[3]), _text_map(replies[4])
        return read

    def read_many(self, job_ids: list[str]) -> list[JobRecord | None]:
        """Several records in one round trip (``None`` where a record expired)."""
        pipe = self.redis.pipeline(transaction=False)
        for job_id in job_ids:
            pipe.hgetall(keys.job(job_id))
        return [JobRecord.parse(j, f) if f else None for j, f in zip(job_ids, pipe.execute(), strict=True)]

    def states(self, job_ids: list[str]) -> list[JobState | None]:
        """Just the states of several jobs in one round trip (``None`` where a record expired)."""
        pipe = self.redis.pipeline(transaction=False)
        for job_id in job_ids:
            pipe.hget(keys.job(job_id), "state")
        return list(pipe.execute())

    def cancel_requested(self, job_id: str) -> bool:
        return bool(self.redis.hexists(keys.job(job_id), "cancel_requested"))

    # ------------------------------------------------------------------------------------ writes

    def start(self, job_id: str, worker: str) -> Start:
        """A worker starts (or restarts) ``job_id``: state ``running`` and the attempt's number.

        The state is the final one instead (attempt 0) when the job already ended (a cancelled queued
        job, a redelivered finished one), or ``missing`` when it has no record.
        """
        state, attempts, scene = self._start(
            keys=[keys.job(job_id), keys.job_events(job_id)], args=[_QUEUED, job_id, worker, time.time()]
        )
        return Start(_text(state), int(attempts), _text(scene) or None)

    def progress(self, job_id: str, fraction: float) -> bool:
        """Record and publish a running job's progress; ``False`` when it is no longer running."""
        job = [keys.job(job_id), keys.job_events(job_id)]
        return bool(self._progress(keys=job, args=[round(fraction, 4)]))

    def succeed(self, job_id: str, result: JobResult) -> bool:
        """Make the job succeeded with ``result``; ``False`` when it was already final."""
        return self._end(job_id, "succeeded", "result", result.model_dump_json())

    def fail(self, job_id: str, error: JobError) -> bool:
        """Make the job failed (or cancelled, for the ``cancelled`` code); ``False`` when already final."""
        return self._end(job_id, ended_as(error), "error", error.model_dump_json())

    def _end(self, job_id: str, state: JobState, field: str, payload: str) -> bool:
        made = self._finish(
            keys=[keys.job(job_id), keys.job_events(job_id), keys.STATS_JOBS],
            args=[_QUEUED, job_id, state, field, payload, time.time()],
        )
        return bool(made)

    def cancel(self, job_id: str) -> str | None:
        """Cancel the job now (a running one stops at its next step); its state after (None: no record)."""
        error = JobError(code="cancelled", message=f"job '{job_id}' was cancelled")
        state = self._cancel(
            keys=[keys.job(job_id), keys.job_events(job_id), keys.STATS_JOBS],
            args=[_QUEUED, job_id, error.model_dump_json(), time.time()],
        )
        return _text(state) if state else None


def _text(raw: Any) -> str:
    return raw.decode() if isinstance(raw, bytes) else str(raw)
