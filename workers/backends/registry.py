"""One registry of backend factories, and the manager that keeps loaded models under a memory budget."""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from gen_server.contract.catalog import Family, ModelEntry
from gen_server.settings import Settings
from workers.backends.audiogen import AudioGenBackend
from workers.backends.base import Backend
from workers.backends.coqui import CoquiBackend
from workers.backends.kokoro import KokoroBackend
from workers.backends.musicgen import MusicGenBackend
from workers.backends.piper import PiperBackend
from workers.backends.stable_audio import StableAudioBackend
from workers.memory import release_memory, rss_bytes

logger = logging.getLogger(__name__)

BackendFactory = Callable[[ModelEntry, Settings], Backend]

FACTORIES: dict[Family, BackendFactory] = {
    "musicgen": MusicGenBackend,
    "audiogen": AudioGenBackend,
    "coqui": CoquiBackend,
    "piper": PiperBackend,
    "kokoro": KokoroBackend,
    "stable_audio": StableAudioBackend,
}


def create_backend(entry: ModelEntry, settings: Settings) -> Backend:
    """A new, not yet loaded backend for ``entry``, chosen by ``entry.family``.

    Raises:
        ValueError: No backend serves the family.
    """
    try:
        factory = FACTORIES[entry.family]
    except KeyError:
        raise ValueError(
            f"no backend for family '{entry.family}' of '{entry.id}'; known: {', '.join(FACTORIES)}"
        ) from None
    return factory(entry, settings)


@dataclass(slots=True)
class _Loaded:
    backend: Backend
    bytes: int
    last_used: float
    users: int = 0


