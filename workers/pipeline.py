"""A job's steps around the model call: its request (:func:`gen_request`), the finish (:func:`finish`:
post-process -> watermark -> encode -> C2PA sign -> store, manifest last) and the redelivery short-cut
(:func:`cached_result`). The orchestration is :meth:`workers.runtime.WorkerRuntime.execute`."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import platform
import time
from importlib import metadata
from typing import Any

from gen_server.audio import Audio
from gen_server.audio.encode import decode, encode
from gen_server.audio.postprocess import apply_chain
from gen_server.audio.watermark import Watermarker, bands_for, payload_for_job
from gen_server.content_credentials import Signing, sign_job_file
from gen_server.contract.result import JobResult, SpeechCheck, WordTiming
from gen_server.contract.spec import JobSpec
from gen_server.errors import NotFound
from gen_server.storage import (
    ArtifactStore,
    audio_key,
    manifest_key,
    upload_key,
    voice_reference_key,
    watermark_key_for,
)
from workers import editing
from workers.backends.base import GenRequest

logger = logging.getLogger(__name__)

GENERATOR = "Soundry 0.1.0"
_VERSIONED = ("soundry", "torch", "audiocraft", "coqui-tts", "piper-tts", "diffusers", "numpy")


def library_versions() -> dict[str, str]:
    versions = {"python": platform.python_version()}
    for name in _VERSIONED:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return versions


def cached_result(spec: JobSpec, store: ArtifactStore) -> JobResult | None:
    """The result of an earlier run of this job when its manifest (written last) exists."""
    key = manifest_key(spec.job_id)
    if not store.exists(key):
        return None
    manifest = json.loads(store.get(key))
    result = JobResult.model_validate(manifest["result"])
    if not store.exists(result.artifact):
        return None
    return result.model_copy(update={"cached": True})


def _upload(store: ArtifactStore, upload_id: str | None) -> Audio | None:
    return decode(store.get(upload_key(upload_id))) if upload_id else None


def _references(store: ArtifactStore, spec: JobSpec) -> tuple[Audio, ...]:
    """The clips to clone: the library voice's (``voices/<id>/reference-N.wav``) or the raw uploads.

    Raises:
        NotFound: the job's voice has no clips (deleted after the job was queued).
    """
    if spec.voice_id is None:
        return tuple(a for a in (_upload(store, u) for u in spec.reference_uploads) if a is not None)
    keys = [voice_reference_key(spec.voice_id, i) for i in range(3)]
    found = tuple(decode(store.get(k)) for k in keys if store.exists(k))
    if not found:
        raise NotFound(f"voice '{spec.voice_id}' has no clips (deleted?)", field="voice_id")
    return found


def gen_request(spec: JobSpec, store: ArtifactStore) -> GenRequest:
    """The backend request for ``spec``, with uploads decoded from storage."""
    return GenRequest(
        prompt=editing.model_prompt(spec),
        seed=spec.seed,
        duration_s=editing.generation_seconds(spec),
        top_k=spec.sampling.top_k if spec.sampling.top_k is not None else 250,
        top_p=spec.sampling.top_p,
        temperature=spec.sampling.temperature,
        cfg_coef=spec.sampling.cfg_coef,
        voice=spec.voice,
        language=spec.language,
        speed=spec.speed,
        melody=_upload(store, spec.melody_upload),
        continuation=_upload(store, spec.continuation_upload),
        references=_references(store, spec),
        voice_id=spec.voice_id,
        lexicon=tuple(sorted(spec.lexicon.items())),
        steps=spec.sampling.steps,
        negative_prompt=spec.sampling.negative_prompt,
        init_audio=_upload(store, spec.init_audio_upload),
        init_noise_level=spec.init_noise_level,
    )


def finish(
    spec: JobSpec,
    audio: Audio,
    *,
    watermarker: Watermarker,
    watermark_key: bytes,
    store: ArtifactStore,
    generation_s: float,
    batch_size: int = 1,
    signing: Signing | None = None,
) -> JobResult:
    """Post-process, watermark, encode, sign and store one generated clip; the manifest is written last.

    ``generation_s`` is the wall time of the model call that made ``audio``, which served
    ``batch_size`` jobs (1 unless the worker batched it with others). With ``signing``, a WAV, MP3 or
    FLAC file is stored with its C2PA manifest (:mod:`gen_server.content_credentials`); the result's
    ``sha256`` is of the bytes stored.
    """
    shaped = editing.shape(spec, audio)
    audio = apply_chain(shaped.audio, spec.post, spec.kind, to_loop=shaped.loop is not None)
    payload = payload_for_job(spec.job_id, watermark_key)
    audio = watermarker.embed(audio, payload, bands=bands_for(spec.kind))
    audio, loop = editing.cut_loop(shaped, audio)
    analysis = editing.analysis_of(spec, audio)
    tags = {
        "generator": GENERATOR,
        "model": spec.model,
        "seed": str(spec.seed),
        "job_id": spec.job_id,
        "prompt": spec.prompt[:500],
    }
    if spec.licence:
        tags["licence"] = spec.licence
    if spec.voice_id is not None:  # a cloned voice: which one, and the consent it was made with
        tags["voice_id"] = spec.voice_id
        tags["voice_consent_sha256"] = spec.voice_consent_sha256 or ""
    if analysis is not None and analysis.tempo_bpm is not None:
        tags["bpm"] = f"{analysis.tempo_bpm:g}"
    if analysis is not None and analysis.key is not None:
        tags["key"] = analysis.key
    data = encode(audio, spec.format, wav_subtype=spec.wav_subtype, tags=tags, bitrate_kbps=spec.bitrate_kbps)
    warnings = list(shaped.warnings or ())
    data, signed = sign_job_file(data, spec, signing, payload, warnings)
    result = JobResult(
        job_id=spec.job_id,
        artifact=audio_key(spec.job_id, spec.format),
        manifest=manifest_key(spec.job_id),
        format=spec.format,
        sample_rate=audio.sample_rate,
        channels=audio.channels,
        duration_s=round(audio.duration_s, 4),
        seed=spec.seed,
        model=spec.model,
        sha256=hashlib.sha256(data).hexdigest(),
        watermark_payload=f"{payload:08x}",
        generation_s=round(generation_s, 3),
        batch_size=batch_size,
        words=[
            WordTiming(text=w.text, start_s=round(w.start_s, 3), end_s=round(w.end_s, 3), source=w.source)
            for w in audio.words
        ]
        or None,
        qc=SpeechCheck(**dataclasses.asdict(audio.qc)) if audio.qc is not None else None,
        analysis=analysis,
        tempo=shaped.tempo,
        loop=loop,
        warnings=warnings or None,
        c2pa=signed,
    )
    manifest: dict[str, Any] = {
        "generator": GENERATOR,
        "spec": spec.model_dump(mode="json"),
        "result": result.model_dump(mode="json"),
        "versions": library_versions(),
        "created_at": time.time(),
    }
    store.put(result.artifact, data)
    store.put(watermark_key_for(payload), spec.job_id.encode())
    store.put(result.manifest, json.dumps(manifest, indent=2).encode())
    return result
