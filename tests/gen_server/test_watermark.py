"""Unit tests of the keyed watermark (gen_server.audio.watermark)."""

from __future__ import annotations

import hashlib
import hmac
import itertools
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient
from scipy import signal

from gen_server import instance_secrets, provenance
from gen_server.audio import watermark as wm
from gen_server.audio.encode import encode
from gen_server.audio.types import Audio
from gen_server.audio.watermark import (
    DEFAULT_KEY,
    Detection,
    KeyedWatermarker,
    Watermarker,
    crc16,
    payload_for_job,
)
from gen_server.storage import LocalStore, watermark_key_for


def too_weak_to_decode(
    original: Audio, payload: int, key: bytes = wm.DEFAULT_KEY, bands: wm.Bands = wm.WIDE_BANDS
) -> Audio:
    """``original`` marked with ``payload`` (with ``bands``) just below what blind decoding reads (the
    mark made weaker 1 dB at a time from 36 dB below the music, Soundry's being 26 dB)."""
    for snr in range(36, 70):
        weak = KeyedWatermarker(key, target_snr_db=snr, bands=bands).embed(original, payload)
        if not KeyedWatermarker(key).detect(weak).detected:
            return weak
    raise AssertionError("the mark decoded at every strength tried")


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
    a, b = wm._Layout(b"a", wm.STEP_DB, wm.WIDE_BANDS), wm._Layout(b"b", wm.STEP_DB, wm.WIDE_BANDS)
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


def test_sound_effects_are_marked_with_the_fine_plan_and_read_by_any_watermarker(
    marker: KeyedWatermarker,
) -> None:
    """A mark of the fine plan (sound effects) is decoded, matched when too weak to decode, and located
    by the default watermarker, which reports it as ``fine``; the wide plan's marks are not (the two
    layouts are drawn apart, and ``bands_for`` picks the fine plan for sound effects only)."""
    assert (
        wm.bands_for("sfx") == wm.FINE_BANDS
        and wm.bands_for("speech") == wm.bands_for("music") == wm.WIDE_BANDS
    )
    original = noisy_music(3, duration_s=6.0, channels=1)
    payload = 0x1E6AC1
    fine = marker.embed(original, payload, bands=wm.FINE_BANDS)
    assert not np.array_equal(fine.samples, marker.embed(original, payload).samples)
    found = marker.detect(fine)
    assert found.detected and found.payload == payload and found.fine and not found.informed
    weak = too_weak_to_decode(original, payload, bands=wm.FINE_BANDS)
    matched = marker.detect(weak, wm.IssuedPayloads([*DECOYS, payload]))
    assert matched.informed and matched.fine and matched.payload == payload
    recording = noisy_music(4, duration_s=20.0, channels=1)
    inside = recording.samples.copy()
    at = 7 * recording.sample_rate
    inside[:, at : at + fine.frames] = fine.samples
    (span,) = marker.locate(Audio(inside, recording.sample_rate))
    assert span.payload == payload and abs(span.start_s - 7.0) <= 0.5 and abs(span.end_s - 13.0) <= 0.5
    wide = marker.detect(marker.embed(original, payload))
    assert wide.payload == payload and not wide.fine


def test_max_segment() -> None:
    gain = np.array([-1.0, 2.0, -0.5, 3.0, -5.0, 1.0])
    assert wm._max_segment(gain) == (1, 4)
    assert wm._max_segment(np.array([-1.0, -2.0])) == (0, 0)
    blocked = np.array([2.0, -np.inf, 3.0])
    assert wm._max_segment(blocked) == (2, 3)


