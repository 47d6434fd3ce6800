"""Streaming for audiocraft's MusicGen/AudioGen: audio handed out while the language model still runs.

audiocraft's progress callback only gets counts, so :class:`TokenTap` taps the sampling itself: while
active it wraps the LM's ``generate`` (to learn each pass's prompt and length) and
``_sample_next_token`` (to see each step's ``[B, K, 1]`` tokens). The LM samples an interleaved
sequence: step ``s`` of the codebook pattern (``lm.pattern_provider.get_pattern(max_gen_len).layout[s]``)
holds one ``(t, q)`` coordinate per codebook it produces (with the delay pattern, codebook ``q`` of
frame ``t`` comes at step ``t + delay[q] + 1``). A frame is *final* once every codebook has produced
it; final frames are handed on in order, whatever the pattern.

:class:`ChunkedDecoder` decodes final frames with the compression model in chunks of
:data:`STREAM_CHUNK_S`, each with context frames on both sides (:data:`LEFT_CONTEXT_FRAMES`,
:data:`RIGHT_CONTEXT_FRAMES`), keeping the middle: EnCodec's decoder is not causal (convolutions look
ahead) and carries an LSTM state, so a chunk decoded alone differs from the one-shot decode near its
edges. With the context the stitched stream matches the one-shot decode of the same tokens: -132 dB
on a real-size random-weight 32 kHz EnCodec, -142..-146 dB on the tiny checkpoints (see
``tests/workers/test_streaming_music.py``). A chunk waits for its right context (100 ms of audio at
50 Hz), except at the clip's end. The returned clip is still decoded once, as audiocraft does: the
stream never changes it.

Long-form clips (windowed extension) call ``lm.generate`` once per window; each later window's
prompt is the tail of the frames already made, so only the frames after its prompt are new. A
continuation prompt (the first pass's prompt) is part of the returned clip and streams first.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import numpy as np

from gen_server.audio import Audio
from workers.backends._shadow import shadowed
from workers.backends.base import AudioSink

logger = logging.getLogger(__name__)

STREAM_CHUNK_S = 1.0
"""Audio per streamed piece, seconds (the last piece of a clip may be shorter)."""
LEFT_CONTEXT_FRAMES = 25
"""Token frames decoded before a chunk and thrown away (0.5 s at 50 Hz): warms up the decoder's LSTM."""
RIGHT_CONTEXT_FRAMES = 5
"""Token frames decoded after a chunk and thrown away (100 ms at 50 Hz): the convolutions' lookahead.

A chunk waits for these frames, so they add to the stream's latency; the left context costs only
compute. Measured on a real-size random-weight 32 kHz EnCodec, stitched vs one-shot decode: left/right
5/5 frames -85 dB, 10/5 -102 dB, 20/5 -132 dB; 5/3 -63 dB; no right context -45 dB (the error sits at
each chunk's right edge), no left context -45 dB."""


