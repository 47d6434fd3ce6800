"""Unit tests of the keyed watermark (gen_server.audio.watermark)."""

from __future__ import annotations

import hashlib
import hmac
import itertools

import numpy as np
import pytest
from scipy import signal

from gen_server.audio import watermark as wm
from gen_server.audio.types import Audio
from gen_server.audio.watermark import (
    DEFAULT_KEY,
    Detection,
    KeyedWatermarker,
    Watermarker,
    crc16,
    payload_for_job,
)


def noisy_music(seed: int, duration_s: float = 6.0, sr: int = 44100, channels: int = 2) -> Audio:
    """Band-limited noise under a few harmonic notes: dense enough to carry the mark everywhere."""
    rng = np.random.default_rng(seed)
    n = round(duration_s * sr)
    t = np.arange(n) / sr
    sos = signal.butter(2, [200, min(8000, 0.45 * sr)], "bandpass", fs=sr, output="sos")
    bed = signal.sosfilt(sos, rng.standard_normal(n)) * 0.05
    notes = sum(0.1 / k * np.sin(2 * np.pi * 220 * k * t) for k in range(1, 8))
    env = 0.6 + 0.4 * np.sin(2 * np.pi * 0.7 * t) ** 2
    mono = (bed + notes) * env
    return Audio(np.stack([mono * (1 - 0.1 * c) for c in range(channels)]).astype(np.float32), sr)


def snr_db(original: Audio, marked: Audio) -> float:
    x = original.samples.astype(np.float64)
    return float(10 * np.log10(np.sum(x**2) / np.sum((marked.samples - x) ** 2)))


@pytest.fixture(scope="module")
def marker() -> KeyedWatermarker:
    return KeyedWatermarker()


@pytest.fixture(scope="module")
def marked(marker: KeyedWatermarker) -> tuple[Audio, Audio, int]:
    original = noisy_music(1)
    payload = 0xC0FFEE42
    return original, marker.embed(original, payload), payload


def test_round_trip(marker: KeyedWatermarker, marked: tuple[Audio, Audio, int]) -> None:
    original, out, payload = marked
    assert out.samples.shape == original.samples.shape and out.sample_rate == original.sample_rate
    assert out.samples.dtype == np.float32
    assert snr_db(original, out) >= 25.0
    assert np.allclose(out.samples[0] - original.samples[0], out.samples[1] - original.samples[1], atol=1e-6)
    found = marker.detect(out)
    assert found.detected and found.payload == payload
    assert found.confidence > 6 and found.bit_errors is not None and found.bit_errors < 10
    assert found.offset_s == pytest.approx(0.0, abs=0.002)


def test_protocol_and_repr(marker: KeyedWatermarker) -> None:
    w: Watermarker = marker
    assert isinstance(w.detect(Audio.mono(np.zeros(100), 16000)), Detection)
    assert "soundry" not in repr(marker)  # the key is not printed


def test_wrong_key_finds_nothing(marked: tuple[Audio, Audio, int]) -> None:
    _, out, _ = marked
    found = KeyedWatermarker(b"another secret").detect(out)
    assert not found.detected and found.payload is None


def test_unmarked_audio_finds_nothing(marker: KeyedWatermarker, marked: tuple[Audio, Audio, int]) -> None:
    original, _, _ = marked
    found = marker.detect(original)
    assert not found.detected and found.payload is None and found.confidence < 6.0


def test_offset_is_reported(marker: KeyedWatermarker, marked: tuple[Audio, Audio, int]) -> None:
    _, out, payload = marked
    lead = round(0.3 * out.sample_rate)
    shifted = Audio(np.concatenate([np.zeros((2, lead), np.float32), out.samples], axis=1), out.sample_rate)
    found = marker.detect(shifted)
    assert found.payload == payload
    assert found.offset_s == pytest.approx(0.3, abs=0.002)


def test_excerpt_and_other_rates(marker: KeyedWatermarker, marked: tuple[Audio, Audio, int]) -> None:
    _, out, payload = marked
    part = Audio(
        out.samples[:, round(1.234 * out.sample_rate) : round(4.5 * out.sample_rate)], out.sample_rate
    )
    assert marker.detect(part).payload == payload
    mono16 = Audio.mono(signal.resample_poly(out.samples.mean(axis=0), 160, 441), 16000)
    assert marker.detect(mono16).payload == payload
    shorter = Audio(out.samples[:, : round(1.5 * out.sample_rate)], out.sample_rate)  # < one period
    assert marker.detect(shorter).payload in (payload, None)


def test_embed_at_16k_mono_and_quiet_levels(marker: KeyedWatermarker) -> None:
    original = noisy_music(2, duration_s=4.0, sr=16000, channels=1)
    quiet = Audio(original.samples * 0.01, 16000)
    out = marker.embed(quiet, 7)
    assert snr_db(quiet, out) >= 25.0
    assert marker.detect(Audio(out.samples * 100, 16000)).payload == 7


def test_silence_and_short_clips(marker: KeyedWatermarker) -> None:
    silent = Audio(np.zeros((1, 48000), np.float32), 48000)
    out = marker.embed(silent, 1)
    assert np.array_equal(out.samples, silent.samples)
    assert not marker.detect(out).detected
    short = Audio.mono(np.random.default_rng(0).standard_normal(800) * 0.1, 16000)
    assert marker.embed(short, 1).samples.shape == short.samples.shape
    assert not marker.detect(short).detected
    empty = Audio(np.zeros((2, 0), np.float32), 16000)
    assert marker.embed(empty, 1).frames == 0
    assert not marker.detect(empty).detected


