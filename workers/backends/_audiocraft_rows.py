"""Step-level (continuous) batching for MusicGen/AudioGen: jobs join a running batch at the next step.

Window batching (``generate_batch``) runs a group of jobs from first to last step together: a job
that arrives one step after the group started waits for the whole group. A :class:`RowSession`
instead keeps one set of static key/value buffers (the static decoder's, in its padded form: every
row at its own position, attention masked per row) and advances all its
rows by one decoding step at a time; between two steps a new job takes a free row (its first step
needs no prompt: a text-only job starts from the pattern's empty first step), and a row whose clip is
done, or whose job was cancelled, frees its row at once. On CUDA each step is one graph replay per
(rows, capacity, text length) bucket.

Each row keeps what ``LMModel.generate`` keeps for one clip (its delay-pattern sequence and mask, the
classifier-free-guidance pair of rows: conditional at ``i``, unconditional at ``i + rows``) and
samples exactly as ``LMModel._sample_next_token`` does, from its own ``torch.Generator`` seeded with
the request's seed (:class:`~workers.backends._audiocraft_sampling.RowSampler`): so a job's tokens do
not depend on which rows ran beside it, nor on when it joined (on CPU in float32 the tests find
them equal to the job generated alone; batched kernels may round differently, see
``_audiocraft_fast``). Sampling parameters, durations and text lengths may differ between rows.

Joinable: text-only requests of one window on a model the static decoder supports (no melody, no
continuation prompt, no long-form). Everything else keeps window batching.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Any

from gen_server.audio import Audio
from workers.backends._audiocraft_fast import CAPACITY_BUCKET, TEXT_BUCKET, StaticDecoder
from workers.backends._audiocraft_sampling import RowSampler
from workers.backends._audiocraft_stream import ChunkedDecoder, FrameAssembler
from workers.backends.base import GenRequest

logger = logging.getLogger(__name__)

UNKNOWN_TOKEN = -1
"""``LMModel.generate``'s value for codes not generated yet."""


@dataclass(eq=False)
class Row:
    """One job's clip in a session: its own pattern sequence, sampling, generator and stream."""

    request: GenRequest
    duration_s: float
    max_gen_len: int
    pattern: Any
    sequence: Any  # [1, K, S] the pattern sequence, filled step by step
    mask: Any  # [K, S] which (codebook, step) positions hold a real token
    generator: Any
    cross: Any  # [2, T, dim]: conditional and unconditional text conditions
    frames: FrameAssembler
    stream: ChunkedDecoder | None
    slot: int = -1
    offset: int = 1  # the next sequence step to sample
    joined_at: float = field(default_factory=time.perf_counter)
    most_rows: int = 1  # most rows that shared a step with this one

    @property
    def steps(self) -> int:
        return int(self.sequence.shape[-1])

    @property
    def progress(self) -> float:
        return min(max((self.offset - 1) / max(self.steps - 1, 1), 0.0), 1.0)

    @property
    def done(self) -> bool:
        return self.offset >= self.steps


