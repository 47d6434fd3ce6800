"""Encode :class:`Audio` to file bytes and decode uploads back (torch-free).

Formats:

* ``wav``: 16/24-bit PCM or 32-bit float (soundfile). Tags go in the RIFF ``LIST/INFO`` chunk (standard
  fields) and, all of them, in an ``iXML`` chunk (``USER`` field, one ``key=value`` a line).
* ``flac``: 16-bit PCM, or 24-bit for ``wav_subtype`` ``pcm24``/``float32`` (soundfile); tags as
  Vorbis comments (mutagen).
* ``mp3``: libmp3lame through PyAV, constant bitrate (192 kbit/s unless told); tags as ID3v2 frames.
* ``ogg``: Opus in Ogg through PyAV at 48 kHz (Opus's native rate), constrained VBR (128 kbit/s unless
  told); tags as Vorbis comments.
* ``pcm``: raw signed 16-bit little-endian interleaved samples, no header (OpenAI-style ``pcm``).
* ``ulaw`` / ``alaw``: raw 8-bit G.711 mu-law / A-law interleaved samples, no header (telephony, e.g.
  Twilio media streams), through PyAV's ``pcm_mulaw`` / ``pcm_alaw``.

:func:`decode` reads any container PyAV (FFmpeg) knows, refuses oversized or overlong inputs before
decoding them fully, and raises :class:`~gen_server.errors.InvalidInput` for anything that is not
intact audio.

Truncation rule: a WAV whose ``data`` chunk is shorter than its header declares, or a FLAC (STREAMINFO)
or MP3 (Xing/Info frame) that decodes to less than its header states by more than ``max(0.25 s, 2 %)``,
raises. Containers whose length is only inferred from the data itself (Ogg/Opus, MP3 without a Xing
frame) cannot tell a cut file from a short one: their intact prefix decodes. Damage in the middle of a
stream raises when the decoder reports it; FFmpeg resynchronises past some damage (a few lost frames)
and PCM has no checksum, so such input may decode with the damage in it.
"""

from __future__ import annotations

import io
import logging
import re
import struct
from typing import Final, Literal, cast
from xml.etree import ElementTree

import av
import av.error
import mutagen.flac
import numpy as np
import numpy.typing as npt
import soundfile as sf

from gen_server.audio.postprocess import resample
from gen_server.audio.types import Audio
from gen_server.contract.spec import AudioFormat, WavSubtype
from gen_server.errors import InvalidInput

logger = logging.getLogger(__name__)

EncodeFormat = AudioFormat | Literal["pcm", "ulaw", "alaw", "aac"]

MEDIA_TYPES: Final[dict[str, str]] = {
    "wav": "audio/wav",
    "flac": "audio/flac",
    "mp3": "audio/mpeg",
    "ogg": "audio/ogg",
    "pcm": "audio/pcm",
    "ulaw": "audio/basic",
    "alaw": "audio/x-alaw-basic",
    "aac": "audio/aac",
}
"""Format name -> MIME type of the encoded bytes (``pcm``, ``ulaw``, ``alaw``: raw, rate told out of band)."""

DEFAULT_BITRATE_KBPS: Final[dict[str, int]] = {"mp3": 192, "ogg": 128}
DEFAULT_MAX_BYTES: Final[int] = 100 * 1024 * 1024

_WAV_SUBTYPES: Final[dict[str, str]] = {"pcm16": "PCM_16", "pcm24": "PCM_24", "float32": "FLOAT"}
_FLAC_SUBTYPES: Final[dict[str, str]] = {"pcm16": "PCM_16", "pcm24": "PCM_24", "float32": "PCM_24"}
# Fields libsndfile writes natively (RIFF INFO in WAV); everything else goes to the comment and iXML.
_SF_FIELDS: Final[tuple[str, ...]] = ("title", "artist", "album", "comment", "date", "copyright", "genre")
_MP3_RATES: Final[tuple[int, ...]] = (8000, 11025, 12000, 16000, 22050, 24000, 32000, 44100, 48000)
_OPUS_RATE: Final[int] = 48000
_TAG_KEY = re.compile(r"^[A-Za-z0-9_.\-]{1,64}$")
_MAX_TAG_VALUE = 4096
_MAX_IXML_BYTES = 1 << 20


# --------------------------------------------------------------------------------------------- encode