def test_output_stays_in_range(marker: KeyedWatermarker) -> None:
    loud = noisy_music(3, duration_s=3.0)
    loud = Audio(loud.samples / np.max(np.abs(loud.samples)), loud.sample_rate)
    assert np.max(np.abs(marker.embed(loud, 99).samples)) <= 1.0


def test_bad_arguments() -> None:
    with pytest.raises(ValueError):
        KeyedWatermarker(b"")
    with pytest.raises(ValueError):
        KeyedWatermarker().embed(noisy_music(0, 1.0), 2**32)
    with pytest.raises(ValueError):
        KeyedWatermarker().embed(noisy_music(0, 1.0), -1)


def test_payload_for_job() -> None:
    expected = int.from_bytes(hmac.new(DEFAULT_KEY, b"job-1", hashlib.sha256).digest()[:4], "big")
    assert payload_for_job("job-1") == expected == payload_for_job("job-1", DEFAULT_KEY)
    assert payload_for_job("job-1") != payload_for_job("job-2")
    assert payload_for_job("job-1") != payload_for_job("job-1", b"other key")
    values = {payload_for_job(f"job-{i}") for i in range(1000)}
    assert len(values) == 1000 and all(0 <= v < 2**32 for v in values)


def test_crc16_check_value() -> None:
    assert crc16(b"123456789") == 0x29B1  # CRC-16/CCITT-FALSE check value


def test_convolutional_code_corrects_errors() -> None:
    rng = np.random.default_rng(0)
    for _ in range(20):
        info = rng.integers(0, 2, wm.INFO_BITS)
        coded = wm._CODE.encode(info)
        assert coded.size == wm.CODED_BITS
        soft = (1.0 - 2.0 * coded) + rng.normal(0, 0.5, coded.size)
        soft[rng.choice(coded.size, 6, replace=False)] *= -1  # a few confident errors too
        assert np.array_equal(wm._CODE.decode(soft), info)


def test_keyed_crc_rejects_other_keys() -> None:
    a, b = wm._Layout(b"a", wm.STEP_DB), wm._Layout(b"b", wm.STEP_DB)
    info = a.info_bits(12345)
    assert a.check(info) == 12345
    assert a.crc_mask == b.crc_mask or b.check(info) is None


def test_chunks_marked_on_the_stream_grid_read_as_one_mark(marker: KeyedWatermarker) -> None:
    """Streamed audio is marked chunk by chunk (``at_s``); joined, it is one mark like a whole clip."""
    whole = noisy_music(7, duration_s=9.0, sr=24000, channels=1)
    cuts = [0, 26400, 43200, 98400, 141600, whole.frames]  # 1.1, 0.7, 2.3, 1.8, 3.1 s
    pieces = [Audio(whole.samples[:, a:b], 24000) for a, b in itertools.pairwise(cuts)]
    aligned = [marker.embed(p, 0x5EED1234, at_s=a / 24000) for p, a in zip(pieces, cuts, strict=False)]
    naive = [marker.embed(p, 0x5EED1234) for p in pieces]
    for piece, out in zip(pieces, aligned, strict=True):
        assert snr_db(piece, out) >= 25.0  # the budget holds per chunk, whatever its place on the grid
    joined = marker.detect(Audio(np.concatenate([a.samples for a in aligned], axis=1), 24000))
    unaligned = marker.detect(Audio(np.concatenate([a.samples for a in naive], axis=1), 24000))
    assert joined.detected and joined.payload == 0x5EED1234 and joined.bit_errors == 0
    assert joined.confidence > unaligned.confidence


def test_locate_finds_two_clips_in_an_unmarked_recording(marker: KeyedWatermarker) -> None:
    """Two marked clips (different payloads) one after the other inside unmarked audio: both are
    reported, each where it is (within 0.5 s)."""
    sr = 16000
    rng = np.random.default_rng(11)  # a recording unlike the clips: noise under a random envelope
    envelope = np.repeat(rng.uniform(0.02, 0.3, 200), sr // 10)
    host = signal.sosfilt(
        signal.butter(2, [150, 7000], "bandpass", fs=sr, output="sos"), rng.standard_normal(20 * sr)
    )
    host = host * envelope
    a = marker.embed(noisy_music(12, duration_s=5.0, sr=sr, channels=1), 0x11111111).samples[0]
    b = marker.embed(noisy_music(13, duration_s=6.0, sr=sr, channels=1), 0x22222222).samples[0]
    at = round(7.3 * sr)
    audio = Audio.mono(np.concatenate([host[:at], a, b, host[at:]]), sr)
    spans = marker.locate(audio)
    assert [s.payload for s in spans] == [0x11111111, 0x22222222]
    edges = [7.3, 12.3, 12.3, 18.3]
    got = [spans[0].start_s, spans[0].end_s, spans[1].start_s, spans[1].end_s]
    assert all(abs(g - e) <= 0.5 for g, e in zip(got, edges, strict=True)), got
    assert all(s.confidence >= wm.LOCATE_THRESHOLD for s in spans)
    assert marker.locate(Audio.mono(host, sr)) == []
    assert marker.locate(Audio(np.zeros((1, 0), np.float32), sr)) == []


def test_max_segment() -> None:
    gain = np.array([-1.0, 2.0, -0.5, 3.0, -5.0, 1.0])
    assert wm._max_segment(gain) == (1, 4)
    assert wm._max_segment(np.array([-1.0, -2.0])) == (0, 0)
    blocked = np.array([2.0, -np.inf, 3.0])
    assert wm._max_segment(blocked) == (2, 3)
