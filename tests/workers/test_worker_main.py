"""How many jobs a worker process holds at once, by the queues it consumes."""

from __future__ import annotations

import pytest

from workers.__main__ import SPEECH_THREADS, task_threads


@pytest.mark.parametrize(
    ("queues", "max_batch", "threads"),
    [
        ("speech,sfx,music", 8, 8),
        ("music", 8, 8),
        ("sfx, speech", 4, 4),
        ("speech", 8, SPEECH_THREADS),
        ("speech", 1, 1),
    ],
)
def test_speech_only_workers_hold_few_jobs(queues: str, max_batch: int, threads: int) -> None:
    assert task_threads(queues, max_batch) == threads