def encode(
    audio: Audio,
    fmt: EncodeFormat,
    *,
    wav_subtype: WavSubtype = "pcm16",
    tags: dict[str, str] | None = None,
    bitrate_kbps: int | None = None,
) -> bytes:
    """Encode ``audio`` as a complete file in ``fmt``.

    Samples outside [-1, 1] are clipped for integer formats (WAV/FLAC PCM, MP3, Opus, raw PCM); 32-bit
    float WAV keeps them.

    Args:
        audio: ``[channels, frames]`` float audio at any rate.
        fmt: ``wav``, ``flac``, ``mp3``, ``ogg`` (Opus), ``aac`` (ADTS, no tags), or a headerless raw
            format without tags: ``pcm`` (s16le), ``ulaw`` or ``alaw`` (G.711, 8 bits a sample).
        wav_subtype: Sample format for WAV (``pcm16``, ``pcm24``, ``float32``); FLAC uses 16 bits for
            ``pcm16`` and 24 bits otherwise; ignored by lossy formats.
        tags: Provenance tags (e.g. ``title``, ``comment``, ``software``, ``job_id``, ``model``,
            ``seed``). Keys: letters, digits, ``_.-``, at most 64 characters.
        bitrate_kbps: Lossy bitrate in kbit/s (default 192 for MP3, 128 for Opus).

    Returns:
        The encoded file.

    Raises:
        InvalidInput: Unknown format, bad tag, bitrate out of range, or more than 2 channels for MP3/Opus.
    """
    clean_tags = _check_tags(tags or {})
    if audio.frames == 0:
        raise InvalidInput("cannot encode empty audio (0 frames)")
    if fmt == "wav":
        return _encode_wav(audio, wav_subtype, clean_tags)
    if fmt == "flac":
        return _encode_flac(audio, wav_subtype, clean_tags)
    if fmt == "mp3":
        return _encode_lossy(audio, "mp3", clean_tags, bitrate_kbps)
    if fmt == "ogg":
        return _encode_lossy(audio, "ogg", clean_tags, bitrate_kbps)
    if fmt == "pcm":
        pcm = np.round(np.clip(audio.samples, -1.0, 1.0) * 32767.0).astype("<i2")
        return pcm.T.tobytes()
    if fmt in ("ulaw", "alaw"):
        return _encode_g711(audio, fmt)
    if fmt == "aac":
        return _encode_aac(audio, bitrate_kbps or 128)
    raise InvalidInput(f"unknown audio format '{fmt}'; use one of {', '.join(MEDIA_TYPES)}", field="format")


def _encode_aac(audio: Audio, kbps: int) -> bytes:
    """AAC-LC in an ADTS stream (what OpenAI-style clients expect for ``aac``; carries no tags)."""
    if audio.channels > 2:
        raise InvalidInput("AAC output takes at most 2 channels", field="format")
    layout = "mono" if audio.channels == 1 else "stereo"
    buf = io.BytesIO()
    with av.open(buf, "w", format="adts") as container:
        stream = container.add_stream("aac", rate=audio.sample_rate, layout=layout)
        stream.bit_rate = kbps * 1000
        frame = av.AudioFrame.from_ndarray(
            np.ascontiguousarray(np.clip(audio.samples, -1.0, 1.0)), format="fltp", layout=layout
        )
        frame.sample_rate = audio.sample_rate
        for packet in stream.encode(frame):
            container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)
    return buf.getvalue()


def _encode_g711(audio: Audio, fmt: Literal["ulaw", "alaw"]) -> bytes:
    """Raw G.711 (one byte a sample, channels interleaved) at the audio's own rate."""
    if audio.channels > 2:
        raise InvalidInput(f"{fmt} output takes 1 or 2 channels, got {audio.channels}", field="post.channels")
    codec, container_fmt = ("pcm_mulaw", "mulaw") if fmt == "ulaw" else ("pcm_alaw", "alaw")
    layout = "stereo" if audio.channels == 2 else "mono"
    buf = io.BytesIO()
    with av.open(buf, "w", format=container_fmt) as container:
        stream = cast(av.AudioStream, container.add_stream(codec, rate=audio.sample_rate, layout=layout))
        frame = av.AudioFrame.from_ndarray(
            np.ascontiguousarray(_clip(audio.samples)), format="fltp", layout=layout
        )
        frame.sample_rate = audio.sample_rate
        for packet in stream.encode(frame):
            container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)
    return buf.getvalue()