def _columns(*runs: tuple[int, float, float]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Agreement, size and power of columns from runs ``(count, agreement, size)`` (power: size^2 / 12)."""
    agree = np.concatenate([np.full(n, a) for n, a, _ in runs])
    size = np.concatenate([np.full(n, z) for n, _, z in runs])
    return agree, size, size**2 / 12


def test_a_stretch_grows_across_silence_over_sound_that_agrees() -> None:
    silent = 0.12
    # a faint event (agreement 0.5 of size 0.8 a column), 10 silent columns, a noisy edge column, the
    # marked stretch at [19, 39), silence, then a faint event that does not agree
    agree, size, power = _columns(
        (8, 0.5, 0.8), (10, 0.0, 0.0), (1, 0.1, 4.0), (20, 8.0, 9.0), (6, 0.0, 0.0), (8, -0.3, 0.8)
    )
    assert wm._extend_across_silence(agree, size, power, 19, 39, silent) == (0, 39)
    # no silence between the stretch and the faint sound (a clip running into other audio): kept
    agree, size, power = _columns((8, 0.5, 0.8), (20, 8.0, 9.0))
    assert wm._extend_across_silence(agree, size, power, 8, 28, silent) == (8, 28)
    # a silence shorter than LOCATE_GAP_COLUMNS is not one
    agree, size, power = _columns((8, 0.5, 0.8), (2, 0.0, 0.0), (20, 8.0, 9.0))
    assert wm._extend_across_silence(agree, size, power, 10, 30, silent) == (10, 30)


DECOYS = np.random.default_rng(5).integers(0, 2**32, 5000).tolist()
"""Payloads another 5,000 jobs were issued: informed detection tests them all."""


def test_data_signs_follow_the_layout(marker: KeyedWatermarker) -> None:
    """The affine shortcut that patterns payloads in bulk gives every payload's own group bits."""
    payloads = np.array([0, 1, 0xFFFFFFFF, *DECOYS[:40]], dtype=np.uint32)
    for reader in marker._readers:  # both band plans (one and two pilot groups a column)
        signs = reader._data_signs(payloads)
        for payload, row in zip(payloads.tolist(), signs, strict=True):
            bits = reader._layout.group_bits(payload)[:, reader._layout.bands.pilots :].reshape(-1)
            assert np.array_equal(row, 1.0 - 2.0 * bits)


def test_threshold_grows_with_the_payloads_tested() -> None:
    small, large = wm.IssuedPayloads(range(1000)), wm.IssuedPayloads(range(1_000_000))
    assert 5.6 < small.threshold(16) < 5.8 and 6.7 < large.threshold(16) < 6.9
    assert small.threshold(16, false_alarm=1e-6) > small.threshold(16)
    assert len(wm.IssuedPayloads([7, 7, 8])) == 2


@pytest.mark.parametrize("seed", [2, 5, 8])
def test_informed_detection_reads_a_mark_too_weak_to_decode(marker: KeyedWatermarker, seed: int) -> None:
    """A 4 s mark too weak to decode still has its payload's pattern stand out among 5,001 issued
    payloads; other keys and unmarked audio match none of them."""
    original = noisy_music(seed, duration_s=4.0, channels=1)
    payload = 0xC0FFEE42
    weak = too_weak_to_decode(original, payload)
    issued = wm.IssuedPayloads([*DECOYS, payload])
    assert not marker.detect(weak).detected
    found = marker.detect(weak, issued)
    assert found.detected and found.informed and found.payload == payload
    assert found.confidence >= issued.threshold(marker.informed_tests) and found.bit_errors is None
    assert found.offset_s is not None and min(found.offset_s, wm.PERIOD_S - found.offset_s) < 0.01
    assert not KeyedWatermarker(b"another key").detect(weak, issued).detected
    assert not marker.detect(original, issued).detected


def test_informed_detection_ignores_steady_sound(marker: KeyedWatermarker) -> None:
    """Steady sound repeats the same group values in every period, which inflates a score normalised
    per period (a 12-20 s tone scored ~15 against random payloads that way): the informed score stays
    near its null whatever the host."""
    sr = 16000
    t = np.arange(12 * sr) / sr
    issued = wm.IssuedPayloads(DECOYS)
    hosts = [
        0.3 * np.sin(2 * np.pi * 1234.5 * t),
        sum(0.2 / k * np.sin(2 * np.pi * 50 * k * t + k) for k in range(1, 40)),  # mains hum
        sum(0.1 * np.sin(2 * np.pi * f * t) for f in (311.0, 740.0, 1650.0, 2890.0)),
    ]
    for host in hosts:
        scored = marker.detect(Audio.mono(host, sr), issued, false_alarm=1e9)  # report the best match
        assert scored.informed and scored.confidence < 5.0 < issued.threshold(marker.informed_tests), scored


def test_detect_endpoint_matches_a_weak_mark_to_its_job(api: TestClient) -> None:
    """Through the API: a mark too weak to decode (made weaker step by step until it no longer decodes)
    is matched against the server's watermark index and traced to its job (``method: matched``), and
    confirmed when the request names its job (but not another job)."""
    r = api.post("/v1/jobs", json={"kind": "sfx", "model": "dev-audiogen-tiny", "prompt": "hum", "seed": 7})
    assert r.status_code == 202, r.text
    job_id = r.json()["id"]
    svc = api.app.state.jobs  # type: ignore[attr-defined]
    key = instance_secrets.watermark_key(svc.settings)
    payload = payload_for_job(job_id, key)
    for decoy in DECOYS[:300]:  # other jobs' entries (the worker writes one per job)
        svc.store.put(watermark_key_for(decoy), f"other-{decoy:08x}".encode())
    svc.store.put(watermark_key_for(payload), job_id.encode())
    original = noisy_music(2, duration_s=4.0, channels=1)
    weak = too_weak_to_decode(original, payload, key)
    body = api.post("/v1/watermark/detect", files={"file": ("weak.wav", encode(weak, "wav"))}).json()
    assert body["detected"] and body["method"] == "matched", body
    assert body["payload"] == f"{payload:08x}" and body["job_id"] == job_id
    wav = encode(weak, "wav")
    body = api.post("/v1/watermark/detect", files={"file": ("w.wav", wav)}, data={"job_id": job_id}).json()
    assert body["method"] == "matched" and body["job_id"] == job_id, body
    other = api.post("/v1/jobs", json={"kind": "sfx", "model": "dev-audiogen-tiny", "prompt": "x"}).json()[
        "id"
    ]
    body = api.post("/v1/watermark/detect", files={"file": ("w.wav", wav)}, data={"job_id": other}).json()
    # a claim is tested alone: another job's claim is never confirmed (a part of the file may still
    # decode to the job that did make it, which is then reported)
    assert body["job_id"] != other and body["payload"] in (None, f"{payload:08x}"), body
    r = api.post("/v1/watermark/detect", files={"file": ("w.wav", wav)}, data={"job_id": "no-such-job"})
    assert r.status_code == 404 and r.json()["error"]["field"] == "job_id", r.text
    strong = KeyedWatermarker(key).embed(original, payload)
    body = api.post("/v1/watermark/detect", files={"file": ("x.wav", encode(strong, "wav"))}).json()
    assert body["method"] == "decoded" and body["job_id"] == job_id
    body = api.post("/v1/watermark/detect", files={"file": ("x.wav", encode(original, "wav"))}).json()
    assert not body["detected"] and body["method"] is None


def test_a_claim_confirms_a_mark_too_faint_for_the_index(tmp_path: Path) -> None:
    """One claimed job is one test (threshold ~4.4 instead of ~5.5 for 301 issued payloads): a mark
    made fainter until the index no longer finds it is still confirmed against its claimed job."""
    key, job_id = "claim-test-key", "job-claim-test"
    payload = payload_for_job(job_id, key.encode())
    store = LocalStore(tmp_path)
    for decoy in DECOYS[:300]:
        store.put(watermark_key_for(decoy), b"other")
    store.put(watermark_key_for(payload), job_id.encode())
    original = noisy_music(2, duration_s=4.0, channels=1)
    for snr in np.arange(42.0, 64.0, 0.5):
        wav = encode(KeyedWatermarker(key.encode(), target_snr_db=float(snr)).embed(original, payload), "wav")
        if not provenance.detect_bytes(wav, key, store).detection.detected:
            break
    else:
        raise AssertionError("the index found the mark at every strength tried")
    claimed = provenance.detect_bytes(wav, key, store, claim=job_id)
    assert claimed.method == "matched" and claimed.detection.payload == payload, snr
    assert claimed.job_id == job_id
    assert not provenance.detect_bytes(wav, key, store, claim="another-job").detection.detected


def test_verify_says_what_a_weak_mark_matched(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """``soundry verify`` on a mark too weak to decode: matched among the index's payloads, or, with
    ``--job``, against that job's payload; the message says which."""
    from gen_server.cli import main as cli_main
    from gen_server.settings import get_settings
    from gen_server.storage import open_store

    monkeypatch.setenv("SOUNDRY_DATA_DIR", str(tmp_path))
    get_settings.cache_clear()
    try:
        settings = get_settings()
        key, job_id = instance_secrets.watermark_key(settings), "job-verify-weak"
        payload = payload_for_job(job_id, key)
        open_store(settings).put(watermark_key_for(payload), job_id.encode())
        weak = tmp_path / "weak.wav"
        weak.write_bytes(
            encode(too_weak_to_decode(noisy_music(2, duration_s=4.0, channels=1), payload, key), "wav")
        )
        assert cli_main(["verify", str(weak)]) == 0
        assert (
            f"(matched an issued payload: too weak to decode), payload {payload:08x}"
            in capsys.readouterr().out
        )
        assert cli_main(["verify", str(weak), "--job", job_id]) == 0
        out = capsys.readouterr().out
        assert "(matched the claimed job's payload: too weak to decode)" in out and job_id in out
    finally:
        get_settings.cache_clear()


def test_a_job_made_after_the_index_was_listed_is_still_matched(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The index listing is kept between detections; one that finds nothing lists it again (here at
    once), so a weak copy of a job made since the last listing is still traced."""
    monkeypatch.setattr(provenance, "ISSUED_RECHECK_S", 0.0)
    key, job_id = "index-test-key", "job-made-later"
    payload = payload_for_job(job_id, key.encode())
    store = LocalStore(tmp_path)
    for decoy in DECOYS[:300]:
        store.put(watermark_key_for(decoy), b"other")
    original = noisy_music(2, duration_s=4.0, channels=1)
    assert not provenance.detect_bytes(encode(original, "wav"), key, store).detection.detected  # listed
    store.put(watermark_key_for(payload), job_id.encode())  # the worker indexes the new job
    weak = too_weak_to_decode(original, payload, key.encode())
    found = provenance.detect_bytes(encode(weak, "wav"), key, store)
    assert found.method == "matched" and found.job_id == job_id, found


def test_a_miss_tests_only_the_payloads_listed_since(marker: KeyedWatermarker) -> None:
    """When no listed payload matches, the listing's source is asked once for a newer one, and only
    the payloads it adds are tested (at the threshold of the newer listing's size), on the same
    search: the audio is not searched again."""
    original = noisy_music(5, duration_s=4.0, channels=1)
    payload = 0x5EED1234
    weak = too_weak_to_decode(original, payload)
    asked: list[wm.IssuedPayloads] = []
    newer = wm.IssuedPayloads([*DECOYS, payload])

    def relist(old: wm.IssuedPayloads) -> wm.IssuedPayloads | None:
        asked.append(old)
        return newer if old is not newer else None

    listed = wm.IssuedPayloads(DECOYS, relist=relist)
    searches = 0
    search = marker._search

    def counted(*args: object) -> tuple[object, object]:
        nonlocal searches
        searches += 1
        return search(*args)  # type: ignore[arg-type]

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(marker, "_search", counted)
        found = marker.detect(weak, listed)
    assert found.informed and found.payload == payload and asked == [listed] and searches == 1
    assert found.confidence >= newer.threshold(marker.informed_tests)
    assert not marker.detect(original, listed).detected and asked == [listed, listed]


def test_locate_keeps_informed_windows_within_budget() -> None:
    """A long file against a large index: its windows are searched blind rather than testing every
    payload in every window (600 windows x 1,000,000 payloads would be minutes of CPU)."""
    small, large = wm.IssuedPayloads(range(1000)), wm.IssuedPayloads(range(1_000_000))
    assert wm._within_budget(small, 600) is small and wm._within_budget(large, 1) is large
    assert wm._within_budget(large, 600) is None and wm._within_budget(None, 1) is None
