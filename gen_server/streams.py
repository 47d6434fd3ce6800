"""Reading a job's audio stream (written by workers/streaming.py) as it is made, and encoding it.

A reader gets everything so far, then the rest live (``XREAD BLOCK`` on the job's Redis stream), and
stops at the stream's ``end`` entry, or when the job record says the job ended (a job that failed or
was cancelled before it made any audio has no stream). Frames a reader already has are skipped, so a
job that was handed out again (its worker died) continues the stream instead of repeating it.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
import redis

from gen_server.audio.encode import decode
from gen_server.audio.stream_encode import StreamEncoder, pcm16
from gen_server.contract.result import JobError, JobState
from gen_server.errors import from_code
from gen_server.jobs import TERMINAL, Caller, JobService
from gen_server.records import keys

BLOCK_MS = 500
"""How long one read waits for new audio before the reader checks whether the job ended."""


@dataclass(frozen=True, slots=True)
class Piece:
    """Audio: ``pcm`` is ``[frames, channels]`` signed 16-bit."""

    pcm: npt.NDArray[np.int16]
    sample_rate: int

    @property
    def channels(self) -> int:
        return int(self.pcm.shape[1])


@dataclass(frozen=True, slots=True)
class End:
    """The job ended: ``state`` and, unless it succeeded, its error."""

    state: JobState
    error: JobError | None = None


def _raw_client(client: redis.Redis) -> redis.Redis:
    """A client on the same server that returns bytes (the service's decodes to str; PCM is binary)."""
    pool = client.connection_pool
    kwargs = {**pool.connection_kwargs, "decode_responses": False}
    return redis.Redis(connection_pool=redis.ConnectionPool(connection_class=pool.connection_class, **kwargs))


def read_job_stream(service: JobService, job_id: str, caller: Caller) -> Iterator[Piece | End]:
    """The job's audio pieces in order, then one :class:`End` (also for a job without a stream).

    Raises:
        NotFound: No such job for ``caller`` (checked before the first piece).
    """
    service.get(job_id, caller)  # exists and is the caller's

    def ended() -> End | None:
        view = service.get(job_id, caller)
        return End(view.state, view.error) if view.state in TERMINAL else None

    client = _raw_client(service.redis)
    try:
        yield from read_stream(client, job_id, ended)
    finally:
        client.connection_pool.disconnect()


def read_stream(client: redis.Redis, job_id: str, ended: Callable[[], End | None]) -> Iterator[Piece | End]:
    """:func:`read_job_stream` on a bytes-returning ``client``; ``ended`` reads the job record's end."""
    key = keys.stream(job_id)
    last_id: bytes | str = "0-0"
    have = 0  # frames already yielded
    while True:
        reply: Any = client.xread({key: last_id}, count=64, block=BLOCK_MS)
        if not reply:
            end = ended()
            if end is not None and not client.xread({key: last_id}, count=1):
                yield end
                return
            continue
        for entry_id, fields in reply[0][1]:
            last_id = entry_id
            if fields[b"t"] == b"end":
                error = fields.get(b"error") or b""
                state: JobState = fields[b"state"].decode()
                yield End(state, JobError.model_validate(json.loads(error)) if error else None)
                return
            channels = int(fields[b"ch"])
            pcm = np.frombuffer(fields[b"pcm"], dtype="<i2").reshape(-1, channels)
            offset = int(fields[b"offset"])
            if offset + pcm.shape[0] <= have:  # a redelivered job repeating what was sent
                continue
            pcm = pcm[max(have - offset, 0) :]
            have = max(have, offset) + pcm.shape[0]
            yield Piece(pcm, int(fields[b"rate"]))


class StreamBroken(Exception):
    """The job failed after its stream began: raised inside the response so the connection is cut.

    A streamed HTTP body cannot carry a status after it began; ending it cleanly would make a cut file
    look whole, while an aborted chunked response is an error every HTTP client reports.
    """


def encoded_job_stream(
    service: JobService, job_id: str, caller: Caller, fmt: str, bitrate_kbps: int | None = None
) -> tuple[Iterator[bytes], int, int]:
    """The job's audio as one file in ``fmt``, chunk by chunk as it is made (blocks: call in a thread).

    Returns:
        The file's chunks, its sample rate (Hz) and channel count.

    The first piece is awaited here, so a job that fails before it made any audio raises its own error
    (a proper 4xx/5xx). A job whose model does not stream (or whose stream expired) is sent from its
    stored file when it ends.

    Raises:
        SoundryError: The job ended without audio (its own error), or ``fmt`` cannot be streamed.
    """
    items = read_job_stream(service, job_id, caller)
    first = next(items)
    if isinstance(first, End):
        if first.state != "succeeded":
            error = first.error
            raise from_code(error.code, error.message, error.field) if error else from_code("", first.state)
        service.wait(job_id, caller, timeout_s=60)  # the stream's end can come before the result is stored
        data, _, _ = service.audio(job_id, caller)  # made without streaming: the stored file
        audio = decode(data)
        first = Piece(pcm16(audio.samples), audio.sample_rate)
    title = f"Soundry job {job_id}"
    encoder = StreamEncoder(fmt, first.sample_rate, first.channels, bitrate_kbps=bitrate_kbps, title=title)
    return _encoded(job_id, first, items, encoder), first.sample_rate, first.channels


def _encoded(
    job_id: str, first: Piece, rest: Iterator[Piece | End], encoder: StreamEncoder
) -> Iterator[bytes]:
    yield encoder.feed(first.pcm)
    for item in rest:
        if isinstance(item, Piece):
            if data := encoder.feed(item.pcm):
                yield data
        elif item.state != "succeeded":
            message = item.error.message if item.error else item.state
            raise StreamBroken(f"job {job_id} ended {item.state} while streaming: {message}")
    yield encoder.close()