class ChunkedDecoder:
    """Decodes a growing token sequence in chunks and hands each row's audio to its own sink.

    Frames come in through :meth:`extend` (``[B, K, n]`` final tokens, in order); every chunk whose
    right context is there is decoded and sent. :meth:`finish` sends the rest (no right context
    exists past the clip's end, nor in the one-shot decode). In total each sink receives exactly
    ``total_samples`` frames of audio.

    Args:
        compression_model: audiocraft's (possibly stereo-wrapped) compression model.
        sinks: One entry per batch row; rows whose sink is ``None`` are not decoded.
        total_frames: Token frames of the whole clip: the decoder finishes once it has them all.
        total_samples: Audio frames of the returned clip (``round(duration_s * sample_rate)``).
        chunk_s: Audio per piece, seconds.
        left_context_frames: Token frames decoded before each chunk and dropped.
        right_context_frames: Token frames decoded after each chunk and dropped (a chunk waits for them).
    """

    def __init__(
        self,
        compression_model: Any,
        sinks: Sequence[AudioSink | None],
        total_frames: int,
        total_samples: int,
        *,
        chunk_s: float = STREAM_CHUNK_S,
        left_context_frames: int = LEFT_CONTEXT_FRAMES,
        right_context_frames: int = RIGHT_CONTEXT_FRAMES,
    ) -> None:
        self._model = compression_model
        self._rows = [i for i, sink in enumerate(sinks) if sink is not None]
        self._sinks = [sink for sink in sinks if sink is not None]
        self._all_rows = len(self._rows) == len(sinks)
        self._sample_rate = int(compression_model.sample_rate)
        self._step = max(int(getattr(compression_model, "num_virtual_steps", 1)), 1)
        frame_rate = float(compression_model.frame_rate)
        self._chunk = self._align(max(round(chunk_s * frame_rate), self._step))
        self._left = self._align(left_context_frames + self._step - 1)
        self._right = self._align(right_context_frames + self._step - 1)
        self.total_frames = total_frames
        self.total_samples = total_samples
        self._buffer: Any = None  # frames [self._buffer_start, self.final) of the streaming rows
        self._buffer_start = 0
        self._pending: list[Any] = []
        self.final = 0  # frames received
        self._decoded = 0  # frames sent as audio
        self.samples_sent = 0
        self.pieces_sent = 0
        self.finished = False

    def _align(self, frames: int) -> int:
        """Round down to whole codec steps (two per frame for stereo interleaved per timestep)."""
        return frames - frames % self._step

    def extend(self, codes: Any) -> None:
        """Take the next ``[B, K, n]`` final frames; decode and send every chunk now complete."""
        if self.finished or codes.shape[-1] == 0:
            return
        if not self._all_rows:
            codes = codes[self._rows]
        self._pending.append(codes.clone())
        self.final += int(codes.shape[-1])
        if self.final >= self.total_frames:
            self.finish()
        elif self.final >= self._decoded + self._chunk + self._right:
            self._send(flush=False)

    def finish(self) -> None:
        """Send everything not sent yet, then silence if the tokens fall short (idempotent)."""
        if self.finished:
            return
        self._send(flush=True)
        self.finished = True
        short = self.total_samples - self.samples_sent
        if short > 0:
            channels = int(self._model.channels)
            self._deliver(np.zeros((len(self._sinks), channels, short), dtype=np.float32))

    def _send(self, *, flush: bool) -> None:
        import torch

        if self._pending:
            parts = ([self._buffer] if self._buffer is not None else []) + self._pending
            self._buffer = torch.cat(parts, dim=-1) if len(parts) > 1 else parts[0]
            self._pending = []
        while self._decoded < self.final and self.samples_sent < self.total_samples:
            stop = self._decoded + self._chunk
            if stop + self._right > self.final:
                if not flush:
                    break
                stop = self.final
            lo = max(self._decoded - self._left, 0)
            hi = self._align(min(stop + self._right, self.final)) if stop < self.final else self.final
            codes = self._buffer[..., lo - self._buffer_start : hi - self._buffer_start]
            # audiocraft runs the LM under fp16 autocast on GPUs but decodes the clip outside it
            with torch.autocast(codes.device.type, enabled=False):
                wav = self._model.decode(codes, None)
            hop = int(wav.shape[-1]) // (hi - lo)
            wav = wav[..., (self._decoded - lo) * hop : (stop - lo) * hop]
            self._decoded = stop
            self._deliver(wav.detach().to("cpu").float().numpy())
        keep = max(self._decoded - self._left, 0)  # left context of the next chunk
        if self._buffer is not None and keep > self._buffer_start:
            self._buffer = self._buffer[..., keep - self._buffer_start :]
            self._buffer_start = keep

    def _deliver(self, samples: np.ndarray) -> None:
        """Send ``[rows, channels, n]`` samples, cut at the clip's length, one piece per sink."""
        samples = samples[..., : self.total_samples - self.samples_sent]
        if samples.shape[-1] == 0:
            return
        samples = np.clip(np.nan_to_num(samples, nan=0.0, posinf=1.0, neginf=-1.0), -1.0, 1.0)
        self.samples_sent += int(samples.shape[-1])
        self.pieces_sent += 1
        for sink, row in zip(self._sinks, samples, strict=True):
            sink(Audio(np.ascontiguousarray(row, dtype=np.float32), self._sample_rate))


class FrameAssembler:
    """One generation's tokens put back in clip order as steps sample them: what is final so far.

    Each decoding step of the delay pattern writes one token per codebook at ``(t, q)`` coordinates
    of different frames; a frame is final once all its codebooks are written. Used by the token tap
    (one per ``lm.generate`` call) and by step-level batching (one per row).
    """

    def __init__(self, pattern: Any, prompt_frames: int, max_gen_len: int, n_q: int) -> None:
        self.pattern = pattern
        self.prompt_frames = prompt_frames
        self.max_gen_len = max_gen_len
        self.n_q = n_q
        self.codes: Any = None  # [B, K, max_gen_len], made at the first step (B is known then)
        self.step = int(pattern.get_first_step_with_timesteps(prompt_frames))  # as ``lm.generate``
        self.filled = np.zeros(max_gen_len, dtype=np.int64)
        self.filled[:prompt_frames] = n_q
        self.ready = prompt_frames  # frames [0, ready) are final

    def record(self, token: Any) -> Any:
        """Take one step's ``[B, K, 1]`` tokens; returns the frames that became final, ``[B, K, n]``.

        Raises:
            RuntimeError: More steps than the pattern has.
        """
        import torch

        if self.step >= len(self.pattern.layout):
            raise RuntimeError("the LM sampled more steps than its codebook pattern has")
        if self.codes is None:
            shape = (int(token.shape[0]), self.n_q, self.max_gen_len)
            self.codes = torch.full(shape, -1, dtype=torch.long, device=token.device)
        coords = [c for c in self.pattern.layout[self.step] if self.prompt_frames <= c.t < self.max_gen_len]
        self.step += 1
        start = self.ready
        if coords:
            ts = [int(c.t) for c in coords]
            qs = [int(c.q) for c in coords]
            self.codes[:, qs, ts] = token[:, qs, 0]  # copied now: audiocraft then masks ``token`` in place
            np.add.at(self.filled, ts, 1)
            while self.ready < self.max_gen_len and self.filled[self.ready] >= self.n_q:
                self.ready += 1
        return self.codes[..., start : self.ready]


