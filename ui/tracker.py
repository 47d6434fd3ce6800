"""Following jobs for the UI: one event stream per running job, shared by every browser session.

Each in-flight job gets a daemon thread that reads the API's server-sent events through the client
(``SoundryClient.events``), falling back to polling ``get`` where the stream is unavailable. Browser
sessions then read the latest view from memory on every UI tick, so a page that refreshes twice a
second costs the API nothing per tick (API keys are rate limited). Views are kept per API key, so a
session only ever sees what its own key fetched.
"""

from __future__ import annotations

import hashlib
import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Sequence
from typing import Any

import httpx

from gen_server.client import TERMINAL_STATES, ApiError, SoundryClient
from gen_server.contract.result import JobView

logger = logging.getLogger(__name__)

Job = dict[str, Any]
"""A job as the page shows it: the client's :class:`JobView` in its JSON form (the page renders it and
hands it to the browser), or :func:`missing`'s stand-in."""
# A job the API no longer knows (expired, or another key's): shown once, never followed.
MISSING = "missing"


def key_id(api_key: str | None) -> str:
    """A short, non-reversible name for an API key (``local`` when there is none)."""
    key = (api_key or "").strip()
    return hashlib.sha256(key.encode()).hexdigest()[:16] if key else "local"


def missing(job_id: str, error: ApiError) -> Job:
    """Stand-in view of a job the API does not know (any more)."""
    return {
        "id": job_id,
        "state": MISSING,
        "progress": 0.0,
        "error": {"code": error.code, "message": error.message},
    }


def is_done(job: Job) -> bool:
    return job.get("state") in (*TERMINAL_STATES, MISSING)


class ClientPool:
    """One :class:`SoundryClient` per API key (bounded, least recently used closed first)."""

    def __init__(self, base: SoundryClient, max_clients: int = 64) -> None:
        self.base = base
        self._max = max_clients
        self._clients: OrderedDict[str, SoundryClient] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, api_key: str | None) -> SoundryClient:
        key = (api_key or "").strip()
        if not key:
            return self.base
        name = key_id(key)
        with self._lock:
            client = self._clients.get(name)
            if client is None:
                client = self.base.with_key(key)
                self._clients[name] = client
                while len(self._clients) > self._max:
                    _, old = self._clients.popitem(last=False)
                    old.close()
            self._clients.move_to_end(name)
            return client


