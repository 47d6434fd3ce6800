"""Located detection (``KeyedWatermarker.locate``) on real recordings.

* A marked clip (real music, speech or sparse effects, 4-12 s, each marked with the plan its job kind
  gets) spliced at a random offset into a
  longer unmarked real recording (music or speech, 40 s): the span carrying its payload must start
  and end within 0.5 s of the clip's ends in >= 90 % of trials. A clip of sparse effects is trimmed
  to start and end with sound (silence carries no mark, so it cannot be located).
* Two clips with different payloads in sequence inside a recording: both payloads are reported,
  each span within 0.5 s of its clip.
* Unmarked recordings report no span.

The tables are printed with capture disabled (CI logs show them); ``SOUNDRY_WATERMARK_TRIALS=full``
runs more trials and times a 10-minute file.
"""

from __future__ import annotations

import os
import time

import numpy as np
import numpy.typing as npt
import pytest

from gen_server.audio.postprocess import resample
from gen_server.audio.types import Audio
from gen_server.audio.watermark import KeyedWatermarker, Span, bands_for
from tests.gen_server import watermark_audio

FloatArray = npt.NDArray[np.float64]

FULL = os.environ.get("SOUNDRY_WATERMARK_TRIALS") == "full"
TRIALS = 60 if FULL else 15
PAIRS = 20 if FULL else 4
UNMARKED = 40 if FULL else 5
TOLERANCE_S = 0.5
RATE = 16000

pytestmark = [pytest.mark.timeout(900), pytest.mark.slow]


@pytest.fixture(scope="module")
def marker() -> KeyedWatermarker:
    watermark_audio.require_all()
    return KeyedWatermarker(b"located-test-key")


def _host(rng: np.random.Generator, seconds: float) -> FloatArray:
    x, sr = (watermark_audio.real_speech if rng.random() < 0.5 else watermark_audio.real_music)(rng, seconds)
    return resample(Audio.mono(x, sr), RATE).samples[0].astype(np.float64)


def _clip(rng: np.random.Generator, kind: str) -> tuple[FloatArray, int]:
    seconds = float(rng.uniform(4.0, 12.0))
    if kind == "music":
        return watermark_audio.real_music(rng, seconds)
    if kind == "speech":
        return watermark_audio.real_speech(rng, seconds)
    x, sr = watermark_audio.sparse_effects(rng, seconds)
    loud = np.flatnonzero(np.abs(x) > 1e-3 * np.max(np.abs(x)))
    return x[loud[0] : loud[-1] + 1], sr


def _marked(marker: KeyedWatermarker, rng: np.random.Generator, kind: str, payload: int) -> FloatArray:
    x, sr = _clip(rng, kind)
    out = marker.embed(Audio.mono(x, sr), payload, bands=bands_for("sfx" if kind == "effects" else kind))
    return resample(out, RATE).samples[0].astype(np.float64)


def _within(spans: list[Span], payload: int, t0: float, t1: float) -> bool:
    mine = [s for s in spans if s.payload == payload]
    return (
        len(mine) == 1 and abs(mine[0].start_s - t0) <= TOLERANCE_S and abs(mine[0].end_s - t1) <= TOLERANCE_S
    )


