"""One real ``soundry serve`` shared by the UI suites (gradio_client and browser) within a session.

Both suites' session fixtures enter :func:`shared_server`; the first starts the server (embedded
Redis + worker + API + UI, dev models on) and the last one out stops it, so a run of both suites
pays for one start-up and one warm worker.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

import pytest

from gen_server.client import SoundryClient
from tests.helpers import running_server

DEV_STEP_MS = 50.0
"""Least time per decoding step of the tiny music/sfx models on the shared server (``SOUNDRY_DEV_STEP_MS``):
a job that a test watches run (live progress, a second job queued behind it) lasts as long as the test
needs on any CPU, not as long as this CPU happens to take."""
MUSIC_STEPS_PER_S = 50
"""Decoding steps per second of audio of the tiny MusicGen (like the real one)."""


def paced_music_s(at_least_s: float) -> float:
    """A tiny-MusicGen clip length (seconds) whose decoding on the shared server lasts >= ``at_least_s``."""
    return at_least_s / (DEV_STEP_MS / 1000) / MUSIC_STEPS_PER_S


# Queued at start-up so the worker imports audiocraft while the first tests run (one job at a time).
WARM_UP = {"kind": "music", "model": "dev-musicgen-tiny", "prompt": "warm-up", "duration_s": 0.5, "seed": 1}


class _Shared:
    lock = threading.Lock()
    users = 0
    url: str | None = None
    data_dir: Path | None = None
    stack: ExitStack | None = None


@contextmanager
def shared_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The base URL of the session's shared server (started on first use)."""
    with _Shared.lock:
        if _Shared.url is None:
            stack = ExitStack()
            _Shared.data_dir = tmp_path_factory.mktemp("soundry-ui")
            # One worker thread (no dynamic batching), so a second job visibly waits in the queue;
            # paced decoding steps, so music jobs last by construction (see DEV_STEP_MS); one torch
            # thread, as in tests/e2e (two OpenMP threads spin against each other on a busy machine).
            _Shared.url = stack.enter_context(
                running_server(
                    _Shared.data_dir,
                    SOUNDRY_MAX_BATCH="1",
                    SOUNDRY_DEV_STEP_MS=str(DEV_STEP_MS),
                    OMP_NUM_THREADS="1",
                    # a single-user install: the Speech tab clones raw uploads (test_endpoints)
                    SOUNDRY_CLONING="open",
                )
            )
            _Shared.stack = stack
            client = SoundryClient(_Shared.url)
            client.submit(WARM_UP)
            client.close()
        _Shared.users += 1
        url = _Shared.url
    try:
        yield url
    finally:
        with _Shared.lock:
            _Shared.users -= 1
            if _Shared.users == 0 and _Shared.stack is not None:
                _Shared.stack.close()
                _Shared.url, _Shared.stack, _Shared.data_dir = None, None, None


def shared_data_dir() -> Path:
    """The shared server's ``SOUNDRY_DATA_DIR`` (while it runs)."""
    if _Shared.data_dir is None:
        raise RuntimeError("the shared server is not running")
    return _Shared.data_dir
