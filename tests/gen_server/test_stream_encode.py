"""One encoder per streamed response: every format is one file an independent decoder reads whole."""

from __future__ import annotations

import io

import av
import mutagen.mp3
import numpy as np
import pytest

from gen_server.audio.stream_encode import STREAM_FORMATS, StreamEncoder, wav_stream_header
from gen_server.errors import InvalidInput

RATE = 24000


def chunks(n: int = 5, seconds: float = 1.3, channels: int = 1) -> list[np.ndarray]:
    """Sentence-like pieces: voiced harmonics with pauses, ``[frames, channels]`` int16."""
    rng = np.random.default_rng(0)
    out = []
    for i in range(n):
        t = np.arange(int(seconds * RATE)) / RATE
        voiced = sum(np.sin(2 * np.pi * (120 + 10 * i) * k * t) / k for k in range(1, 8))
        envelope = np.clip(np.sin(np.pi * t / seconds) * 1.5, 0, 1)
        x = 0.2 * voiced * envelope + 0.01 * rng.standard_normal(t.size)
        pcm = (np.clip(x, -1, 1) * 32767).astype(np.int16)
        out.append(np.repeat(pcm[:, None], channels, axis=1))
    return out


def decode_all(data: bytes, fmt: str | None = None, channels: int = 1) -> tuple[float, int, int]:
    layout = ["mono", "stereo"][channels - 1]
    raw = {"format": fmt, "options": {"sample_rate": str(RATE), "ch_layout": layout}}
    with av.open(io.BytesIO(data), **(raw if fmt in ("mulaw", "alaw") else {})) as container:
        stream = container.streams.audio[0]
        frames = sum(f.samples for f in container.decode(audio=0))
        return frames / stream.rate, stream.rate, stream.channels


@pytest.mark.parametrize("channels", [1, 2])
@pytest.mark.parametrize("fmt", STREAM_FORMATS)
def test_fed_chunk_by_chunk_the_result_is_one_whole_file(fmt: str, channels: int) -> None:
    pieces = chunks(channels=channels)
    expected_s = sum(p.shape[0] for p in pieces) / RATE
    encoder = StreamEncoder(fmt, RATE, channels, title="Soundry test")
    parts = [encoder.feed(p) for p in pieces]
    parts.append(encoder.close())
    data = b"".join(parts)
    assert sum(1 for p in parts[:-1] if p) >= 3, "bytes must come out while chunks go in (a stream)"
    if fmt == "pcm":
        assert len(data) == sum(p.size for p in pieces) * 2
        return
    if fmt in ("ulaw", "alaw"):  # raw G.711: one byte per sample, rate and layout given out of band
        assert len(data) == sum(p.size for p in pieces)
    seconds, _, got_channels = decode_all(data, {"ulaw": "mulaw", "alaw": "alaw"}.get(fmt), channels)
    assert got_channels == channels
    assert abs(seconds - expected_s) < 0.02 * expected_s + 0.08, (seconds, expected_s)
    if fmt == "mp3":
        assert data.count(b"ID3") == 1
        assert abs(mutagen.mp3.MP3(io.BytesIO(data)).info.length - expected_s) < 0.05 * expected_s


def test_wav_header_says_unknown_length_and_pcm_follows() -> None:
    encoder = StreamEncoder("wav", RATE, 1)
    first = encoder.feed(chunks(1)[0])
    assert first.startswith(wav_stream_header(RATE, 1))
    assert first[4:8] == b"\xff\xff\xff\xff" and first[40:44] == b"\xff\xff\xff\xff"
    assert encoder.close() == b""


def test_opus_at_an_odd_rate_is_resampled_and_unknown_formats_refused() -> None:
    encoder = StreamEncoder("ogg", 22050, 1)
    pcm = chunks(2)[0]
    data = encoder.feed(pcm) + encoder.close()
    seconds, rate, _ = decode_all(data)
    assert rate == 48000 and abs(seconds - pcm.shape[0] / 22050) < 0.1
    with pytest.raises(InvalidInput) as err:
        StreamEncoder("mid", RATE)
    assert err.value.field == "format"
    with pytest.raises(InvalidInput):
        StreamEncoder("mp3", RATE, 6)
