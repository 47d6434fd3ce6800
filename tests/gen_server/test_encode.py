"""Encode/decode round trips, tags, and refusal of bad uploads (gen_server.audio.encode)."""

from __future__ import annotations

import io
import struct

import av
import numpy as np
import pytest
import soundfile as sf

from gen_server.audio import encode as enc
from gen_server.audio.encode import MEDIA_TYPES, decode, encode, read_tags
from gen_server.audio.postprocess import resample
from gen_server.audio.types import Audio
from gen_server.errors import InvalidInput

SR = 32000
TAGS = {
    "title": "A door creaks",
    "comment": "made by Soundry",
    "software": "Soundry 0.1",
    "job_id": "job-123e4567",
    "model": "audiogen-medium",
    "seed": "42",
}


def stereo(duration_s: float = 2.0, sr: int = SR) -> Audio:
    t = np.arange(round(duration_s * sr)) / sr
    left = 0.4 * np.sin(2 * np.pi * 440 * t) + 0.1 * np.sin(2 * np.pi * 3000 * t)
    right = 0.4 * np.sin(2 * np.pi * 660 * t)
    return Audio(np.stack([left, right]).astype(np.float32), sr)


def best_correlation(a: np.ndarray, b: np.ndarray, max_lag: int = 4000) -> float:
    """Peak normalised cross-correlation of two 1-D signals over lags up to ``max_lag``."""
    n = min(a.size, b.size)
    a, b = a[:n] - a[:n].mean(), b[:n] - b[:n].mean()
    spec = np.fft.rfft(a, 2 * n) * np.conj(np.fft.rfft(b, 2 * n))
    xc = np.fft.irfft(spec)
    lags = np.concatenate([xc[: max_lag + 1], xc[-max_lag:]])
    return float(np.max(lags) / (np.linalg.norm(a) * np.linalg.norm(b)))


@pytest.mark.parametrize("subtype", ["pcm16", "pcm24", "float32"])
def test_wav_round_trip_is_lossless(subtype: enc.WavSubtype) -> None:
    a = stereo()
    data = encode(a, "wav", wav_subtype=subtype)
    assert data[:4] == b"RIFF" and data[8:12] == b"WAVE"
    info = sf.info(io.BytesIO(data))
    assert info.subtype == {"pcm16": "PCM_16", "pcm24": "PCM_24", "float32": "FLOAT"}[subtype]
    out = decode(data)
    assert (out.sample_rate, out.channels, out.frames) == (SR, 2, a.frames)
    tolerance = {"pcm16": 1 / 32767, "pcm24": 1e-6, "float32": 1e-7}[subtype]
    assert np.max(np.abs(out.samples - a.samples)) <= tolerance


@pytest.mark.parametrize("subtype", ["pcm16", "pcm24"])
def test_flac_round_trip_is_lossless(subtype: enc.WavSubtype) -> None:
    a = stereo()
    data = encode(a, "flac", wav_subtype=subtype)
    assert data[:4] == b"fLaC"
    out = decode(data)
    assert (out.sample_rate, out.channels, out.frames) == (SR, 2, a.frames)
    assert np.max(np.abs(out.samples - a.samples)) <= (1 / 32767 if subtype == "pcm16" else 1e-6)


@pytest.mark.parametrize(("fmt", "rate"), [("mp3", SR), ("ogg", 48000)])
def test_lossy_round_trip(fmt: enc.EncodeFormat, rate: int) -> None:
    a = stereo(3.0)
    data = encode(a, fmt)
    out = decode(data)
    assert out.sample_rate == rate and out.channels == 2
    assert out.duration_s == pytest.approx(a.duration_s, abs=0.06)
    ref = resample(a, rate)
    for ch in range(2):
        assert best_correlation(out.samples[ch], ref.samples[ch]) > 0.98
    # bitrate is what was asked for (within the container's overhead)
    low = encode(a, fmt, bitrate_kbps=64)
    assert len(low) < len(data)
    assert len(low) * 8 / a.duration_s / 1000 == pytest.approx(64, rel=0.25)


def test_mp3_resamples_unsupported_rates_and_rejects_many_channels() -> None:
    a = stereo(1.0, sr=96000)
    assert decode(encode(a, "mp3")).sample_rate == 48000
    with pytest.raises(InvalidInput):
        encode(Audio(np.zeros((3, 1000), np.float32), SR), "ogg")


def test_raw_pcm() -> None:
    a = Audio(np.array([[0.0, 0.5, -1.0, 2.0], [1.0, -0.5, 0.25, -2.0]], np.float32), 24000)
    data = encode(a, "pcm")
    values = np.frombuffer(data, "<i2").reshape(-1, 2).T
    assert values.tolist() == [[0, 16384, -32767, 32767], [32767, -16384, 8192, -32767]]
    assert read_tags(data, "pcm") == {}


def test_media_types() -> None:
    assert MEDIA_TYPES == {
        "wav": "audio/wav",
        "flac": "audio/flac",
        "mp3": "audio/mpeg",
        "ogg": "audio/ogg",
        "pcm": "audio/pcm",
        "ulaw": "audio/basic",
        "alaw": "audio/x-alaw-basic",
        "aac": "audio/aac",
    }


