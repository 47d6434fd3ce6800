"""Dynamic batching: one thread owns the models and serves compatible requests with one model call.

A worker process runs Celery's threads pool: each task thread builds its job's :class:`GenRequest`,
hands it to the :class:`Batcher` (:meth:`Batcher.run`) and waits for its own :class:`Slot`. The
batcher thread takes the oldest waiting request and waits for compatible ones (same model, equal
``backend.batch_key``): until ``window_s`` has passed since the last of them arrived, so a burst
spread over a little more than one window still lands in one call, but never longer than
``max_wait_s`` after the oldest arrived, and not at all once ``max_batch`` requests are waiting (then
every task thread is busy and nothing more can come). It runs them as one
``generate_batch`` call of at most ``max_batch`` requests; requests whose backend has no batch key
(speech, melody, continuation, long-form) run alone with ``generate``. Each slot then gets its own
clip, and the task thread post-processes, watermarks and stores it itself.

Only the batcher thread touches models: :class:`~workers.backends.registry.ModelManager` loads them
lazily there and idle models are unloaded there, so CUDA is never used from another thread.

Guarantees kept:

* Progress of a call is published to every live slot of it; the waiting task thread reports it and
  checks its job's cancel flag (:meth:`Batcher.run`), so a cancelled job stops waiting at once while
  the batch goes on for the others. When every slot of a call is cancelled the call itself stops.
* An error of a call fails every slot of it with that error. A device out-of-memory error in a batch
  is retried as two halves (down to single requests) before the jobs fail with a clear message.
* The batcher holds no broker state: messages stay unacked until each task returns, so a worker that
  dies mid-batch gets every job of the batch redelivered (``acks_late`` + visibility timeout).
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Hashable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

from gen_server.audio import Audio
from gen_server.contract.catalog import ModelEntry
from gen_server.errors import GenerationFailed, JobCancelled, SoundryError, TransientError
from workers.backends.base import Backend, GenRequest, ProgressFn
from workers.backends.registry import ModelManager
from workers.memory import release_memory

logger = logging.getLogger(__name__)

ModelCallFn = Callable[[str, int], None]
"""Called once per model call with the model id and the number of requests it served."""

_UNSET: Any = object()


@runtime_checkable
class BatchingBackend(Protocol):
    """A backend that can serve several compatible requests with one call (audiocraft's)."""

    def batch_key(self, request: GenRequest) -> Hashable | None:
        """Requests with equal keys may share a call; ``None``: this one always runs alone."""

    def generate_batch(
        self, requests: Sequence[GenRequest], progress: ProgressFn | None = None
    ) -> list[Audio]:
        """One clip per request, in order, from one model call."""


@runtime_checkable
class RowBackend(Protocol):
    """A backend with step-level batching: requests join a running batch between decoding steps."""

    def joinable(self, request: GenRequest) -> bool:
        """Whether ``request`` can join a step-level batch (else window batching or alone)."""

    def row_session(self, max_rows: int) -> Any:
        """A new, empty step-level batch (``step()``, ``leave(row)``, ``audio(row)``)."""

    def join(self, session: Any, request: GenRequest) -> Any:
        """Add ``request`` to ``session``; returns its row (``progress``, ``most_rows``, ``joined_at``)."""


@dataclass(frozen=True, slots=True)
class Generated:
    """What one request gets back from the batcher.

    Attributes:
        audio: The request's own clip, ``[channels, frames]`` at the model's rate.
        batch_size: Requests served by the model call that made it (1: it ran alone).
        generation_s: Wall seconds of that model call.
    """

    audio: Audio
    batch_size: int
    generation_s: float


class Slot:
    """One request waiting for, or inside, a model call; the submitting thread waits on it.

    Attributes:
        entry: The catalog entry of the model to run.
        request: What to generate.
        job_id: For logs only.
        submitted_at: ``time.monotonic()`` when it reached the batcher.
        progress: Fraction of its model call done, in [0, 1] (written by the batcher thread).
    """

    def __init__(self, entry: ModelEntry, request: GenRequest, job_id: str = "") -> None:
        self.entry = entry
        self.request = request
        self.job_id = job_id
        self.submitted_at = time.monotonic()
        self.progress = 0.0
        self.key: Any = _UNSET  # batch key, computed once by the batcher thread
        self.joinable: bool | None = None  # can join a step-level batch (batcher thread, once)
        self._future: Future[Generated] = Future()
        self._cancelled = threading.Event()

    @property
    def cancelled(self) -> bool:
        return self._cancelled.is_set()

    def cancel(self) -> None:
        """Give up on this request: dropped if still waiting, its clip discarded if already running."""
        self._cancelled.set()

    def done(self) -> bool:
        return self._future.done()

    def result(self, timeout_s: float | None = None) -> Generated:
        """The clip, waiting up to ``timeout_s`` seconds.

        Raises:
            TimeoutError: Not done within ``timeout_s``.
            Exception: Whatever failed the model call serving this slot.
        """
        return self._future.result(timeout_s)

    def _resolve(self, generated: Generated) -> None:
        if not self._future.done():
            self._future.set_result(generated)

    def _fail(self, error: BaseException) -> None:
        if not self._future.done():
            self._future.set_exception(error)


class Batcher:
    """The one thread that runs models, batching compatible requests (see the module docstring).

    Args:
        models: Loads, pins and unloads backends; used only from the batcher thread.
        max_batch: Most requests one model call serves (>= 1).
        window_s: How long to wait for one more compatible request after the last one came, seconds.
        max_wait_s: Most the oldest request of a batch waits for others (default ``4 * window_s``).
        on_model_call: Called after every model call with the model id and its batch size.
        idle_check_s: While idle, how often to unload models unused for ``settings.model_idle_s``.
    """

    def __init__(
        self,
        models: ModelManager,
        *,
        max_batch: int,
        window_s: float,
        max_wait_s: float | None = None,
        on_model_call: ModelCallFn | None = None,
        idle_check_s: float = 30.0,
    ) -> None:
        if max_batch < 1:
            raise ValueError("max_batch must be at least 1")
        self.models = models
        self.max_batch = max_batch
        self.window_s = max(window_s, 0.0)
        self.max_wait_s = max(max_wait_s if max_wait_s is not None else 4 * self.window_s, self.window_s)
        self._on_model_call = on_model_call
        self._idle_check_s = idle_check_s
        self._pending: deque[Slot] = deque()
        self._cond = threading.Condition()
        self._stopping = False
        self._thread: threading.Thread | None = None

    # -- submitting side (any thread) -------------------------------------------------------------

    def start(self) -> Batcher:
        """Start the batcher thread; idempotent, and restarts a thread that died (logged as an error)."""
        with self._cond:
            if self._stopping:
                return self
            if self._thread is not None and not self._thread.is_alive():
                logger.error("the batcher thread had stopped; starting a new one")
                self._thread = None
            if self._thread is None:
                self._thread = threading.Thread(target=self._loop, name="soundry-batcher", daemon=True)
                self._thread.start()
        return self

    def stop(self, timeout_s: float = 30.0) -> None:
        """Finish the call in progress, fail waiting requests with TransientError, end the thread."""
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
        if self._thread is not None:
            self._thread.join(timeout_s)

    def submit(self, entry: ModelEntry, request: GenRequest, *, job_id: str = "") -> Slot:
        """Queue ``request`` for the batcher thread; returns the slot to wait on.

        Raises:
            TransientError: The batcher is stopping.
        """
        slot = Slot(entry, request, job_id)
        with self._cond:
            if self._stopping:
                raise TransientError("the worker is shutting down")
            self._pending.append(slot)
            self._cond.notify_all()
        self.start()
        return slot

    def run(
        self,
        entry: ModelEntry,
        request: GenRequest,
        progress: ProgressFn | None = None,
        *,
        job_id: str = "",
        tick_s: float = 0.25,
    ) -> Generated:
        """Submit ``request`` and wait for its clip, calling ``progress`` from this thread every tick.

        ``progress`` gets the fraction of the model call done (0 while waiting for the batcher) and
        finally 1.0; whatever it raises (``JobCancelled``) cancels this request only and propagates.

        Raises:
            SoundryError: The model call failed (every job of that call gets the same error).
        """
        slot = self.submit(entry, request, job_id=job_id)
        try:
            while True:
                try:
                    generated = slot.result(tick_s)
                except TimeoutError:
                    if progress is not None:
                        progress(slot.progress)
                    self.start()  # never wait on a dead thread (heartbeats would hold the job forever)
                    continue
                if progress is not None:
                    progress(1.0)
                return generated
        except BaseException:
            slot.cancel()
            with self._cond:
                self._cond.notify_all()
            raise

    # -- batcher thread ---------------------------------------------------------------------------

    def _loop(self) -> None:
        while True:
            with self._cond:
                head = self._pop_head()
                if head is None and not self._stopping:
                    self._cond.wait(self._idle_check_s)
                    head = self._pop_head()
                if self._stopping:
                    for slot in ([head] if head is not None else []) + list(self._pending):
                        slot._fail(TransientError("the worker is shutting down"))
                    self._pending.clear()
                    return
            if head is not None:
                try:
                    self._serve(head)
                except Exception as e:  # never let the thread die with slots waiting on it
                    logger.exception("batcher failed serving job %s", head.job_id)
                    head._fail(e)
            try:
                self.models.evict_idle()
            except Exception:
                logger.exception("unloading idle models failed")

    def _pop_head(self) -> Slot | None:
        """The oldest live waiting slot, removed from the queue (caller holds the lock)."""
        while self._pending:
            slot = self._pending.popleft()
            if not slot.cancelled:
                return slot
            self._drop(slot)
        return None

    @staticmethod
    def _drop(slot: Slot) -> None:
        slot._fail(JobCancelled(f"job '{slot.job_id}' was cancelled"))

    def _serve(self, head: Slot) -> None:
        with self.models.use(head.entry) as backend:
            if isinstance(backend, RowBackend) and self._joinable(backend, head):
                self._serve_rows(backend, head)
                return
            key = self._key(backend, head)
            group = [head] if key is None else self._gather(head, backend, key)
            live = [s for s in group if not s.cancelled]
            for slot in group:
                if slot.cancelled:
                    self._drop(slot)
            if live:
                if len(live) > 1:
                    logger.info(
                        "batching %d jobs on %s: %s", len(live), head.entry.id, [s.job_id for s in live]
                    )
                self._call(backend, live, batched=key is not None)

    def _joinable(self, backend: RowBackend, slot: Slot) -> bool:
        """Whether the slot can join a step-level batch on ``backend`` (cached on the slot)."""
        if slot.joinable is None:
            try:
                slot.joinable = self.max_batch > 1 and backend.joinable(slot.request)
            except Exception:  # an invalid request runs alone and fails there with its own error
                logger.debug("job %s cannot join a step-level batch", slot.job_id, exc_info=True)
                slot.joinable = False
        return slot.joinable

    def _serve_rows(self, backend: RowBackend, head: Slot) -> None:
        """Step-level batching: joinable slots of ``head``'s model join between decoding steps and
        leave when their clip is done or they are cancelled, until no row is left.

        Admission stops while a slot that cannot join (another model, or a request that runs alone)
        has waited longer than ``max_wait_s``, so a steady stream of joiners never starves it.
        """
        session = backend.row_session(self.max_batch)
        members: dict[Slot, Any] = {}
        served = 0
        joining = [head]
        try:
            while True:
                for slot in joining:
                    try:
                        members[slot] = backend.join(session, slot.request)
                        served += 1
                    except Exception as e:  # this request only (invalid input)
                        slot._fail(job_error(e))
                for slot in [s for s in members if s.cancelled]:
                    session.leave(members.pop(slot))
                    self._drop(slot)
                if not members:
                    break
                self._advance(session, members)
                joining = self._joiners(backend, head, len(members))
        except Exception as e:
            if is_out_of_memory(e):
                release_memory()
                e = GenerationFailed(
                    f"out of device memory decoding {len(members)} '{head.entry.id}' jobs step by step; run "
                    f"the worker with a smaller SOUNDRY_MAX_BATCH or more free device memory ({e})"
                )
            logger.exception("step-level batch on %s failed", head.entry.id)
            for slot in members:
                slot._fail(job_error(e))
        except BaseException as e:
            for slot in members:
                slot._fail(e)
            raise
        finally:
            if served:
                self._count(head.entry.id, served)

    @staticmethod
    def _advance(session: Any, members: dict[Slot, Any]) -> None:
        """One decoding step of every row; finished rows leave with their clip."""
        finished = session.step()
        for slot, row in members.items():
            slot.progress = row.progress
        for row in finished:
            slot = next(s for s, r in members.items() if r is row)
            del members[slot]
            session.leave(row)
            try:
                audio = session.audio(row)
            except Exception as e:
                slot._fail(job_error(e))
                continue
            slot._resolve(Generated(audio, row.most_rows, time.perf_counter() - row.joined_at))

    def _joiners(self, backend: RowBackend, head: Slot, members: int) -> list[Slot]:
        """Waiting slots that join the step-level batch of ``head``'s model now (removed from the queue)."""
        joining: list[Slot] = []
        now = time.monotonic()
        with self._cond:
            if self._stopping:
                return joining
            for slot in list(self._pending):
                if slot.cancelled:
                    self._pending.remove(slot)
                    self._drop(slot)
                elif (
                    slot.entry.id != head.entry.id or not self._joinable(backend, slot)
                ) and now - slot.submitted_at > self.max_wait_s:
                    return joining  # someone else's turn: let the batch drain
            for slot in list(self._pending):
                if members + len(joining) >= self.max_batch:
                    break
                if slot.entry.id == head.entry.id and self._joinable(backend, slot):
                    self._pending.remove(slot)
                    joining.append(slot)
        if joining:
            logger.info("%d job(s) join the step-level batch on %s", len(joining), head.entry.id)
        return joining

    def _key(self, backend: Backend, slot: Slot) -> Hashable | None:
        """The slot's batch key on ``backend`` (cached on the slot); ``None``: it runs alone."""
        if slot.key is _UNSET:
            key: Hashable | None = None
            if self.max_batch > 1 and isinstance(backend, BatchingBackend):
                try:
                    key = backend.batch_key(slot.request)
                except Exception:  # an invalid request runs alone and fails there with its own error
                    logger.debug("no batch key for job %s", slot.job_id, exc_info=True)
            slot.key = key
        result: Hashable | None = slot.key
        return result

    def _gather(self, head: Slot, backend: Backend, key: Hashable) -> list[Slot]:
        """``head`` plus compatible waiting slots, gathered until full or the window closes.

        The window closes ``window_s`` after the newest member arrived, and at the latest
        ``max_wait_s`` after ``head`` did.
        """
        group = [head]
        cap = head.submitted_at + self.max_wait_s
        deadline = min(head.submitted_at + self.window_s, cap)
        with self._cond:
            while True:
                for slot in list(self._pending):
                    if len(group) >= self.max_batch:
                        break
                    if slot.cancelled:
                        self._pending.remove(slot)
                        self._drop(slot)
                    elif slot.entry.id == head.entry.id and self._key(backend, slot) == key:
                        self._pending.remove(slot)
                        group.append(slot)
                        deadline = min(max(deadline, slot.submitted_at + self.window_s), cap)
                remaining = deadline - time.monotonic()
                if remaining <= 0 or self._stopping:
                    return group
                # full, or as many requests waiting as a batch holds: the worker's task threads are all
                # busy (one per max_batch), so nothing compatible can arrive; go now
                if len(group) + len(self._pending) >= self.max_batch:
                    return group
                self._cond.wait(remaining)

    def _call(self, backend: Backend, slots: Sequence[Slot], *, batched: bool) -> None:
        """One model call for ``slots``; resolves or fails each of them."""
        model_id = slots[0].entry.id

        def progress(fraction: float) -> None:
            for slot in slots:
                slot.progress = fraction
            if all(slot.cancelled for slot in slots):
                raise JobCancelled(f"every job of this {model_id} call was cancelled")

        started = time.perf_counter()
        try:
            if batched and len(slots) > 1 and isinstance(backend, BatchingBackend):
                clips = list(backend.generate_batch([s.request for s in slots], progress=progress))
            else:
                clips = [backend.generate(slots[0].request, progress=progress)]
        except Exception as e:
            self._count(model_id, len(slots))
            if is_out_of_memory(e):
                self._out_of_memory(backend, slots, e, batched=batched)
                return
            if isinstance(e, JobCancelled):
                logger.info("stopped a %s call: every job in it was cancelled", model_id)
            elif isinstance(e, SoundryError):
                logger.warning("%s call for %d job(s) failed: %s", model_id, len(slots), e.message)
            else:
                logger.exception("%s call for %d job(s) crashed", model_id, len(slots))
            for slot in slots:
                slot._fail(job_error(e))
            return
        except BaseException as e:
            for slot in slots:
                slot._fail(e)
            raise
        elapsed = time.perf_counter() - started
        self._count(model_id, len(slots))
        if len(clips) != len(slots):
            for slot in slots:
                slot._fail(
                    GenerationFailed(f"{model_id} returned {len(clips)} clips for {len(slots)} requests")
                )
            return
        for slot, clip in zip(slots, clips, strict=True):
            slot._resolve(Generated(clip, len(slots), elapsed))

    def _out_of_memory(
        self, backend: Backend, slots: Sequence[Slot], error: Exception, *, batched: bool
    ) -> None:
        release_memory()
        if len(slots) > 1:
            half = len(slots) // 2
            logger.warning(
                "out of device memory with a batch of %d on %s; retrying as batches of %d and %d",
                len(slots),
                slots[0].entry.id,
                half,
                len(slots) - half,
            )
            for part in (slots[:half], slots[half:]):
                live = [s for s in part if not s.cancelled]
                for slot in part:
                    if slot.cancelled:
                        self._drop(slot)
                if live:
                    self._call(backend, live, batched=batched)
            return
        failure = GenerationFailed(
            f"out of device memory running '{slots[0].entry.id}' even for this job alone; ask for a shorter "
            f"duration, or run the worker with more free device memory ({type(error).__name__}: {error})"
        )
        failure.__cause__ = error
        slots[0]._fail(failure)

    def _count(self, model_id: str, size: int) -> None:
        if self._on_model_call is None:
            return
        try:
            self._on_model_call(model_id, size)
        except Exception:  # statistics must never fail a job
            logger.exception("recording a model call failed")


def job_error(error: Exception) -> Exception:
    """A fresh exception for one job of a failed call (jobs raise in their own threads).

    A :class:`SoundryError` keeps its class, message and field; anything else becomes
    ``GenerationFailed("<Type>: <message>")``. The original is the ``__cause__``.
    """
    copy: Exception
    if isinstance(error, SoundryError):
        try:
            copy = type(error)(error.message, field=error.field)
        except TypeError:  # a subclass with another constructor
            copy = GenerationFailed(error.message, field=error.field)
    else:
        copy = GenerationFailed(f"{type(error).__name__}: {error}")
    copy.__cause__ = error
    return copy


def is_out_of_memory(error: BaseException) -> bool:
    """Whether ``error`` is a device out-of-memory error (``torch.cuda.OutOfMemoryError`` and kin)."""
    return type(error).__name__ == "OutOfMemoryError" or "out of memory" in str(error).lower()
