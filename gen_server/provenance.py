"""Provenance checks shared by the API and the CLI: watermark detection plus metadata, mapped to a job,
and the file's C2PA Content Credentials (:mod:`gen_server.content_credentials`) beside them."""

from __future__ import annotations

import threading
import time
import weakref
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Literal

from gen_server.audio.encode import decode, read_tags
from gen_server.audio.watermark import Detection, IssuedPayloads, KeyedWatermarker, Span, payload_for_job
from gen_server.content_credentials import SigningIdentity, Verdict, verify
from gen_server.errors import NotFound
from gen_server.storage import WATERMARK_INDEX, ArtifactStore, watermark_key_for

MAX_DETECT_S = 1800.0
ISSUED_RECHECK_S = 2.0
"""A detection that found nothing lists the index again when its listing is older than this."""
ISSUED_FRESH_S = 30.0
"""How long a listing of the watermark index serves detections before it is listed again (a detection
that finds nothing re-lists sooner, :data:`ISSUED_RECHECK_S`)."""
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

    @property
    def method(self) -> Literal["decoded", "matched"] | None:
        """``decoded`` (the mark carried its payload), ``matched`` (an issued payload's pattern matched a
        mark too weak to decode), or ``None`` (nothing found)."""
        if not self.detection.detected:
            return None
        return "matched" if self.detection.informed else "decoded"


def _guess_format(data: bytes) -> str | None:
    head = data[:4].decode("latin-1")
    for magic, fmt in _CONTAINER_GUESS:
        if head.startswith(magic):
            return fmt
    if data[:2] in (b"\xff\xfb", b"\xff\xf3", b"\xff\xf2"):
        return "mp3"
    return None


class _IssuedIndex:
    """The payloads the store's watermark index holds (every job this installation made), listed when
    a detection first needs them (a mark too weak to decode), at most every :data:`ISSUED_FRESH_S` per
    store, and shared by this process's detections."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._read: weakref.WeakKeyDictionary[ArtifactStore, tuple[float, IssuedPayloads]] = (
            weakref.WeakKeyDictionary()
        )

    def of(self, store: ArtifactStore, max_age_s: float = ISSUED_FRESH_S) -> IssuedPayloads:
        with self._lock:
            read = self._read.get(store)
            if read is None or time.monotonic() - read[0] > max_age_s:  # listed on first use
                listing = IssuedPayloads(
                    lambda: _payloads(store.names(WATERMARK_INDEX)),
                    relist=lambda old: self._newer(store, old),
                )
                read = (time.monotonic(), listing)
                self._read[store] = read
            return read[1]

    def _newer(self, store: ArtifactStore, old: IssuedPayloads) -> IssuedPayloads | None:
        """A listing newer than ``old`` when ``old`` is over :data:`ISSUED_RECHECK_S` old (a detection
        that found nothing: the job it comes from may have been indexed since), else ``None``."""
        newer = self.of(store, ISSUED_RECHECK_S)
        return None if newer is old else newer


def _payloads(names: Iterable[str]) -> Iterator[int]:
    for name in names:
        try:
            yield int(name, 16)
        except ValueError:
            continue


issued_index = _IssuedIndex()


def detect_bytes(
    data: bytes,
    key: str,
    store: ArtifactStore | None,
    identity: SigningIdentity | None = None,
    *,
    claim: str | None = None,
) -> Found:
    """Decode ``data`` (any format), detect the mark with ``key`` and look its payload up in ``store``;
    read and validate its C2PA manifest (``identity``: this installation's, whose CA it trusts).

    A mark too weak to decode is still found when it matches one of the payloads in ``store``'s
    watermark index (informed detection: ``detection.informed``), or, with ``claim`` (a job id the
    caller says made the file), that job's payload alone: one test instead of one per issued payload,
    so its threshold is lower and weaker marks confirm the claim.

    Raises:
        InvalidInput: when ``data`` is not decodable audio.
    """
    audio = decode(data, max_duration_s=MAX_DETECT_S)
    marker = KeyedWatermarker(key.encode())
    if claim is not None:
        issued: IssuedPayloads | None = IssuedPayloads([payload_for_job(claim, key.encode())])
    else:
        issued = issued_index.of(store) if store is not None else None
    detection = marker.detect(audio, issued)  # a miss lists the index again (jobs made since)
    if claim is None and store is not None:
        issued = issued_index.of(store)  # that newer listing, if the detection made one
    spans = marker.locate(audio, whole=detection, issued=issued)  # a clip inside a recording, ...
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
