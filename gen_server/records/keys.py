"""Every Redis key name Soundry uses, for the API and the workers alike (one place, so they never drift).

The broker's own lists (kombu's) are named by Celery; :func:`gen_server.celery_config.priority_lists`
names them where Soundry reads them.
"""

PREFIX = "soundry"


def job(job_id: str) -> str:
    """Hash: the job's record (fields in :mod:`gen_server.records.jobs`)."""
    return f"{PREFIX}:job:{job_id}"


def job_events(job_id: str) -> str:
    """Pub/sub channel: ``{"state", "progress"}`` on every change of the job's record (records/jobs.py)."""
    return f"{PREFIX}:job:{job_id}:events"


def queued(queue: str) -> str:
    """Sorted set of the queue's waiting job ids in the order the broker hands them out."""
    return f"{PREFIX}:queued:{queue}"


QUEUE_ARRIVALS = f"{PREFIX}:queued:arrivals"
"""Counter: the arrival number of each queued job (its order within a priority step)."""


def stream(job_id: str) -> str:
    """Stream: the job's audio chunks as they are made, then an end entry (workers/streaming.py)."""
    return f"{PREFIX}:stream:{job_id}"


ALL_JOBS = f"{PREFIX}:jobs"


def owner_jobs(owner: str) -> str:
    return f"{PREFIX}:jobs:owner:{owner}"


def active_jobs(owner: str) -> str:
    """Set of an owner's job ids that may still be queued or running (pruned on read)."""
    return f"{PREFIX}:active:{owner}"


def idempotency(owner: str, key: str) -> str:
    return f"{PREFIX}:idem:{owner}:{key}"


def batch(batch_id: str) -> str:
    """Hash: owner, created_at, source, name, jobs (JSON list of the planned jobs), cancelled (set once
    cancelled); the job id of each item is in :func:`batch_jobs`."""
    return f"{PREFIX}:batch:{batch_id}"


def owner_batches(owner: str) -> str:
    """Sorted set of an owner's batch ids by creation time."""
    return f"{PREFIX}:batches:owner:{owner}"


def batch_jobs(batch_id: str) -> str:
    """Hash: item id -> job id of a batch's submitted items (one field each, so writers never clash)."""
    return f"{PREFIX}:batch:{batch_id}:jobs"


def webhook_attempts(job_id: str) -> str:
    """List of JSON delivery attempts of a job's webhook."""
    return f"{PREFIX}:webhook:{job_id}"


STATS_JOBS = f"{PREFIX}:stats:jobs"
"""Hash: finished jobs by final state."""
STATS_GEN_SECONDS = f"{PREFIX}:stats:generation_seconds"
"""Hash: model id -> seconds spent generating."""
STATS_AUDIO_SECONDS = f"{PREFIX}:stats:audio_seconds"
"""Hash: model id -> seconds of audio produced."""
SPEED = f"{PREFIX}:speed"
"""Hash: measured generation speed per model and queue (fields in :mod:`gen_server.records.speed`)."""
WORKERS = f"{PREFIX}:workers"
"""Hash: worker id -> JSON {queues, rss_bytes, models, seen_at}."""
STATS_MODEL_CALLS = f"{PREFIX}:stats:model_calls"
"""Hash: model id -> generate calls made (a batched call serving several jobs counts once)."""


def scene(scene_id: str) -> str:
    """Hash: plan (ScenePlan JSON), owner, created_at of a scene (its mix is the job ``scene_id``)."""
    return f"{PREFIX}:scene:{scene_id}"


def owner_scenes(owner: str) -> str:
    """Sorted set of an owner's scene ids by creation time."""
    return f"{PREFIX}:scenes:owner:{owner}"


def scene_pending(scene_id: str) -> str:
    """Set of the scene's component job ids not yet succeeded; the mix is queued when it empties."""
    return f"{PREFIX}:scene:{scene_id}:pending"


def rate(key_id: str, window: int) -> str:
    """Counter of an API key's requests in one rate-limit window (a minute)."""
    return f"{PREFIX}:rate:{key_id}:{window}"


def lexicon(owner: str, language: str) -> str:
    """Hash: word (lower case) -> respelling, for one API key's owner or ``*`` (the installation)."""
    return f"{PREFIX}:lexicon:{owner}:{language}"


def voice(voice_id: str) -> str:
    """Hash: a voice of the library (fields in :mod:`gen_server.records.voices`)."""
    return f"{PREFIX}:voice:{voice_id}"


def voice_events(voice_id: str) -> str:
    """Pub/sub channel: the worker's consent verdict on a voice being created (records/voices.py)."""
    return f"{PREFIX}:voice:{voice_id}:events"


ALL_VOICES = f"{PREFIX}:voices"
"""Sorted set of every voice id by creation time (admins list it)."""


def owner_voices(owner: str) -> str:
    """Sorted set of an owner's voice ids by creation time."""
    return f"{PREFIX}:voices:owner:{owner}"


def consent_code(owner: str, code: str) -> str:
    """String: JSON {text, owner, created_at, expires_at} of a consent phrase issued to ``owner`` (an
    API key id; codes are short, so they are only unique per owner), consumed once."""
    return f"{PREFIX}:consent:{owner}:{code}"


def consent_used(owner: str, code: str) -> str:
    """String: set when a consent code was consumed, so a second use is told it was used."""
    return f"{PREFIX}:consent:{owner}:{code}:used"
