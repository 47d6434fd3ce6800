"""A job's audio as it is made: chunks published to the job's Redis stream while the model runs.

Backends hand finished pieces (a sentence of speech, about a second of music or effects) to
``GenRequest.on_audio``; :class:`StreamPublisher` post-processes each one for streaming
(:func:`~gen_server.audio.postprocess.stream_chain`), marks it with the job's watermark payload on the
stream's own period grid (so the joined stream reads as one mark), and appends it to
``keys.stream(job_id)`` in pieces of at most :data:`MAX_PIECE_S` (small messages; never the whole clip).
The stream ends with an ``end`` entry when the job ends.

Entries (all values strings/bytes, see :mod:`gen_server.streams` for the reader):

* ``t=audio``: ``attempt``, ``offset`` (first frame of the piece in the job's stream), ``rate``, ``ch``,
  ``pcm`` (signed 16-bit little-endian interleaved).
* ``t=end``: ``state`` (``succeeded``/``failed``/``cancelled``), ``error`` (JSON or empty).

A redelivered job starts again at offset 0 with a higher ``attempt``; readers skip frames they
already have, so a client sees one continuous stream (generation repeats from the job's seed).
"""

from __future__ import annotations

import json
import logging
import threading
from typing import Any

import numpy as np
import redis

from gen_server.audio import Audio
from gen_server.audio.postprocess import stream_chain
from gen_server.audio.stream_encode import pcm16
from gen_server.audio.watermark import Watermarker, bands_for, payload_for_job
from gen_server.contract.spec import JobSpec
from gen_server.records import keys

logger = logging.getLogger(__name__)

MAX_PIECE_S = 1.0
"""Longest piece of audio in one stream entry, seconds."""
LIVE_TTL_S = 24 * 3600
"""A stream's lifetime while its job runs (renewed at every entry), seconds."""
ENDED_TTL_S = 3600
"""How long an ended job's stream stays readable (late clients), seconds; the stored file stays."""


class StreamPublisher:
    """Publishes one job's audio chunks (``on_audio``) and its end (:meth:`end`).

    Args:
        client: Redis connection.
        spec: The job.
        watermarker: The worker's watermarker.
        watermark_key: Key deriving the job's payload (the same payload as the stored file).
        attempt: This delivery's attempt number.
    """

    def __init__(
        self,
        client: redis.Redis[Any] | redis.Redis,  # type: ignore[type-arg]
        spec: JobSpec,
        watermarker: Watermarker,
        watermark_key: bytes,
        attempt: int,
    ) -> None:
        self._redis = client
        self._spec = spec
        self._watermarker = watermarker
        self._payload = payload_for_job(spec.job_id, watermark_key)
        self._attempt = attempt
        self._key = keys.stream(spec.job_id)
        self._offset = 0
        self._lock = threading.Lock()

    def on_audio(self, audio: Audio) -> None:
        """Process, mark and publish the next chunk (called by the model's thread; never raises)."""
        try:
            with self._lock:
                self._publish(audio)
        except Exception:  # a stream is a convenience: the job's stored file must not depend on it
            logger.exception("job %s: could not publish a stream chunk", self._spec.job_id)

    def _publish(self, audio: Audio) -> None:
        chunk = stream_chain(audio, self._spec.post, self._spec.kind)
        at_s = self._offset / chunk.sample_rate
        chunk = self._watermarker.embed(chunk, self._payload, at_s=at_s, bands=bands_for(self._spec.kind))
        pcm = pcm16(chunk.samples)
        step = max(int(MAX_PIECE_S * chunk.sample_rate), 1)
        pipe = self._redis.pipeline()
        for start in range(0, pcm.shape[0], step):
            piece = np.ascontiguousarray(pcm[start : start + step])
            pipe.xadd(
                self._key,
                {
                    "t": "audio",
                    "attempt": self._attempt,
                    "offset": self._offset + start,
                    "rate": chunk.sample_rate,
                    "ch": chunk.channels,
                    "pcm": piece.tobytes(),
                },
            )
        pipe.expire(self._key, LIVE_TTL_S)
        pipe.execute()
        self._offset += pcm.shape[0]


def end_stream(
    client: redis.Redis[Any] | redis.Redis,  # type: ignore[type-arg]
    job_id: str,
    state: str,
    error: dict[str, Any] | None = None,
) -> None:
    """Close a job's stream: readers stop after everything before this entry (never raises)."""
    key = keys.stream(job_id)
    try:
        pipe = client.pipeline()
        pipe.xadd(key, {"t": "end", "state": state, "error": json.dumps(error) if error else ""})
        pipe.expire(key, ENDED_TTL_S)
        pipe.execute()
    except redis.RedisError:
        logger.exception("job %s: could not end its stream", job_id)
