"""One encoder fed chunk by chunk: a streamed response that is one valid file in any format.

Joining separately encoded files is not a stream (each MP3 would bring its own ID3 tag and Xing
header; players and decoders stop after the first). :class:`StreamEncoder` keeps one PyAV (FFmpeg)
codec context and muxer open for the whole response and returns the bytes each chunk completes:

* ``mp3`` (libmp3lame, CBR, ``mp3`` muxer), ``ogg`` (Opus in Ogg), ``aac`` (AAC-LC in ADTS) and
  ``flac`` (native FLAC): written to a non-seekable sink, so the muxer leaves out what it can only
  write at the end (FLAC's total length and MD5 read as "unknown", as the format allows; no MP3 Xing
  frame, which a constant bitrate does not need).
* ``wav``: a 16-bit PCM header whose sizes say "unknown" (``0xFFFFFFFF``, as OpenAI streams WAV), then PCM.
* ``pcm``: raw signed 16-bit little-endian interleaved samples.
* ``ulaw`` / ``alaw``: raw G.711 (8-bit), through FFmpeg's ``pcm_mulaw`` / ``pcm_alaw``.

PyAV's encoder converts sample format and rate itself (libswresample) when the codec needs another
(Opus runs at 48 kHz unless the input is 8/12/16/24 kHz). The module is torch-free like the rest of
``gen_server.audio``.
"""

from __future__ import annotations

from typing import Final, cast

import av
import numpy as np
import numpy.typing as npt

from gen_server.errors import InvalidInput

STREAM_FORMATS: Final[tuple[str, ...]] = ("mp3", "ogg", "aac", "flac", "wav", "pcm", "ulaw", "alaw")
_CODECS: Final[dict[str, tuple[str, str]]] = {  # format -> (codec, muxer)
    "mp3": ("libmp3lame", "mp3"),
    "ogg": ("libopus", "ogg"),
    "aac": ("aac", "adts"),
    "flac": ("flac", "flac"),
    "ulaw": ("pcm_mulaw", "mulaw"),
    "alaw": ("pcm_alaw", "alaw"),
}
_MP3_RATES: Final[tuple[int, ...]] = (8000, 11025, 12000, 16000, 22050, 24000, 32000, 44100, 48000)
_OPUS_RATES: Final[tuple[int, ...]] = (8000, 12000, 16000, 24000, 48000)
DEFAULT_KBPS: Final[dict[str, int]] = {"mp3": 128, "ogg": 64, "aac": 96}


class _Sink:
    """A write-only, non-seekable file object collecting what the muxer writes."""

    def __init__(self) -> None:
        self._parts: list[bytes] = []

    def write(self, data: bytes) -> int:
        self._parts.append(bytes(data))
        return len(data)

    def seekable(self) -> bool:
        return False

    def take(self) -> bytes:
        out = b"".join(self._parts)
        self._parts.clear()
        return out


def pcm16(samples: npt.NDArray[np.floating]) -> npt.NDArray[np.int16]:
    """``[channels, frames]`` floats in [-1, 1] as ``[frames, channels]`` signed 16-bit little-endian."""
    return np.ascontiguousarray((np.clip(samples, -1.0, 1.0) * 32767.0).round().astype("<i2").T)


def wav_stream_header(sample_rate: int, channels: int) -> bytes:
    """A 16-bit PCM WAV header with unknown sizes (``0xFFFFFFFF``): the WAV of a live stream."""
    block = 2 * channels
    return (
        b"RIFF"
        + (0xFFFFFFFF).to_bytes(4, "little")
        + b"WAVEfmt "
        + (16).to_bytes(4, "little")
        + (1).to_bytes(2, "little")
        + channels.to_bytes(2, "little")
        + sample_rate.to_bytes(4, "little")
        + (sample_rate * block).to_bytes(4, "little")
        + block.to_bytes(2, "little")
        + (16).to_bytes(2, "little")
        + b"data"
        + (0xFFFFFFFF).to_bytes(4, "little")
    )


class StreamEncoder:
    """Encodes one stream of 16-bit PCM chunks into one file, returning bytes as they are ready.

    Args:
        fmt: One of :data:`STREAM_FORMATS`.
        sample_rate: Rate of the chunks fed, Hz.
        channels: 1 or 2.
        bitrate_kbps: Lossy formats' bitrate (:data:`DEFAULT_KBPS` when ``None``).
        title: Written as the file's title/comment where the container has tags (provenance).

    Raises:
        InvalidInput: Unknown format or channel count (field ``format``).
    """

    def __init__(
        self,
        fmt: str,
        sample_rate: int,
        channels: int = 1,
        *,
        bitrate_kbps: int | None = None,
        title: str | None = None,
    ) -> None:
        if fmt not in STREAM_FORMATS:
            raise InvalidInput(
                f"cannot stream '{fmt}'; use one of {', '.join(STREAM_FORMATS)}", field="format"
            )
        if channels not in (1, 2):
            raise InvalidInput(f"streams take 1 or 2 channels, got {channels}", field="format")
        self.format = fmt
        self.sample_rate = sample_rate
        self.channels = channels
        self.frames = 0
        self._layout = "mono" if channels == 1 else "stereo"
        self._started = False
        self._container: av.container.OutputContainer | None = None
        self._sink = _Sink()
        if fmt in _CODECS:
            codec, muxer = _CODECS[fmt]
            rate = sample_rate
            if fmt == "mp3" and rate not in _MP3_RATES:
                rate = min(_MP3_RATES, key=lambda r: abs(r - sample_rate))
            if fmt == "ogg" and rate not in _OPUS_RATES:
                rate = 48000
            self._container = av.open(self._sink, "w", format=muxer)
            if title:
                self._container.metadata["title"] = title
            stream = self._container.add_stream(codec, rate=rate, layout=self._layout)
            self._stream = cast(av.AudioStream, stream)
            if fmt in DEFAULT_KBPS:
                self._stream.bit_rate = (bitrate_kbps or DEFAULT_KBPS[fmt]) * 1000

    def feed(self, pcm: npt.NDArray[np.int16]) -> bytes:
        """Encode ``pcm`` (``[frames, channels]`` int16) and return the bytes completed so far."""
        pcm = np.ascontiguousarray(pcm, dtype="<i2").reshape(-1, self.channels)
        head = self._head()
        if self._container is None:
            self.frames += pcm.shape[0]
            return head + pcm.tobytes()
        if pcm.shape[0] == 0:
            return head + self._sink.take()
        frame = av.AudioFrame.from_ndarray(pcm.reshape(1, -1), format="s16", layout=self._layout)
        frame.sample_rate = self.sample_rate
        frame.pts = self.frames
        self.frames += pcm.shape[0]
        for packet in self._stream.encode(frame):
            self._container.mux(packet)
        return head + self._sink.take()

    def close(self) -> bytes:
        """Flush the encoder and end the file; the returned bytes are its last ones."""
        head = self._head()
        if self._container is None:
            return head
        for packet in self._stream.encode(None):
            self._container.mux(packet)
        self._container.close()
        self._container = None
        return head + self._sink.take()

    def _head(self) -> bytes:
        """The WAV header before the first bytes of a ``wav`` stream (once)."""
        if self._started:
            return b""
        self._started = True
        return wav_stream_header(self.sample_rate, self.channels) if self.format == "wav" else b""