class JobTracker:
    """Latest known view of each job, kept fresh by background watchers.

    Args:
        pool: Clients per API key.
        poll_s: Polling interval where the event stream is unavailable, in seconds.
        idle_stop_s: Stop following a job nobody has looked at for this long, in seconds.
        max_jobs: Views kept in memory (oldest dropped first).
        positions_every_s: Minimum interval between queue-position look-ups per key, in seconds.
    """

    def __init__(
        self,
        pool: ClientPool,
        *,
        poll_s: float = 1.0,
        idle_stop_s: float = 1800.0,
        max_jobs: int = 5000,
        positions_every_s: float = 2.0,
    ) -> None:
        self.pool = pool
        self.poll_s = poll_s
        self.idle_stop_s = idle_stop_s
        self.max_jobs = max_jobs
        self.positions_every_s = positions_every_s
        self._views: OrderedDict[tuple[str, str], Job] = OrderedDict()
        self._seen: dict[tuple[str, str], float] = {}
        self._threads: dict[tuple[str, str], threading.Thread] = {}
        self._positions: dict[str, tuple[float, dict[str, int]]] = {}
        self._lock = threading.Lock()

    def _put(self, slot: tuple[str, str], job: Job) -> None:
        with self._lock:
            self._views[slot] = job
            self._views.move_to_end(slot)
            while len(self._views) > self.max_jobs:
                old, _ = self._views.popitem(last=False)
                self._seen.pop(old, None)

    def track(self, api_key: str | None, view: JobView | Job) -> Job:
        """Start following a job (a view the API returned, e.g. from ``submit``) for ``api_key``; the
        job as the page shows it."""
        job = view.public() if isinstance(view, JobView) else view
        slot = (key_id(api_key), str(job["id"]))
        self._put(slot, job)
        self._seen[slot] = time.monotonic()
        if not is_done(job):
            self._follow(api_key, slot)
        return job

    def view(self, api_key: str | None, job_id: str) -> Job:
        """The latest view of ``job_id`` as ``api_key`` sees it (fetched once if not yet known)."""
        slot = (key_id(api_key), job_id)
        self._seen[slot] = time.monotonic()
        with self._lock:
            known = self._views.get(slot)
        if known is not None:
            if not is_done(known):
                self._follow(api_key, slot)
            return known
        try:
            return self.track(api_key, self.pool.get(api_key).get(job_id))
        except ApiError as e:
            if e.status != 404:
                raise
            return self.track(api_key, missing(job_id, e))

    def _follow(self, api_key: str | None, slot: tuple[str, str]) -> None:
        with self._lock:
            running = self._threads.get(slot)
            if running is not None and running.is_alive():
                return
            thread = threading.Thread(
                target=self._watch, args=(api_key, slot), name=f"soundry-ui-watch-{slot[1][:8]}", daemon=True
            )
            self._threads[slot] = thread
        thread.start()

    def _watch(self, api_key: str | None, slot: tuple[str, str]) -> None:
        """Follow one job until it ends, nobody looks at it any more, or the API refuses us."""
        client = self.pool.get(api_key)
        job_id = slot[1]
        use_events = True
        while time.monotonic() - self._seen.get(slot, 0.0) < self.idle_stop_s:
            try:
                if use_events:
                    for view in client.events(job_id, read_timeout_s=60.0):
                        self._put(slot, view.public())
                        if view.state in TERMINAL_STATES:
                            return
                    continue
                view = client.get(job_id)
                self._put(slot, view.public())
                if view.state in TERMINAL_STATES:
                    return
                time.sleep(self.poll_s)
            except ApiError as e:
                if e.status == 429:
                    time.sleep(5.0)
                elif e.status == 404 and e.field == "job_id":  # the job itself is gone
                    self._put(slot, missing(job_id, e))
                    return
                elif use_events and e.status in (404, 405, 501):
                    use_events = False  # an API without the events route: poll instead
                else:
                    logger.warning("ui: stop following job %s: %s", job_id, e)
                    return
            except (httpx.HTTPError, ValueError) as e:
                logger.debug("ui: event stream of %s interrupted (%s); resuming", job_id, e)
                time.sleep(1.0)
        logger.debug("ui: nobody is watching job %s any more", job_id)

    def positions(self, api_key: str | None, wanted: Sequence[str] = ()) -> dict[str, int]:
        """Queue position (1 = next) of each queued job the key can see, per queue (kind).

        Counts only jobs the key may list: on a keyless server that is every job; with API keys it
        is the key's own jobs. Refreshed at most every ``positions_every_s`` per key, or sooner (at
        most every 0.5 s) when a ``wanted`` job is not in the last answer (it was just submitted).
        """
        name = key_id(api_key)
        now = time.monotonic()
        cached = self._positions.get(name)
        if cached is not None:
            age = now - cached[0]
            missing = any(job_id not in cached[1] for job_id in wanted)
            if age < (0.5 if missing else self.positions_every_s):
                return cached[1]
        try:
            queued = self.pool.get(api_key).list(state="queued", limit=200)
        except (ApiError, httpx.HTTPError) as e:
            logger.debug("ui: queue positions unavailable: %s", e)
            return cached[1] if cached else {}
        positions: dict[str, int] = {}
        counters: dict[str, int] = {}
        for job in sorted(queued, key=lambda j: j.created_at):
            counters[job.kind] = counters.get(job.kind, 0) + 1
            positions[job.id] = counters[job.kind]
        self._positions[name] = (now, positions)
        return positions
