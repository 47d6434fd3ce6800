"""A stereo MusicGen job through the real queue: serve -> Redis -> Celery worker -> 2-channel file."""

from __future__ import annotations

import numpy as np
import pytest

from gen_server.client import SoundryClient
from tests.helpers import assert_sound, read_wav

pytestmark = pytest.mark.e2e


def test_stereo_musicgen_job_gives_a_two_channel_wav(client: SoundryClient) -> None:
    seconds = 2.0
    job, data = client.generate(
        {
            "kind": "music",
            "model": "dev-musicgen-stereo-tiny",
            "prompt": "wide synth pad",
            "duration_s": seconds,
            "seed": 5,
        },
        timeout_s=300,
    )
    assert job["result"]["channels"] == 2
    samples, rate = read_wav(data)  # [frames, channels]
    assert samples.shape[1] == 2
    assert_sound(samples, rate, expect_rate=32000, expect_s=seconds)
    left, right = (samples[:, ch].astype(np.float64) for ch in range(2))
    left, right = left - left.mean(), right - right.mean()
    side = float(np.sqrt(np.mean((left - right) ** 2)) / np.sqrt(np.mean(left**2)))
    # measured for 2 s jobs through the worker pipeline (post chain, watermark, WAV), seeds 0-19:
    # 0.094-0.100 (threshold 0.02)
    assert side > 0.02, f"left and right are (nearly) the same signal: side/left rms {side:.4f}"