class RowSession:
    """The rows decoding together on one loaded audiocraft model (used by one thread).

    Args:
        model: The loaded ``MusicGen``/``AudioGen``.
        decoder: Its static decoder (buffers, step, graphs).
        max_rows: Most jobs decoding at once.
        min_step_s: Every step lasts at least this long (the dev preset's ``SOUNDRY_DEV_STEP_MS`` test
            aid, as in window batching).
    """

    def __init__(self, model: Any, decoder: StaticDecoder, max_rows: int, min_step_s: float = 0.0) -> None:
        self.min_step_s = min_step_s
        self.model = model
        self.lm = model.lm
        self.decoder = decoder
        self.max_rows = max(max_rows, 1)
        self.slots: list[Row | None] = []
        self.buffers: Any = None

    # -- rows joining and leaving ------------------------------------------------------------------

    @property
    def rows(self) -> list[Row]:
        return [row for row in self.slots if row is not None]

    @property
    def full(self) -> bool:
        return len(self.rows) >= self.max_rows

    def join(self, request: GenRequest, duration_s: float, model_duration_s: float) -> Row:
        """Prepare ``request``'s row and give it a free slot; it samples from the next :meth:`step` on.

        Args:
            duration_s: The clip's length (the returned audio's).
            model_duration_s: The duration audiocraft is asked for (whole frames, see the backend).
        """
        import torch
        from audiocraft.modules.conditioners import ClassifierFreeGuidanceDropout

        lm, model = self.lm, self.model
        device = model.device
        max_gen_len = int(model_duration_s * model.frame_rate)  # as MusicGen._generate_tokens
        pattern = lm.pattern_provider.get_pattern(max_gen_len)
        codes = torch.full((1, lm.num_codebooks, max_gen_len), UNKNOWN_TOKEN, dtype=torch.long, device=device)
        sequence, _, mask = pattern.build_pattern_sequence(codes, lm.special_token_id)
        start = pattern.get_first_step_with_timesteps(0)
        if start != 1:
            raise ValueError(f"the codebook pattern starts sampling at step {start}, not 1")
        attributes, _ = model._prepare_tokens_and_attributes([request.prompt], None)
        conditions = attributes + ClassifierFreeGuidanceDropout(p=1.0)(attributes)
        condition_tensors = lm.condition_provider(lm.condition_provider.tokenize(conditions))
        cross = self.decoder.text_conditions(condition_tensors, 2, device)
        generator = torch.Generator(device=device)
        generator.manual_seed(int(request.seed))
        stream = None
        if request.on_audio is not None:
            stream = ChunkedDecoder(
                model.compression_model,
                [request.on_audio],
                total_frames=max_gen_len,
                total_samples=round(duration_s * int(model.sample_rate)),
            )
        row = Row(
            request=request,
            duration_s=duration_s,
            max_gen_len=max_gen_len,
            pattern=pattern,
            sequence=sequence,
            mask=mask,
            generator=generator,
            cross=cross,
            frames=FrameAssembler(pattern, 0, max_gen_len, int(lm.num_codebooks)),
            stream=stream,
        )
        self._place(row)
        return row

    def leave(self, row: Row) -> None:
        """Free ``row``'s slot (done or cancelled)."""
        if 0 <= row.slot < len(self.slots) and self.slots[row.slot] is row:
            self.slots[row.slot] = None
        row.slot = -1

    def _place(self, row: Row) -> None:
        free = [i for i, other in enumerate(self.slots) if other is None]
        if not free:
            if len(self.slots) >= self.max_rows:
                raise RuntimeError("no free row in this session")
            grown = min(max(2 * len(self.slots), 1), self.max_rows)
            self.slots.extend([None] * (grown - len(self.slots)))
            free = [i for i, other in enumerate(self.slots) if other is None]
        row.slot = free[0]
        self.slots[row.slot] = row
        self._fit()
        n = len(self.slots)
        self.decoder.fill_text(self.buffers, [row.slot, n + row.slot], row.cross)

    def _fit(self) -> None:
        """Buffers for every slot, each row's whole clip and its text; grown (contents kept) as needed."""
        slots = len(self.slots)
        steps = max(row.steps for row in self.rows)
        text = max(int(row.cross.shape[1]) for row in self.rows)
        old = self.buffers
        if old is not None and old.rows == 2 * slots and old.capacity >= steps and old.text_len >= text:
            return
        capacity = -(-steps // CAPACITY_BUCKET) * CAPACITY_BUCKET
        text_len = -(-text // TEXT_BUCKET) * TEXT_BUCKET
        if old is not None:
            capacity, text_len = max(capacity, old.capacity), max(text_len, old.text_len)
        new = self.decoder.allocate(
            2 * slots,
            capacity,
            text_len,
            self.decoder.weight_dtype(),
            self.model.device,
            self.lm.num_codebooks,
        )
        if old is not None:
            self._copy(old, new)
        self.buffers = new

    def _copy(self, old: Any, new: Any) -> None:
        """Move every row's keys/values, text and position from ``old`` into the larger ``new``."""
        half_old, half_new = old.rows // 2, new.rows // 2
        for src, dst in (
            (slice(0, half_old), slice(0, half_old)),
            (slice(half_old, old.rows), slice(half_new, half_new + half_old)),
        ):
            for a, b in ((old.keys, new.keys), (old.values, new.values)):
                for layer_old, layer_new in zip(a, b, strict=True):
                    layer_new[dst, :, : old.capacity] = layer_old[src]
            for a, b in ((old.cross_keys, new.cross_keys), (old.cross_values, new.cross_values)):
                for layer_old, layer_new in zip(a, b, strict=True):
                    layer_new[dst, :, : old.text_len] = layer_old[src]
            new.cross_mask[dst, ..., : old.text_len] = old.cross_mask[src]
            new.pos[dst] = old.pos[src]

    # -- decoding ----------------------------------------------------------------------------------

    def step(self) -> list[Row]:
        """Advance every row by one decoding step; returns the rows whose clip is now complete."""
        import torch

        rows = self.rows
        if not rows:
            return []
        started = time.monotonic()
        buffers = self.buffers
        n = len(self.slots)
        tokens = torch.zeros((2 * n, self.lm.num_codebooks, 1), dtype=torch.long, device=self.model.device)
        positions = torch.zeros(2 * n, dtype=torch.long)
        for row in rows:
            previous = row.sequence[0, :, row.offset - 1 : row.offset]
            tokens[row.slot] = previous
            tokens[n + row.slot] = previous
            positions[row.slot] = positions[n + row.slot] = row.offset - 1
            row.most_rows = max(row.most_rows, len(rows))
        buffers.pos.copy_(positions)
        with torch.autocast(self.model.device.type, enabled=False):
            logits = self.decoder.replay(buffers, tokens, None).float()  # [2n, K, 1, card]
        finished = []
        for row in rows:
            self._sample(row, logits[row.slot : row.slot + 1], logits[n + row.slot : n + row.slot + 1])
            if row.done:
                finished.append(row)
        if self.min_step_s:
            time.sleep(max(self.min_step_s - (time.monotonic() - started), 0.0))
        return finished

    def _sample(self, row: Row, cond: Any, uncond: Any) -> None:
        """``LMModel._sample_next_token`` and the masking of ``LMModel.generate`` for one row."""
        import torch

        request = row.request
        logits = uncond + (cond - uncond) * float(request.cfg_coef)
        logits = logits.permute(0, 1, 3, 2)[..., -1]  # [1, K, card]
        probs = torch.softmax(logits / float(request.temperature), dim=-1)
        sampler = RowSampler([row.generator])
        if request.top_p > 0.0:
            token = sampler.sample_top_p(probs, p=float(request.top_p))
        elif request.top_k > 0:
            token = sampler.sample_top_k(probs, k=int(request.top_k))
        else:
            token = sampler.multinomial(probs, num_samples=1)
        offset = row.offset
        valid = row.mask[None, :, offset : offset + 1]
        token[~valid] = self.lm.special_token_id
        current = row.sequence[..., offset : offset + 1]
        row.sequence[..., offset : offset + 1] = torch.where(current == UNKNOWN_TOKEN, token, current)
        row.offset += 1
        frames = row.frames.record(token)
        if row.stream is not None and frames.shape[-1]:
            row.stream.extend(frames)

    def audio(self, row: Row) -> Audio:
        """The finished row's clip: its codes reverted from the pattern and decoded, as the backend does."""
        import torch

        from workers.backends._audiocraft import to_audio

        codes, _, _ = row.pattern.revert_pattern_sequence(row.sequence, special_token=UNKNOWN_TOKEN)
        codes = codes[..., : row.max_gen_len]
        if not bool((codes >= 0).all()):
            raise RuntimeError("a row finished with codes left unsampled")
        with torch.inference_mode():
            wav = self.model.generate_audio(codes)
        if row.stream is not None:
            row.stream.finish()
        return to_audio(wav[0], int(self.model.sample_rate), row.duration_s)
