"""Redis key names shared by the API and the workers (one place, so they never drift)."""

PREFIX = "soundry"


def job(job_id: str) -> str:
    """Hash: spec, owner, created_at, started_at, finished_at, error, cancelled, attempts."""
    return f"{PREFIX}:job:{job_id}"


def cancel(job_id: str) -> str:
    """Flag set by a cancel request; a running job checks it at every progress step."""
    return f"{PREFIX}:cancel:{job_id}"


def attempts(job_id: str) -> str:
    return f"{PREFIX}:attempts:{job_id}"


ALL_JOBS = f"{PREFIX}:jobs"


def owner_jobs(owner: str) -> str:
    return f"{PREFIX}:jobs:owner:{owner}"


def active_jobs(owner: str) -> str:
    """Set of an owner's job ids that may still be queued or running (pruned on read)."""
    return f"{PREFIX}:active:{owner}"


def idempotency(owner: str, key: str) -> str:
    return f"{PREFIX}:idem:{owner}:{key}"