class ModelManager:
    """Loaded backends in LRU order under a memory budget, unloaded after idling.

    * :meth:`get` loads lazily; one model is never loaded twice at once (a lock per model id), while
      different models may load in parallel.
    * A backend's size is its own ``memory_bytes()`` estimate when it has one (parameter bytes),
      else the growth of the process RSS while it loaded.
    * After each load, least recently used models are unloaded until the total fits
      ``settings.model_memory_gb``; a model whose size is known from an earlier load makes room
      before it loads. Models in use (:meth:`use`) are never unloaded; the model just loaded stays
      even when it alone exceeds the budget (with a warning).
    * :meth:`evict_idle` (called by the worker loop; no background thread) unloads models unused
      for ``settings.model_idle_s``.

    Args:
        settings: Budget, idle time and everything backends need.
        factory: Builds a backend for an entry (tests pass fakes).
        clock: Monotonic seconds, for last-use times.
    """

    def __init__(
        self,
        settings: Settings,
        *,
        factory: BackendFactory = create_backend,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.settings = settings
        self._factory = factory
        self._clock = clock
        self._budget = int(settings.model_memory_gb * 1024**3)
        self._loaded: OrderedDict[str, _Loaded] = OrderedDict()  # oldest use first
        self._known_bytes: dict[str, int] = {}
        self._lock = threading.RLock()
        self._load_locks: dict[str, threading.Lock] = {}

    # -- queries -----------------------------------------------------------------------------------

    @property
    def budget_bytes(self) -> int:
        return self._budget

    def loaded_ids(self) -> list[str]:
        """Ids of loaded models, least recently used first."""
        with self._lock:
            return list(self._loaded)

    def used_bytes(self) -> int:
        """Estimated bytes held by all loaded models."""
        with self._lock:
            return sum(item.bytes for item in self._loaded.values())

    # -- loading -----------------------------------------------------------------------------------

    def get(self, entry: ModelEntry) -> Backend:
        """The loaded backend for ``entry``, loading it first if needed; marks it used now.

        Raises:
            ModelUnavailable: (from the backend) weights are missing and cannot be downloaded.
        """
        return self._get(entry, pin=False)

    @contextlib.contextmanager
    def use(self, entry: ModelEntry) -> Iterator[Backend]:
        """``get(entry)``, pinned against eviction until the block ends."""
        backend = self._get(entry, pin=True)
        try:
            yield backend
        finally:
            with self._lock:
                item = self._loaded.get(entry.id)
                if item is not None and item.backend is backend:
                    item.users -= 1
                    item.last_used = self._clock()

    def _get(self, entry: ModelEntry, *, pin: bool) -> Backend:
        with self._lock:
            item = self._touch(entry.id, pin=pin)
            if item is not None:
                return item.backend
            load_lock = self._load_locks.setdefault(entry.id, threading.Lock())
        with load_lock:
            with self._lock:
                item = self._touch(entry.id, pin=pin)
                if item is not None:
                    return item.backend
                known = self._known_bytes.get(entry.id)
                if known is not None:
                    self._evict_for(known, keep=entry.id)
            backend = self._factory(entry, self.settings)
            before = rss_bytes()
            backend.load()
            release_memory()  # the checkpoint's freed read buffers, back to the OS
            size = self._measure(backend, rss_bytes() - before)
            with self._lock:
                self._loaded[entry.id] = _Loaded(backend, size, self._clock(), users=1 if pin else 0)
                self._known_bytes[entry.id] = size
                logger.info("loaded %s (~%.1f MB)", entry.id, size / 1e6)
                self._evict_for(0, keep=entry.id)
            return backend

    @staticmethod
    def _measure(backend: Backend, rss_delta: int) -> int:
        estimate = getattr(backend, "memory_bytes", None)
        if callable(estimate):
            try:
                value = int(estimate())
            except Exception:  # an estimate must never fail a load
                logger.exception("memory_bytes() failed for %s", backend.entry.id)
                value = 0
            if value > 0:
                return value
        return max(rss_delta, 0)

    def _touch(self, model_id: str, *, pin: bool = False) -> _Loaded | None:
        item = self._loaded.get(model_id)
        if item is not None:
            item.last_used = self._clock()
            self._loaded.move_to_end(model_id)
            if pin:
                item.users += 1
        return item

    # -- unloading ---------------------------------------------------------------------------------

    def _evict_for(self, incoming: int, *, keep: str) -> list[str]:
        """Unload LRU models (not ``keep``, not in use) until ``incoming`` more bytes fit the budget."""
        evicted: list[str] = []
        for model_id in list(self._loaded):
            if self.used_bytes() + incoming <= self._budget:
                break
            item = self._loaded[model_id]
            if model_id == keep or item.users > 0:
                continue
            self._unload_locked(model_id)
            evicted.append(model_id)
        if self.used_bytes() + incoming > self._budget:
            logger.warning(
                "models use ~%.1f GB, over the %.1f GB budget (in use or too large to evict)",
                (self.used_bytes() + incoming) / 1024**3,
                self._budget / 1024**3,
            )
        return evicted

    def _unload_locked(self, model_id: str) -> None:
        item = self._loaded.pop(model_id)
        try:
            item.backend.unload()
        finally:
            release_memory()
        logger.info("unloaded %s", model_id)

    def evict_idle(self, now: float | None = None) -> list[str]:
        """Unload models not used for ``settings.model_idle_s`` seconds.

        Args:
            now: The current time on the manager's clock (``time.monotonic`` by default).

        Returns:
            Ids unloaded.
        """
        now = self._clock() if now is None else now
        with self._lock:
            idle = [
                model_id
                for model_id, item in self._loaded.items()
                if item.users == 0 and now - item.last_used >= self.settings.model_idle_s
            ]
            for model_id in idle:
                self._unload_locked(model_id)
        return idle

    def unload(self, model_id: str) -> bool:
        """Unload one model now (unless in use); whether it was unloaded."""
        with self._lock:
            item = self._loaded.get(model_id)
            if item is None or item.users > 0:
                return False
            self._unload_locked(model_id)
            return True

    def unload_all(self) -> None:
        """Unload every model not in use (worker shutdown)."""
        with self._lock:
            for model_id in [m for m, item in self._loaded.items() if item.users == 0]:
                self._unload_locked(model_id)