@pytest.mark.parametrize(("fmt", "demuxer"), [("ulaw", "mulaw"), ("alaw", "alaw")])
def test_raw_g711(fmt: enc.EncodeFormat, demuxer: str) -> None:
    """One byte a sample, no header; FFmpeg's own G.711 decoder reads it back within G.711's error."""
    a = Audio(stereo(0.5, sr=8000).samples[:1], 8000)
    data = encode(a, fmt, tags=TAGS)
    assert len(data) == a.frames
    with av.open(io.BytesIO(data), format=demuxer, options={"sample_rate": "8000", "ch_layout": "mono"}) as c:
        frames = [f.to_ndarray().reshape(-1) for f in c.decode(audio=0)]
    decoded = np.concatenate(frames).astype(np.float32) / 32768.0  # FFmpeg decodes G.711 to s16
    assert decoded.size == a.frames
    assert float(np.abs(decoded - a.samples[0]).max()) < 0.03


@pytest.mark.parametrize("fmt", ["wav", "flac", "mp3", "ogg"])
def test_tags_read_back(fmt: enc.EncodeFormat) -> None:
    data = encode(stereo(0.5), fmt, tags=TAGS)
    tags = read_tags(data, fmt)
    for key, value in TAGS.items():
        assert tags.get(key) == value, (fmt, key, tags)
    assert read_tags(data) == tags or fmt != "wav"  # probing finds the same tags


def test_wav_tags_live_in_riff_info_and_ixml() -> None:
    data = encode(stereo(0.2), "wav", tags=TAGS)
    with sf.SoundFile(io.BytesIO(data)) as f:
        assert f.title == TAGS["title"]
        assert "job_id=job-123e4567" in f.comment and "seed=42" in f.comment
    assert b"iXML" in data and b"<USER>" in data
    assert struct.unpack("<I", data[4:8])[0] == len(data) - 8  # RIFF size fixed after appending
    with av.open(io.BytesIO(data)) as container:  # other readers still parse the file
        assert container.streams.audio[0].duration is not None


def test_bad_tags_are_refused() -> None:
    with pytest.raises(InvalidInput):
        encode(stereo(0.1), "wav", tags={"bad key": "x"})
    with pytest.raises(InvalidInput):
        encode(stereo(0.1), "flac", tags={"comment": "a\x00b"})


@pytest.mark.parametrize("junk", [b"", b"hello world" * 100, b"RIFF" + bytes(100), bytes(range(256)) * 20])
def test_non_audio_is_invalid_input(junk: bytes) -> None:
    with pytest.raises(InvalidInput):
        decode(junk)


@pytest.mark.parametrize("fmt", ["wav", "flac", "mp3"])
def test_truncated_file_is_invalid_input(fmt: enc.EncodeFormat) -> None:
    data = encode(stereo(4.0), fmt)
    with pytest.raises(InvalidInput, match=r"truncated|corrupt"):
        decode(data[: len(data) // 2])


def test_truncated_ogg_decodes_its_intact_prefix() -> None:
    # Ogg states no total length up front: a cut file is indistinguishable from a shorter one
    data = encode(stereo(6.0), "ogg")
    out = decode(data[: len(data) // 2])
    assert 1.0 < out.duration_s < 5.0  # whole Ogg pages (about 1 s each) before the cut


def test_duration_limit_checked_from_the_header() -> None:
    data = encode(stereo(5.0), "flac")
    with pytest.raises(InvalidInput, match="limit"):
        decode(data, max_duration_s=2.0)
    assert decode(data, max_duration_s=5.0).frames == 5 * SR


def test_duration_limit_stops_decoding_when_the_header_lies(monkeypatch: pytest.MonkeyPatch) -> None:
    # a header that understates (or omits) the length must not let the decoder run on
    monkeypatch.setattr(enc, "_stated_duration_s", lambda container, stream: None)
    decoded: list[int] = []
    real = av.AudioResampler.resample

    def counting(self: av.AudioResampler, frame: av.AudioFrame | None) -> list[av.AudioFrame]:
        out = real(self, frame)
        decoded.extend(f.samples for f in out)
        return out

    monkeypatch.setattr(av.AudioResampler, "resample", counting)
    with pytest.raises(InvalidInput, match="longer than the limit"):
        decode(encode(stereo(20.0), "wav"), max_duration_s=2.0)
    assert sum(decoded) < 3 * SR  # stopped right after the limit, not at 20 s


def test_size_limit() -> None:
    with pytest.raises(InvalidInput, match="limit"):
        decode(encode(stereo(1.0), "wav"), max_bytes=1000)


def test_decode_m4a() -> None:
    bio = io.BytesIO()
    a = stereo(1.0, sr=44100)
    with av.open(bio, "w", format="mp4") as container:
        stream = container.add_stream("aac", rate=44100, layout="stereo")
        frame = av.AudioFrame.from_ndarray(a.samples, format="fltp", layout="stereo")
        frame.sample_rate = 44100
        for packet in [*stream.encode(frame), *stream.encode(None)]:
            container.mux(packet)
    out = decode(bio.getvalue())
    assert out.sample_rate == 44100 and out.channels == 2
    assert out.duration_s == pytest.approx(1.0, abs=0.1)
