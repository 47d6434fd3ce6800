"""Provenance checks shared by the API and the CLI: watermark detection plus metadata, mapped to a job,
and the file's C2PA Content Credentials (:mod:`gen_server.content_credentials`) beside them."""

from __future__ import annotations

from dataclasses import dataclass

from gen_server.audio.encode import decode, read_tags
from gen_server.audio.watermark import Detection, KeyedWatermarker
from gen_server.content_credentials import SigningIdentity, Verdict, verify
from gen_server.errors import NotFound
from gen_server.storage import ArtifactStore, watermark_key_for

MAX_DETECT_S = 1800.0
_CONTAINER_GUESS = (("RIFF", "wav"), ("fLaC", "flac"), ("OggS", "ogg"), ("ID3", "mp3"))


@dataclass(frozen=True, slots=True)
class Found:
    detection: Detection
    job_id: str | None
    metadata_job_id: str | None
    c2pa: Verdict


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
    detection = KeyedWatermarker(key.encode()).detect(audio)
    job_id = None
    if detection.detected and detection.payload is not None and store is not None:
        try:
            job_id = store.get(watermark_key_for(detection.payload)).decode()
        except NotFound:
            job_id = None
    fmt = _guess_format(data)
    metadata_job_id = None
    if fmt is not None:
        try:
            metadata_job_id = read_tags(data, fmt).get("job_id")  # type: ignore[arg-type]
        except Exception:  # metadata is a bonus; the watermark is the evidence
            metadata_job_id = None
    return Found(detection, job_id, metadata_job_id, verify(data, fmt, identity))