def test_clip_inside_a_recording_is_located(
    marker: KeyedWatermarker, capsys: pytest.CaptureFixture[str]
) -> None:
    kinds = ("music", "speech", "effects")
    hits: dict[str, list[bool]] = {k: [] for k in kinds}
    errors: list[float] = []
    seconds = 0.0  # CPU time of locate (wall time on shared runners says little)
    for i in range(TRIALS):
        rng = np.random.default_rng(80_000 + i)
        kind = kinds[i % len(kinds)]
        payload = int(rng.integers(0, 2**32))
        clip = _marked(marker, rng, kind, payload)
        host = _host(rng, 40.0)
        clip *= np.sqrt(np.mean(host**2) / np.mean(clip**2)) * rng.uniform(0.5, 1.5)  # a mixer's level
        at = int(rng.integers(0, host.size))
        audio = np.concatenate([host[:at], clip, host[at:]])
        t = time.process_time()
        spans = marker.locate(Audio.mono(audio, RATE))
        seconds += time.process_time() - t
        t0, t1 = at / RATE, (at + clip.size) / RATE
        hits[kind].append(_within(spans, payload, t0, t1))
        errors += [abs(s.start_s - t0) for s in spans if s.payload == payload]
        errors += [abs(s.end_s - t1) for s in spans if s.payload == payload]
        assert all(s.payload == payload for s in spans), spans  # nothing else is reported
    everything = [h for v in hits.values() for h in v]
    with capsys.disabled():
        print("\nlocated detection: clip spliced into a 40 s unmarked recording, boundaries within 0.5 s:")
        for kind, v in hits.items():
            print(f"  {kind:8s} {100 * np.mean(v):5.1f} % of {len(v)}")
        print(
            f"  all      {100 * np.mean(everything):5.1f} % of {len(everything)}; boundary error median "
            f"{np.median(errors):.3f} s, p90 {np.percentile(errors, 90):.3f} s; "
            f"{seconds / TRIALS:.2f} s CPU per ~50 s file"
        )
    assert np.mean(everything) >= 0.9


def test_two_payloads_in_sequence_are_both_reported(
    marker: KeyedWatermarker, capsys: pytest.CaptureFixture[str]
) -> None:
    both = 0
    for i in range(PAIRS):
        rng = np.random.default_rng(90_000 + i)
        p1, p2 = (int(v) for v in rng.integers(0, 2**32, size=2))
        a = _marked(marker, rng, ("music", "speech")[i % 2], p1)
        b = _marked(marker, rng, ("speech", "music")[i % 2], p2)
        lead, tail = _host(rng, float(rng.uniform(3.0, 10.0))), _host(rng, 5.0)
        spans = marker.locate(Audio.mono(np.concatenate([lead, a, b, tail]), RATE))
        t0 = lead.size / RATE
        t1 = t0 + a.size / RATE
        t2 = t1 + b.size / RATE
        both += _within(spans, p1, t0, t1) and _within(spans, p2, t1, t2)
    with capsys.disabled():
        print(f"\nlocated detection: two payloads in sequence, both within 0.5 s: {both} of {PAIRS}")
    assert both >= PAIRS - (PAIRS // 10)


def test_unmarked_recordings_report_nothing(marker: KeyedWatermarker) -> None:
    for i in range(UNMARKED):
        rng = np.random.default_rng(95_000 + i)
        assert marker.locate(Audio.mono(_host(rng, 60.0), RATE)) == []


@pytest.mark.skipif(not FULL, reason="timed on the full measurement only (SOUNDRY_WATERMARK_TRIALS=full)")
def test_ten_minute_file_time(marker: KeyedWatermarker, capsys: pytest.CaptureFixture[str]) -> None:
    rng = np.random.default_rng(3)
    host = _host(rng, 600.0)
    while host.size < 600 * RATE:
        host = np.concatenate([host, _host(rng, 60.0)])
    host = host[: 600 * RATE]
    clip = _marked(marker, rng, "music", 0x0BADCAFE)
    at = 300 * RATE
    audio = Audio.mono(np.concatenate([host[:at], clip, host[at + clip.size :]]), RATE)
    t, cpu = time.perf_counter(), time.process_time()
    spans = marker.locate(audio)
    elapsed, cpu = time.perf_counter() - t, time.process_time() - cpu
    with capsys.disabled():
        print(f"\nlocated detection of a 10-minute file: {elapsed:.1f} s wall, {cpu:.1f} s CPU ({spans})")
    assert _within(spans, 0x0BADCAFE, 300.0, 300.0 + clip.size / RATE)
