"""Provenance checks shared by the API and the CLI: watermark detection plus metadata, mapped to a job,
and the file's C2PA Content Credentials (:mod:`gen_server.content_credentials`) beside them."""

from __future__ import annotations

from dataclasses import dataclass

from gen_server.audio.encode import decode, read_tags
from gen_server.audio.watermark import Detection, KeyedWatermarker, Span
from gen_server.content_credentials import SigningIdentity, Verdict, verify
from gen_server.errors import NotFound
from gen_server.storage import ArtifactStore, watermark_key_for

MAX_DETECT_S = 1800.0
_CONTAINER_GUESS = (("RIFF", "wav"), ("fLaC", "flac"), ("OggS", "ogg"), ("ID3", "mp3"))


@dataclass(frozen=True, slots=True)
class LocatedSpan:
    """A stretch of the file that carries a payload, and the job that payload maps to (if stored)."""

    span: Span
    job_id: str | None


@dataclass(frozen=True, slots=True)
class Found:
    detection: Detection
    job_id: str | None
    metadata_job_id: str | None
    c2pa: Verdict
    spans: tuple[LocatedSpan, ...] = ()


def _guess_format(data: bytes) -> str | None:
    head = data[:4].decode("latin-1")
    for magic, fmt in _CONTAINER_GUESS:
        if head.startswith(magic):
            return fmt
    if data[:2] in (b"\xff\xfb", b"\xff\xf3", b"\xff\xf2"):
        return "mp3"
    return None


def detect_bytes(
    data: bytes, key: str, store: ArtifactStore | None, identity: SigningIdentity | None = None
) -> Found:
    """Decode ``data`` (any format), detect the mark with ``key`` and look its payload up in ``store``;
    read and validate its C2PA manifest (``identity``: this installation's, whose CA it trusts).

    Raises:
        InvalidInput: when ``data`` is not decodable audio.
    """
    audio = decode(data, max_duration_s=MAX_DETECT_S)
    marker = KeyedWatermarker(key.encode())
    detection = marker.detect(audio)
    spans = marker.locate(audio, whole=detection)  # where each payload is: a clip inside a recording, ...
    if not detection.detected and spans:  # found only in a part: report the strongest stretch
        best = max(spans, key=lambda span: span.confidence)
        detection = Detection(True, best.payload, best.confidence, best.offset_s)

    def job_of(payload: int | None) -> str | None:
        if payload is None or store is None:
            return None
        try:
            return store.get(watermark_key_for(payload)).decode()
        except NotFound:
            return None

    job_id = job_of(detection.payload) if detection.detected else None
    located = tuple(LocatedSpan(span, job_of(span.payload)) for span in spans)
    fmt = _guess_format(data)
    metadata_job_id = None
    if fmt is not None:
        try:
            metadata_job_id = read_tags(data, fmt).get("job_id")  # type: ignore[arg-type]
        except Exception:  # metadata is a bonus; the watermark is the evidence
            metadata_job_id = None
    return Found(detection, job_id, metadata_job_id, verify(data, fmt, identity), located)


@dataclass(frozen=True, slots=True)
class Clone:
    """Whether the job behind a mark cloned a voice: ``voice_id`` names a library voice (``None`` when
    the job cloned raw uploads, allowed only under ``SOUNDRY_CLONING=open``)."""

    voice_id: str | None
    consent_sha256: str | None

    def describe(self) -> str:
        return f"cloned voice {self.voice_id}" if self.voice_id else "cloned voice (raw reference uploads)"


def clone_of(store: ArtifactStore, job_id: str) -> Clone | None:
    """The cloned voice the job ``job_id`` spoke with, from its stored manifest; ``None`` when it cloned
    nothing (or its manifest is gone)."""
    import json

    from gen_server.storage import manifest_key

    try:
        spec = json.loads(store.get(manifest_key(job_id)))["spec"]
    except (NotFound, KeyError, ValueError):
        return None
    if spec.get("voice_id"):
        return Clone(spec["voice_id"], spec.get("voice_consent_sha256"))
    if spec.get("reference_uploads"):
        return Clone(None, None)
    return None