class TokenTap:
    """Hands the frames an LM makes, final and in clip order, to ``on_frames`` while it samples.

    Use :func:`tap_tokens`. Each ``lm.generate`` call (one per window) reports its new frames; the
    prompt of the first call (a continuation) is reported at its start, the prompt of a later window
    is checked to be the tail of what was reported. If the tapped tokens ever disagree with what
    ``lm.generate`` returns (an audiocraft change), streaming stops with an error logged: the
    returned clip never depends on the tap.

    Args:
        lm: audiocraft's ``LMModel``.
        on_frames: Receives ``[B, K, n]`` final frames, in order.
    """

    def __init__(self, lm: Any, on_frames: Callable[[Any], None]) -> None:
        self._lm = lm
        self._on_frames = on_frames
        self._generate = lm.generate
        self._sample = lm._sample_next_token
        self._pass: FrameAssembler | None = None
        self._reported: list[Any] = []  # every frame handed on
        self.frames = 0
        self.broken = False

    def _report(self, codes: Any) -> None:
        if self.broken or codes.shape[-1] == 0:
            return
        self._reported.append(codes)
        self.frames += int(codes.shape[-1])
        self._on_frames(codes)

    def _tail(self, n: int) -> Any:
        import torch

        whole = torch.cat(self._reported, dim=-1)
        self._reported = [whole]
        return whole[..., whole.shape[-1] - n :]

    def _fail(self, why: str) -> None:
        logger.error("streaming stopped: %s (the returned clip is unaffected)", why)
        self.broken = True

    @contextlib.contextmanager
    def _guard(self) -> Iterator[None]:
        """Bookkeeping errors stop the stream, never the generation."""
        try:
            yield
        except Exception:
            logger.exception("streaming stopped by an error (the returned clip is unaffected)")
            self.broken = True

    def generate(self, *args: Any, **kwargs: Any) -> Any:
        """``lm.generate``, reporting the pass's new frames as they become final."""
        tapped: FrameAssembler | None = None
        with self._guard():
            tapped = self._start(args, kwargs)
        self._pass = tapped if not self.broken else None
        try:
            out = self._generate(*args, **kwargs)
        finally:
            self._pass = None
        if tapped is not None and not self.broken:
            with self._guard():
                self._end(tapped, out)
        return out

    def _start(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> FrameAssembler | None:
        """Report a continuation prompt, check a window's prompt; the pass to tap (``None``: none)."""
        import torch

        prompt: Any = kwargs["prompt"] if "prompt" in kwargs else (args[0] if args else None)
        max_gen_len = int(kwargs.get("max_gen_len", 256))
        prompt_frames = 0 if prompt is None else int(prompt.shape[-1])
        if self.broken or prompt_frames >= max_gen_len:  # audiocraft refuses the latter itself
            return None
        if prompt_frames:
            if self.frames == 0:  # a continuation prompt: the clip starts with it
                self._report(prompt)
            elif self.frames < prompt_frames or not torch.equal(self._tail(prompt_frames), prompt):
                self._fail("a long-form window's prompt is not the end of the frames made so far")
                return None
        pattern = self._lm.pattern_provider.get_pattern(max_gen_len)
        return FrameAssembler(pattern, prompt_frames, max_gen_len, int(self._lm.num_codebooks))

    def _end(self, tapped: FrameAssembler, out: Any) -> None:
        """Check the tapped frames against the pass's output; report any frame still open."""
        import torch

        first, ready = tapped.prompt_frames, tapped.ready
        if tapped.codes is None or not torch.equal(tapped.codes[..., first:ready], out[..., first:ready]):
            self._fail("the tapped tokens differ from the LM's output")
            return
        self._report(out[..., ready : tapped.max_gen_len])  # nothing, unless the pattern left frames open

    def sample(self, *args: Any, **kwargs: Any) -> Any:
        """``lm._sample_next_token``, recording the step's tokens at their ``(t, q)`` coordinates."""
        token = self._sample(*args, **kwargs)  # [B, K, 1]
        tapped = self._pass
        if tapped is not None and not self.broken:
            with self._guard():
                self._record(tapped, token)
        return token

    def _record(self, tapped: FrameAssembler, token: Any) -> None:
        try:
            frames = tapped.record(token)
        except RuntimeError as e:
            self._fail(str(e))
            return
        self._report(frames)


@contextlib.contextmanager
def tap_tokens(lm: Any, on_frames: Callable[[Any], None]) -> Iterator[TokenTap]:
    """While active, ``lm``'s final frames go to ``on_frames`` as it samples them (see :class:`TokenTap`).

    Shadows ``lm.generate`` and ``lm._sample_next_token`` with instance attributes and restores them
    on exit, also when generation raises (cancellation).
    """
    tap = TokenTap(lm, on_frames)
    with shadowed(lm, generate=tap.generate, _sample_next_token=tap.sample):
        yield tap