def _check_tags(tags: dict[str, str]) -> dict[str, str]:
    out: dict[str, str] = {}
    for key, value in tags.items():
        if not _TAG_KEY.match(key):
            raise InvalidInput(f"bad tag name {key!r}: use letters, digits, '_', '.', '-' (1-64 chars)")
        text = str(value)
        if len(text) > _MAX_TAG_VALUE or "\x00" in text:
            raise InvalidInput(f"tag {key!r} is too long or contains NUL")
        out[key.lower()] = text
    return out


def _clip(samples: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
    return np.clip(samples, -1.0, 1.0).astype(np.float32, copy=False)


def _comment_with_extras(tags: dict[str, str]) -> str | None:
    """The ``comment`` tag, followed by ``key=value`` pairs of tags with no native field."""
    extras = [f"{k}={v}" for k, v in tags.items() if k not in _SF_FIELDS and k != "software"]
    parts = [tags["comment"]] if "comment" in tags else []
    if extras:
        parts.append("; ".join(extras))
    return " | ".join(parts) if parts else None


def _encode_wav(audio: Audio, wav_subtype: WavSubtype, tags: dict[str, str]) -> bytes:
    if wav_subtype not in _WAV_SUBTYPES:
        raise InvalidInput(f"unknown wav_subtype '{wav_subtype}'", field="wav_subtype")
    samples = audio.samples if wav_subtype == "float32" else _clip(audio.samples)
    bio = io.BytesIO()
    with sf.SoundFile(
        bio,
        "w",
        samplerate=audio.sample_rate,
        channels=audio.channels,
        format="WAV",
        subtype=_WAV_SUBTYPES[wav_subtype],
    ) as f:
        f.write(samples.T)
        for key in _SF_FIELDS:
            if key in tags and key != "comment":
                setattr(f, key, tags[key])
        if "software" in tags:
            f.software = tags["software"]
        comment = _comment_with_extras(tags)
        if comment:
            f.comment = comment
    data = bio.getvalue()
    return _append_ixml(data, tags) if tags else data


def _ixml(tags: dict[str, str]) -> bytes:
    root = ElementTree.Element("BWFXML")
    ElementTree.SubElement(root, "IXML_VERSION").text = "2.10"
    if "title" in tags:
        ElementTree.SubElement(root, "PROJECT").text = tags["title"]
    if "comment" in tags:
        ElementTree.SubElement(root, "NOTE").text = tags["comment"]
    user = "\n".join(f"{k}={_escape_line(v)}" for k, v in tags.items())
    ElementTree.SubElement(root, "USER").text = user
    body: bytes = ElementTree.tostring(root, encoding="utf-8")
    return b'<?xml version="1.0" encoding="UTF-8"?>\n' + body


def _escape_line(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace("\r", "\\r")


def _unescape_line(value: str) -> str:
    return re.sub(r"\\(.)", lambda m: {"n": "\n", "r": "\r"}.get(m.group(1), m.group(1)), value)


def _append_ixml(wav: bytes, tags: dict[str, str]) -> bytes:
    """Append an ``iXML`` chunk to a RIFF/WAVE file and fix the RIFF size."""
    if wav[:4] != b"RIFF" or wav[8:12] != b"WAVE":  # pragma: no cover - soundfile always writes RIFF here
        return wav
    body = _ixml(tags)
    chunk = b"iXML" + struct.pack("<I", len(body)) + body + (b"\x00" if len(body) % 2 else b"")
    out = bytearray(wav)
    if len(out) % 2:
        out += b"\x00"
    out += chunk
    out[4:8] = struct.pack("<I", len(out) - 8)
    return bytes(out)


def _encode_flac(audio: Audio, wav_subtype: WavSubtype, tags: dict[str, str]) -> bytes:
    if wav_subtype not in _FLAC_SUBTYPES:
        raise InvalidInput(f"unknown wav_subtype '{wav_subtype}'", field="wav_subtype")
    bio = io.BytesIO()
    with sf.SoundFile(
        bio,
        "w",
        samplerate=audio.sample_rate,
        channels=audio.channels,
        format="FLAC",
        subtype=_FLAC_SUBTYPES[wav_subtype],
    ) as f:
        f.write(_clip(audio.samples).T)
    if not tags:
        return bio.getvalue()
    bio.seek(0)
    try:
        flac = mutagen.flac.FLAC(bio)
        if flac.tags is None:
            flac.add_tags()
        comments = flac.tags
        if comments is None:  # pragma: no cover - add_tags() just made them
            raise InvalidInput("could not write FLAC tags")
        for key, value in tags.items():
            comments[key] = value
        bio.seek(0)
        flac.save(bio, padding=lambda _info: 0)
    except mutagen.MutagenError as e:  # pragma: no cover - our own fresh FLAC bytes
        raise InvalidInput(f"could not write FLAC tags: {e}") from e
    return bio.getvalue()


def _encode_lossy(audio: Audio, fmt: Literal["mp3", "ogg"], tags: dict[str, str], kbps: int | None) -> bytes:
    if audio.channels > 2:
        raise InvalidInput(f"{fmt} output takes 1 or 2 channels, got {audio.channels}", field="post.channels")
    bitrate = kbps if kbps is not None else DEFAULT_BITRATE_KBPS[fmt]
    if not 8 <= bitrate <= 510:
        raise InvalidInput(f"bitrate must be 8-510 kbit/s, got {bitrate}", field="bitrate_kbps")
    if fmt == "mp3":
        codec, container_fmt = "libmp3lame", "mp3"
        rate = audio.sample_rate if audio.sample_rate in _MP3_RATES else _nearest_mp3_rate(audio.sample_rate)
    else:
        codec, container_fmt, rate = "libopus", "ogg", _OPUS_RATE
    if rate != audio.sample_rate:
        audio = resample(audio, rate)
    layout = "stereo" if audio.channels == 2 else "mono"
    samples = np.ascontiguousarray(_clip(audio.samples))
    bio = io.BytesIO()
    try:
        with av.open(bio, "w", format=container_fmt) as container:
            for key, value in tags.items():
                container.metadata[key] = value
            stream = cast(av.AudioStream, container.add_stream(codec, rate=rate, layout=layout))
            stream.bit_rate = bitrate * 1000
            if fmt == "ogg":
                # libopus's free VBR overshoots the rate on tonal input (~1.5x); constrained VBR keeps it
                stream.codec_context.options = {"vbr": "constrained"}
                for key, value in tags.items():
                    stream.metadata[key] = value
            frame = av.AudioFrame.from_ndarray(samples, format="fltp", layout=layout)
            frame.sample_rate = rate
            for packet in stream.encode(frame):
                container.mux(packet)
            for packet in stream.encode(None):
                container.mux(packet)
    except av.error.FFmpegError as e:
        raise InvalidInput(f"{fmt} encoding failed: {e}") from e
    return bio.getvalue()


def _nearest_mp3_rate(rate: int) -> int:
    higher = [r for r in _MP3_RATES if r >= rate]
    return min(higher) if higher else _MP3_RATES[-1]


# --------------------------------------------------------------------------------------------- decode


def decode(data: bytes, *, max_duration_s: float | None = None, max_bytes: int = DEFAULT_MAX_BYTES) -> Audio:
    """Decode any audio file PyAV can read (wav, flac, mp3, ogg/opus/vorbis, m4a/aac, ...).

    The first audio stream is decoded to float32 at its own rate and channel count.

    Args:
        data: The whole file.
        max_duration_s: Refuse audio longer than this (seconds). The header's stated duration is
            checked before decoding, and decoding stops as soon as the decoded length passes the limit,
            so a file whose header lies cannot make the decoder run away.
        max_bytes: Refuse inputs larger than this many bytes without parsing them.

    Returns:
        ``[channels, frames]`` float32 audio.

    Raises:
        InvalidInput: Empty, oversized, overlong, non-audio, truncated or corrupt input.
    """
    if not data:
        raise InvalidInput("empty upload: no audio data")
    if len(data) > max_bytes:
        raise InvalidInput(f"audio file is {len(data)} bytes; the limit is {max_bytes}")
    try:
        container = av.open(io.BytesIO(data), mode="r", metadata_errors="ignore")
    except (av.error.FFmpegError, UnicodeDecodeError, ValueError) as e:
        raise InvalidInput(f"not a readable audio file ({_short(e)})") from e
    try:
        return _decode_container(container, max_duration_s, data)
    finally:
        container.close()


def _short(e: BaseException) -> str:
    text = str(e).strip() or type(e).__name__
    return text[:200]


def _stated_duration_s(container: av.container.InputContainer, stream: av.AudioStream) -> float | None:
    if stream.duration is not None and stream.time_base is not None:
        return float(stream.duration * stream.time_base)
    if container.duration is not None:
        return container.duration / 1_000_000
    return None


def _decode_container(
    container: av.container.InputContainer, max_duration_s: float | None, data: bytes
) -> Audio:
    if not container.streams.audio:
        raise InvalidInput("no audio stream found in the upload")
    stream = container.streams.audio[0]
    rate = stream.codec_context.sample_rate or stream.rate
    if not rate or rate <= 0:
        raise InvalidInput("audio stream has no sample rate")
    stated = _stated_duration_s(container, stream)
    if max_duration_s is not None and stated is not None and stated > max_duration_s + 0.05:
        raise InvalidInput(f"audio is {stated:.1f} s long; the limit is {max_duration_s:g} s")
    limit_frames = None if max_duration_s is None else int(max_duration_s * rate) + int(0.05 * rate)

    chunks: list[npt.NDArray[np.float32]] = []
    total = 0
    channels = 0
    resampler: av.AudioResampler | None = None
    try:
        for frame in container.decode(stream):
            if resampler is None:
                channels = frame.layout.nb_channels
                resampler = av.AudioResampler(format="fltp", layout=frame.layout, rate=frame.sample_rate)
                if frame.sample_rate != rate:
                    rate = frame.sample_rate
                    limit_frames = None if max_duration_s is None else int((max_duration_s + 0.05) * rate)
            if frame.layout.nb_channels != channels:
                raise InvalidInput("channel count changes mid-stream; not supported")
            for out in resampler.resample(frame):
                arr = out.to_ndarray().astype(np.float32, copy=False)
                chunks.append(arr.reshape(channels, -1))
                total += arr.shape[-1]
            if limit_frames is not None and total > limit_frames:
                raise InvalidInput(f"audio is longer than the limit of {max_duration_s:g} s")
        if resampler is not None:
            for out in resampler.resample(None):
                arr = out.to_ndarray().astype(np.float32, copy=False)
                chunks.append(arr.reshape(channels, -1))
                total += arr.shape[-1]
    except av.error.FFmpegError as e:
        raise InvalidInput(f"corrupt audio data after {total / rate:.2f} s ({_short(e)})") from e
    if not chunks or total == 0:
        raise InvalidInput("the upload contains no decodable audio")
    samples = np.concatenate(chunks, axis=1)
    if not np.all(np.isfinite(samples)):
        raise InvalidInput("decoded audio contains NaN or infinite samples")
    _check_truncation(data, container, stream, samples.shape[1] / rate)
    return Audio(samples, int(rate))


def _check_truncation(
    data: bytes, container: av.container.InputContainer, stream: av.AudioStream, decoded_s: float
) -> None:
    """Raise if a header states more audio than could be decoded (see the module docstring)."""
    fmt = container.format.name
    if fmt == "wav":
        if _wav_data_truncated(data):
            raise InvalidInput(f"truncated WAV: the data chunk is cut short after {decoded_s:.2f} s")
        return
    if fmt == "flac":
        stated = _stated_duration_s(container, stream)
    elif fmt == "mp3":
        stated = _mp3_header_duration(data)
    else:
        return
    if stated is not None and decoded_s < stated - max(0.25, 0.02 * stated):
        raise InvalidInput(
            f"truncated audio: the header says {stated:.2f} s but only {decoded_s:.2f} s could be decoded"
        )


def _wav_data_truncated(wav: bytes) -> bool:
    """True when a RIFF/WAVE file's ``data`` chunk declares more bytes than the file holds."""
    if wav[:4] != b"RIFF" or wav[8:12] != b"WAVE":
        return False
    pos = 12
    while pos + 8 <= len(wav):
        cid, size = wav[pos : pos + 4], struct.unpack("<I", wav[pos + 4 : pos + 8])[0]
        if cid == b"data":
            streaming = size in (0, 0xFFFFFFFF)  # writers that could not seek back leave these
            return not streaming and size > len(wav) - (pos + 8)
        pos += 8 + size + (size % 2)
    return False


_MP3_RATES_BY_VERSION: Final[dict[int, tuple[int, int, int]]] = {
    3: (44100, 48000, 32000),  # MPEG-1
    2: (22050, 24000, 16000),  # MPEG-2
    0: (11025, 12000, 8000),  # MPEG-2.5
}


def _mp3_header_duration(mp3: bytes) -> float | None:
    """Duration (s) stated by an MP3's Xing/Info frame count, or ``None`` without one."""
    pos = 0
    if mp3[:3] == b"ID3" and len(mp3) >= 10:
        size = (mp3[6] << 21) | (mp3[7] << 14) | (mp3[8] << 7) | mp3[9]
        pos = 10 + size + (10 if mp3[5] & 0x10 else 0)
    limit = min(len(mp3) - 4, pos + 4096)
    while pos < limit and not (mp3[pos] == 0xFF and mp3[pos + 1] & 0xE0 == 0xE0):
        pos += 1
    if pos >= limit:
        return None
    header = struct.unpack(">I", mp3[pos : pos + 4])[0]
    version = (header >> 19) & 3
    layer = (header >> 17) & 3
    rate_index = (header >> 10) & 3
    mono = ((header >> 6) & 3) == 3
    if version not in _MP3_RATES_BY_VERSION or layer != 1 or rate_index == 3:
        return None
    side = (17 if mono else 32) if version == 3 else (9 if mono else 17)
    tag = pos + 4 + side
    if mp3[tag : tag + 4] not in (b"Xing", b"Info") or len(mp3) < tag + 12:
        return None
    flags = struct.unpack(">I", mp3[tag + 4 : tag + 8])[0]
    if not flags & 1:
        return None
    frames: int = struct.unpack(">I", mp3[tag + 8 : tag + 12])[0]
    per_frame = 1152 if version == 3 else 576
    return frames * per_frame / _MP3_RATES_BY_VERSION[version][rate_index]


# --------------------------------------------------------------------------------------------- tags


def read_tags(data: bytes, fmt: EncodeFormat | None = None) -> dict[str, str]:
    """Read provenance tags from an encoded file.

    Args:
        data: The whole file.
        fmt: The format, or ``None`` to let FFmpeg probe it. ``pcm`` has no tags.

    Returns:
        Lower-case tag name -> value. For WAV, the iXML ``USER`` pairs written by :func:`encode` win over
        the RIFF INFO fields. FFmpeg's own ``encoder`` tag, and names or values :func:`encode` would
        refuse, are left out.

    Raises:
        InvalidInput: The bytes are not a readable file.
    """
    if fmt == "pcm":
        return {}
    tags: dict[str, str] = {}
    try:
        with av.open(io.BytesIO(data), mode="r", metadata_errors="ignore") as container:
            tags.update({k.lower(): v for k, v in container.metadata.items()})
            for stream in container.streams.audio[:1]:
                tags.update({k.lower(): v for k, v in stream.metadata.items()})
    except av.error.FFmpegError as e:
        raise InvalidInput(f"not a readable audio file ({_short(e)})") from e
    tags.pop("encoder", None)
    if fmt == "wav" or (fmt is None and data[:4] == b"RIFF"):
        tags.update(_read_ixml_user(data))
    # only names encode() accepts, so tags read here can be written back when transcoding
    return {
        k: v for k, v in tags.items() if _TAG_KEY.match(k) and len(v) <= _MAX_TAG_VALUE and "\x00" not in v
    }


def _read_ixml_user(wav: bytes) -> dict[str, str]:
    pos = 12
    while pos + 8 <= len(wav):
        cid, size = wav[pos : pos + 4], struct.unpack("<I", wav[pos + 4 : pos + 8])[0]
        if cid == b"iXML":
            if size > _MAX_IXML_BYTES:
                return {}
            try:
                root = ElementTree.fromstring(wav[pos + 8 : pos + 8 + size].rstrip(b"\x00"))
            except ElementTree.ParseError:
                logger.warning("ignoring an unreadable iXML chunk")
                return {}
            user = root.findtext("USER") or ""
            pairs = (line.split("=", 1) for line in user.splitlines() if "=" in line)
            return {k.strip().lower(): _unescape_line(v) for k, v in pairs}
        pos += 8 + size + (size % 2)
    return {}
