"""Step-level batching (workers/backends/_audiocraft_rows.py) on the tiny models, through the batcher.

A job's clip must not depend on the rows beside it, on when it joined, or on rows leaving: every
test compares with the same request generated alone (``generate``, the static decoder, batch 1).
The paced tiny MusicGen (``SOUNDRY_DEV_STEP_MS``) makes each step last at least ``STEP_MS``, so a
job is still decoding when the test acts, on any CPU.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest

from gen_server.audio import Audio
from gen_server.contract.catalog import ModelEntry
from gen_server.errors import JobCancelled
from gen_server.settings import Settings
from workers.backends.audiogen import AudioGenBackend
from workers.backends.base import GenRequest
from workers.backends.musicgen import MusicGenBackend
from workers.backends.registry import ModelManager
from workers.batcher import Batcher, Generated

MUSIC = "dev-musicgen-tiny"
STEP_MS = 15.0


def music(prompt: str, seed: int, duration_s: float, **kw: Any) -> GenRequest:
    return GenRequest(prompt, seed=seed, duration_s=duration_s, **{"top_k": 50, **kw})


@pytest.fixture(scope="module")
def rows_settings(worker_settings: Settings) -> Settings:
    return worker_settings.model_copy(update={"step_batching": True, "dev_step_ms": STEP_MS})


@pytest.fixture(scope="module")
def paced(rows_settings: Settings, dev_entries: dict[str, ModelEntry]) -> Iterator[MusicGenBackend]:
    backend = MusicGenBackend(dev_entries[MUSIC], rows_settings)
    backend.load()
    yield backend
    backend.unload()


@pytest.fixture
def batcher(rows_settings: Settings, paced: MusicGenBackend) -> Iterator[tuple[Batcher, list[int]]]:
    sizes: list[int] = []
    models = ModelManager(rows_settings, factory=lambda _entry, _settings: paced)
    made = Batcher(models, max_batch=4, window_s=0.05, on_model_call=lambda _m, n: sizes.append(n)).start()
    yield made, sizes
    made.stop()


def test_a_job_joins_a_running_batch_and_leaves_when_done(
    batcher: tuple[Batcher, list[int]], paced: MusicGenBackend, dev_entries: dict[str, ModelEntry]
) -> None:
    run, sizes = batcher
    entry = dev_entries[MUSIC]
    long = music("warm lofi piano", seed=3, duration_s=2.0)  # >= 103 steps x 15 ms
    short = music("rock drums", seed=4, duration_s=0.5, top_k=20, temperature=0.8)
    first = run.submit(entry, long, job_id="long")
    deadline = time.monotonic() + 60
    while first.progress < 0.2:  # the long job is decoding
        assert time.monotonic() < deadline and not first.done()
        time.sleep(0.01)
    second = run.submit(entry, short, job_id="short")
    joined = second.result(60)
    assert not first.done(), "the short job waited for the long one instead of joining it"
    done = first.result(60)
    assert joined.batch_size == 2 and done.batch_size == 2
    while not sizes and time.monotonic() < deadline:  # counted once the batch has emptied
        time.sleep(0.01)
    assert sizes == [2]  # one step-level batch served both
    np.testing.assert_array_equal(done.audio.samples, paced.generate(long).samples)
    np.testing.assert_array_equal(joined.audio.samples, paced.generate(short).samples)


def test_a_cancelled_row_leaves_and_the_others_are_untouched(
    batcher: tuple[Batcher, list[int]], paced: MusicGenBackend, dev_entries: dict[str, ModelEntry]
) -> None:
    run, _ = batcher
    entry = dev_entries[MUSIC]
    requests = [music(p, seed=10 + i, duration_s=1.0) for i, p in enumerate(("a", "bb cc", "d"))]
    results: dict[int, Generated | BaseException] = {}

    def one(i: int, cancel_at: float | None) -> None:
        def progress(fraction: float) -> None:
            if cancel_at is not None and fraction >= cancel_at:
                raise JobCancelled("cancelled by the test")

        try:
            results[i] = run.run(entry, requests[i], progress, job_id=f"job-{i}", tick_s=0.02)
        except BaseException as e:
            results[i] = e

    threads = [threading.Thread(target=one, args=(i, 0.3 if i == 1 else None)) for i in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert isinstance(results[1], JobCancelled)
    for i in (0, 2):
        got = results[i]
        assert isinstance(got, Generated), got
        np.testing.assert_array_equal(got.audio.samples, paced.generate(requests[i]).samples)


def test_arrival_order_does_not_change_any_clip(
    paced: MusicGenBackend, worker_settings: Settings, dev_entries: dict[str, ModelEntry]
) -> None:
    """Rows joined in either order, at different steps, with different text lengths and parameters."""
    backend = MusicGenBackend(dev_entries[MUSIC], worker_settings.model_copy(update={"step_batching": True}))
    backend.load()
    try:
        a = music("one", seed=1, duration_s=0.6)
        b = music("two longer words here", seed=2, duration_s=0.4, top_p=0.9)
        clips: list[dict[str, Any]] = []
        for order in ((a, b), (b, a)):
            session = backend.row_session(4)
            rows = {id(order[0]): backend.join(session, order[0])}
            for _ in range(5):
                session.step()
            rows[id(order[1])] = backend.join(session, order[1])
            done: dict[int, Any] = {}
            while len(done) < 2:
                for row in session.step():
                    session.leave(row)
                    done[next(k for k, r in rows.items() if r is row)] = session.audio(row)
            clips.append(done)
        for request in (a, b):
            expected = backend.generate(request).samples
            for done in clips:
                np.testing.assert_array_equal(done[id(request)].samples, expected)
    finally:
        backend.unload()


def test_audiogen_rows_grow_and_stream(worker_settings: Settings, dev_entries: dict[str, ModelEntry]) -> None:
    """Buffers grow (more rows, a longer clip) keeping their contents; streamed pieces join to the clip."""
    backend = AudioGenBackend(
        dev_entries["dev-audiogen-tiny"], worker_settings.model_copy(update={"step_batching": True})
    )
    backend.load()
    try:
        pieces: list[Audio] = []
        first = GenRequest("rain", seed=5, duration_s=0.5, top_k=50)
        streamed = GenRequest("door", seed=6, duration_s=3.0, top_k=50, on_audio=lambda s: pieces.append(s))
        session = backend.row_session(4)
        row_a = backend.join(session, first)
        session.step()
        capacity = session.buffers.capacity
        row_b = backend.join(session, streamed)  # two slots now, and a longer clip
        assert session.buffers.rows == 4 and session.buffers.capacity > capacity
        out: dict[int, Any] = {}
        while len(out) < 2:
            for row in session.step():
                session.leave(row)
                out[id(row)] = session.audio(row)
        np.testing.assert_array_equal(out[id(row_a)].samples, backend.generate(first).samples)
        clip = out[id(row_b)].samples
        np.testing.assert_array_equal(
            clip, backend.generate(GenRequest("door", seed=6, duration_s=3.0, top_k=50)).samples
        )
        joined = np.concatenate([p.samples for p in pieces], axis=-1)
        assert joined.shape == clip.shape
        assert np.abs(joined - np.clip(clip, -1, 1)).max() < 1e-4
    finally:
        backend.unload()
