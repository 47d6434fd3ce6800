"""Static-cache decoding and precision modes for audiocraft's LM (MusicGen, AudioGen).

audiocraft's streaming decoding (``StreamingMultiheadAttention._complete_kv``) grows every layer's
keys and values with ``torch.cat`` at each step: a copy of the whole cache per layer per step, and a
new tensor shape at every step, so the step can never be captured as a CUDA graph and a GPU spends
a batch-1 step launching ~15 small kernels per layer. :class:`StaticDecoder` runs the same network,
through audiocraft's own modules and weights (embeddings, layer norms, projections, feed-forward,
output heads), with:

* keys/values written in place into buffers sized once per generation, and the cross-attention
  keys/values of the text computed once per generation (audiocraft recomputes them every step);
* on CUDA, the one-token step captured as a CUDA graph (``torch.cuda.CUDAGraph``) per bucket of
  (rows, capacity, text length) and replayed: one launch per step instead of hundreds;
* the LM's weights stored in the chosen dtype (:func:`apply_precision`) instead of cast on every call.

It replaces ``lm.forward`` only while ``lm.generate`` runs (:meth:`StaticDecoder.installed`), so
audiocraft's own loop (delay pattern, classifier-free guidance, long-form windows, continuation
prompts), Soundry's per-row sampling and the token tap run unchanged. LMs it cannot reproduce keep
audiocraft's decoding (:func:`unsupported_reason`: 'prepend'/'sum' fusion, as the melody models
prepend chroma; rotary embeddings; a limited past context; custom=False attention; two-step CFG).

Numerics: on CPU in float32 the static path gives audiocraft's logits to float rounding (same
kernels, different cache layout; the tests compare tokens); within one precision a seed repeats.
On CUDA the graph attends over the whole padded capacity with a mask, which rounds differently
from audiocraft's growing cache: tokens can differ where a sample sits on a boundary, exactly as
they do between batch sizes (benchmarks/gpu.py measures the agreement).

Hand-written because no maintained library decodes audiocraft's LM with a static cache:
transformers' ``StaticCache`` serves only its own MusicGen port (no AudioGen, no melody, other
checkpoint format), and ``torch.compile(mode="reduce-overhead")`` on audiocraft's forward would
re-capture at every step because the cache grows.
"""

from __future__ import annotations

import collections
import contextlib
import inspect
import logging
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, Literal

from workers.backends._shadow import shadowed

logger = logging.getLogger(__name__)

Precision = Literal["auto", "float32", "bfloat16", "float16", "int8"]
PRECISIONS: tuple[str, ...] = ("auto", "float32", "bfloat16", "float16", "int8")
CAPACITY_BUCKET = 128
"""Graph capacities are rounded up to this many sequence steps so nearby durations share a graph."""
TEXT_BUCKET = 16
"""Text (cross-attention) lengths are padded to a multiple of this, with a mask."""
MAX_GRAPHS = 4
"""Graphs (and their caches) kept per decoder, least recently used dropped first."""


def resolve_precision(precision: str, device: str) -> str:
    """The concrete precision of ``precision`` on ``device`` (``auto``: float16 on CUDA, else float32).

    Raises:
        ValueError: Unknown precision, or int8 on a GPU (dynamic int8 quantization is CPU-only).
    """
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, not {precision!r}")
    cuda = device.startswith("cuda")
    if precision == "auto":
        return "float16" if cuda else "float32"
    if precision == "int8" and cuda:
        raise ValueError("precision int8 is CPU-only (torch dynamic quantization); use float16 on CUDA")
    return precision


def torch_dtype(precision: str) -> Any:
    """The torch dtype activations and stored weights use under ``precision`` (int8: float32 activations)."""
    import torch

    return {"float16": torch.float16, "bfloat16": torch.bfloat16}.get(precision, torch.float32)


def lm_parts(lm: Any) -> list[Any]:
    """The decoding modules of ``lm`` (not its text conditioner, which stays float32 like audiocraft's T5)."""
    parts = [lm.emb, lm.transformer, lm.linears]
    if lm.out_norm is not None:
        parts.append(lm.out_norm)
    return parts


def apply_precision(model: Any, precision: str, *, store_weights: bool) -> None:
    """Run ``model`` (a MusicGen/AudioGen) at ``precision`` (a resolved one, see :func:`resolve_precision`).

    * float16/bfloat16: audiocraft's own autocast (the mode audiocraft uses on CUDA) in that dtype;
      with ``store_weights`` (the static decoder) the LM's decoding weights are also converted, so
      no cast happens per call. The codec and the text conditioner stay float32 (the codec is a few
      percent of the time; T5 overflows in float16).
    * float32: autocast off (audiocraft's default turns float16 autocast on for CUDA).
    * int8: the LM's ``nn.Linear`` layers dynamically quantized (torch.ao, CPU), activations float32.
    """
    from audiocraft.utils.autocast import TorchAutocast

    device_type = "cuda" if str(model.device).startswith("cuda") else "cpu"
    if precision in ("float16", "bfloat16"):
        model.autocast = TorchAutocast(enabled=True, device_type=device_type, dtype=torch_dtype(precision))
        if store_weights:
            convert_lm(model.lm, precision)
        return
    model.autocast = TorchAutocast(enabled=False)
    if precision == "int8":
        convert_lm(model.lm, precision)


def convert_lm(lm: Any, precision: str) -> None:
    """Store ``lm``'s decoding weights at ``precision``: float16/bfloat16 weights, or int8 dynamic
    quantization of its ``nn.Linear`` layers (torch.ao, CPU); float32 leaves it as it is."""
    import torch

    if precision == "int8":
        from torch.ao.quantization import quantize_dynamic

        lm.transformer = quantize_dynamic(lm.transformer, {torch.nn.Linear}, dtype=torch.qint8)
        lm.linears = quantize_dynamic(lm.linears, {torch.nn.Linear}, dtype=torch.qint8)
    elif precision in ("float16", "bfloat16"):
        for part in lm_parts(lm):
            part.to(torch_dtype(precision))


def unsupported_reason(lm: Any) -> str | None:
    """Why :class:`StaticDecoder` cannot reproduce ``lm``, or ``None`` when it can."""
    fuse = {op: list(names) for op, names in lm.fuser.fuse2cond.items() if names}
    if set(fuse) != {"cross"}:
        return f"condition fusion {sorted(fuse)} (only cross-attention conditions are supported)"
    transformer = lm.transformer
    if transformer.positional_embedding != "sin":
        return f"positional embedding {transformer.positional_embedding!r}"
    if getattr(lm, "two_step_cfg", False):
        return "two-step classifier-free guidance"
    for layer in transformer.layers:
        attn, cross = layer.self_attn, layer.cross_attention
        if not layer.norm_first:
            return "post-norm layers"
        if cross is None:
            return "layers without cross-attention"
        for name, module in (("self", attn), ("cross", cross)):
            if not getattr(module, "custom", False):
                return f"{name}-attention through torch's MultiheadAttention (custom=False)"
            if module.qk_layer_norm or module.rope is not None or module.kv_repeat != 1:
                return f"{name}-attention with qk norm, rotary embedding or grouped keys"
            if module.attention_as_float32:
                return f"{name}-attention as float32"
        if not attn.causal or attn.past_context is not None:
            return "non-causal or limited-context self-attention"
    return None


@dataclass
class _Buffers:
    """One bucket's static tensors: caches, text keys/values, masks, step input and output."""

    rows: int
    capacity: int
    text_len: int
    keys: list[Any]
    values: list[Any]
    cross_keys: list[Any]
    cross_values: list[Any]
    cross_mask: Any
    positions: Any
    pos: Any
    """Each row's position (the padded form): rows may be at different steps (step-level batching)."""
    row_index: Any
    tokens: Any
    graph: Any = None
    logits: Any = None
    text_filled: int = field(default=0)


@dataclass
class _Generation:
    buffers: _Buffers | None = None
    pos: int = 0
    capacity: int = 0


class StaticDecoder:
    """audiocraft's LM forward with static keys/values and, on CUDA, a CUDA-graph step.

    Args:
        lm: A loaded ``audiocraft.models.lm.LMModel`` in eval mode (see :func:`unsupported_reason`).
        cuda_graphs: Capture and replay the one-token step on CUDA devices.
        padded: Run one-token steps in the graph's form (capacity and text padded to buckets, the
            position read from a tensor, attention masked) even without a graph; ``None``: exactly
            when a graph is captured. Tests use it to check the graph's computation on CPU.

    Raises:
        ValueError: ``lm`` has a feature the static path does not reproduce.
    """

    def __init__(
        self, lm: Any, *, cuda_graphs: bool = True, padded: bool | None = None, compiled: bool = False
    ) -> None:
        reason = unsupported_reason(lm)
        if reason is not None:
            raise ValueError(f"static decoding does not support {reason}")
        self.lm = lm
        first = lm.transformer.layers[0].self_attn
        self.heads = int(first.num_heads)
        self.dim = int(first.embed_dim)
        self.head_dim = self.dim // self.heads
        self.cuda_graphs = cuda_graphs
        self.padded = padded
        self.compiled = compiled
        self._compiled_step: Any = None
        self._buckets: collections.OrderedDict[tuple[Any, ...], _Buffers] = collections.OrderedDict()
        self._generation: _Generation | None = None
        self._pool: Any = None
        self._generate_signature = inspect.signature(type(lm).generate)

    # -- installation --------------------------------------------------------------------------------

    @contextlib.contextmanager
    def installed(self) -> Iterator[StaticDecoder]:
        """While active, every ``lm.generate`` call decodes through this decoder."""
        lm = self.lm
        inner_generate = lm.generate

        def generate(*args: Any, **kwargs: Any) -> Any:
            bound = self._generate_signature.bind(lm, *args, **kwargs)
            max_gen_len = int(bound.arguments.get("max_gen_len", 256))
            steps = len(lm.pattern_provider.get_pattern(max_gen_len).layout)
            previous = self._generation
            self._generation = _Generation(capacity=steps)
            try:
                return inner_generate(*args, **kwargs)
            finally:
                self._generation = previous

        with shadowed(lm, generate=generate, forward=self.forward):
            yield self

    def release(self) -> None:
        """Drop every cached graph and buffer (model unload)."""
        self._buckets.clear()
        self._pool = None

    # -- the forward ---------------------------------------------------------------------------------

    def forward(
        self, sequence: Any, conditions: Any = (), condition_tensors: Any = None, stage: int = -1
    ) -> Any:
        """``LMModel.forward``: logits ``[B, K, S, card]`` (float32) for the next ``S`` steps."""
        generation = self._generation
        if generation is None or condition_tensors is None or stage >= 0:
            return type(self.lm).forward(self.lm, sequence, list(conditions), condition_tensors, stage)
        import torch

        steps = int(sequence.shape[-1])
        with torch.autocast(sequence.device.type, enabled=False):
            if generation.buffers is None:
                generation.buffers = self._begin(generation, sequence, condition_tensors)
            buffers = generation.buffers
            pos = generation.pos
            if pos + steps > buffers.capacity:
                raise RuntimeError(f"static decoding past its capacity ({pos + steps} > {buffers.capacity})")
            if steps > 1 and pos != 0:  # audiocraft's loop feeds a prompt only at the start
                raise RuntimeError("static decoding takes several steps only at the start")
            if steps == 1 and self._padded(sequence):
                logits = self.replay(buffers, sequence, pos)
            else:
                logits = self._step(buffers, sequence, pos, masked=False)
        generation.pos = pos + steps
        return logits.to(torch.float32, copy=True)  # the graph's output buffer is reused next step

    def _graphable(self, sequence: Any) -> bool:
        return self.cuda_graphs and sequence.device.type == "cuda"

    def _padded(self, sequence: Any) -> bool:
        if self.padded is not None:
            return self.padded
        return self.compiled or self._graphable(sequence)

    def _one_step(self, buffers: _Buffers) -> Any:
        """The padded one-token step on ``buffers.tokens`` at ``buffers.pos``: compiled when asked.

        Compiled once per decoder with inductor (``dynamic=False``: each bucket of rows, capacity and
        text length is its own specialisation, compiled on first use, as a graph is captured per
        bucket); on CUDA the compiled kernels are then captured in the bucket's graph.
        """
        if not self.compiled:
            return self._step(buffers, buffers.tokens, 0, masked=True)
        if self._compiled_step is None:
            import torch

            def step(buffers: _Buffers) -> Any:
                return self._step(buffers, buffers.tokens, 0, masked=True)

            self._compiled_step = torch.compile(step, dynamic=False)
        return self._compiled_step(buffers)

    def _begin(self, generation: _Generation, sequence: Any, condition_tensors: Any) -> _Buffers:
        """Buffers for a new generation, with the text's cross-attention keys/values filled in."""
        rows = int(sequence.shape[0])
        dtype = self.weight_dtype()
        cross = self.text_conditions(condition_tensors, rows, sequence.device)
        text_len = int(cross.shape[1])
        capacity = generation.capacity
        padded_text = text_len
        if self._padded(sequence):
            capacity = -(-capacity // CAPACITY_BUCKET) * CAPACITY_BUCKET
            padded_text = -(-text_len // TEXT_BUCKET) * TEXT_BUCKET
        key = (rows, capacity, padded_text, dtype, str(sequence.device))
        buffers = self._buckets.pop(key, None)
        if buffers is None:
            buffers = self.allocate(rows, capacity, padded_text, dtype, sequence.device, sequence.shape[1])
            while len(self._buckets) >= MAX_GRAPHS:
                self._buckets.popitem(last=False)
        self._buckets[key] = buffers
        self.fill_text(buffers, slice(None), cross)
        buffers.text_filled = text_len
        return buffers

    def text_conditions(self, condition_tensors: Any, rows: int, device: Any) -> Any:
        """The fused cross-attention input ``[rows, T, dim]`` of ``condition_tensors`` (weights' dtype)."""
        import torch

        _, cross = self.lm.fuser(torch.zeros(rows, 1, self.dim, device=device), condition_tensors)
        return cross.to(self.weight_dtype())

    def fill_text(self, buffers: _Buffers, rows: Any, cross: Any) -> None:
        """Write the text's cross-attention keys/values (and its mask) into ``rows`` of ``buffers``.

        Args:
            rows: A slice or index tensor of buffer rows, one per row of ``cross``.
            cross: ``[n, T, dim]`` fused text conditions, ``T <= buffers.text_len``.
        """
        text_len = int(cross.shape[1])
        for i, layer in enumerate(self.lm.transformer.layers):
            for part, store in ((1, buffers.cross_keys[i]), (2, buffers.cross_values[i])):
                values = store[rows]
                values[:, :, :text_len] = self._heads(self._project(layer.cross_attention, cross, part))
                values[:, :, text_len:] = 0
                store[rows] = values
        mask = buffers.cross_mask[rows]
        mask.fill_(False)
        mask[..., :text_len] = True
        buffers.cross_mask[rows] = mask

    def weight_dtype(self) -> Any:
        import torch

        weight = getattr(self.lm.linears[0], "weight", None)
        return weight.dtype if isinstance(weight, torch.Tensor) else torch.float32

    def allocate(
        self, rows: int, capacity: int, text_len: int, dtype: Any, device: Any, n_q: int
    ) -> _Buffers:
        """Zeroed buffers for ``rows`` rows of ``capacity`` steps and ``text_len`` text tokens."""
        import torch

        layers = len(self.lm.transformer.layers)
        shape = (rows, self.heads, capacity, self.head_dim)
        text_shape = (rows, self.heads, text_len, self.head_dim)
        return _Buffers(
            rows=rows,
            capacity=capacity,
            text_len=text_len,
            keys=[torch.zeros(shape, dtype=dtype, device=device) for _ in range(layers)],
            values=[torch.zeros(shape, dtype=dtype, device=device) for _ in range(layers)],
            cross_keys=[torch.zeros(text_shape, dtype=dtype, device=device) for _ in range(layers)],
            cross_values=[torch.zeros(text_shape, dtype=dtype, device=device) for _ in range(layers)],
            cross_mask=torch.zeros((rows, 1, 1, text_len), dtype=torch.bool, device=device),
            positions=torch.arange(capacity, device=device),
            pos=torch.zeros(rows, dtype=torch.long, device=device),
            row_index=torch.arange(rows, device=device),
            tokens=torch.zeros((rows, n_q, 1), dtype=torch.long, device=device),
        )

    def _project(self, attn: Any, x: Any, part: int) -> Any:
        """The query (0), key (1) or value (2) projection of ``x`` by ``attn``'s packed input projection."""
        import torch

        dim = self.dim
        bias = attn.in_proj_bias
        weight = attn.in_proj_weight[part * dim : (part + 1) * dim]
        return torch.nn.functional.linear(
            x, weight, None if bias is None else bias[part * dim : (part + 1) * dim]
        )

    def _heads(self, x: Any) -> Any:
        """``[B, T, dim]`` to ``[B, heads, T, head_dim]``."""
        rows, steps, _ = x.shape
        return x.view(rows, steps, self.heads, self.head_dim).transpose(1, 2)

    def _step(self, buffers: _Buffers, sequence: Any, pos: int, *, masked: bool) -> Any:
        """Logits for ``sequence`` (steps ``pos ..``), caching its keys/values.

        ``masked``: the CUDA-graph form (one step, position read from ``buffers.pos``, attention over
        the whole capacity with a mask) instead of slicing the cache at ``pos``.
        """
        import torch
        from audiocraft.modules.transformer import create_sin_embedding

        sdpa = torch.nn.functional.scaled_dot_product_attention
        lm = self.lm
        rows, n_q, steps = sequence.shape
        dim, dtype = self.dim, self.weight_dtype()
        x = sum([lm.emb[k](sequence[:, k]) for k in range(n_q)])
        if masked:
            positions = buffers.pos.view(rows, 1, 1)
            self_mask = (buffers.positions.view(1, -1) <= buffers.pos.view(-1, 1)).view(rows, 1, 1, -1)
        else:
            positions = torch.arange(pos, pos + steps, device=sequence.device).view(1, -1, 1)
        transformer = lm.transformer
        pos_emb = create_sin_embedding(positions, dim, max_period=transformer.max_period, dtype=torch.float32)
        x = (x.float() + transformer.positional_scale * pos_emb).to(dtype)
        cross_mask = buffers.cross_mask if masked or buffers.text_filled < buffers.text_len else None
        for i, layer in enumerate(transformer.layers):
            attn = layer.self_attn
            qkv = torch.nn.functional.linear(layer.norm1(x), attn.in_proj_weight, attn.in_proj_bias)
            q, k, v = qkv.view(rows, steps, 3, self.heads, self.head_dim).unbind(2)
            q, k, v = q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2)
            keys, values = buffers.keys[i], buffers.values[i]
            if masked:
                keys[buffers.row_index, :, buffers.pos] = k[:, :, 0]
                values[buffers.row_index, :, buffers.pos] = v[:, :, 0]
                out = sdpa(q, keys, values, attn_mask=self_mask)
            else:
                keys[:, :, pos : pos + steps] = k
                values[:, :, pos : pos + steps] = v
                end = pos + steps
                out = sdpa(q, keys[:, :, :end], values[:, :, :end], is_causal=steps > 1)
            x = x + layer.layer_scale_1(attn.out_proj(out.transpose(1, 2).reshape(rows, steps, dim)))
            cross = layer.cross_attention
            q = self._project(cross, layer.norm_cross(x), 0)
            out = sdpa(self._heads(q), buffers.cross_keys[i], buffers.cross_values[i], attn_mask=cross_mask)
            x = x + layer.layer_scale_cross(cross.out_proj(out.transpose(1, 2).reshape(rows, steps, dim)))
            x = x + layer.layer_scale_2(layer._ff_block(layer.norm2(x)))
        if lm.out_norm is not None:
            x = lm.out_norm(x)
        return torch.stack([lm.linears[k](x) for k in range(n_q)], dim=1)

    def replay(self, buffers: _Buffers, sequence: Any, pos: int | None) -> Any:
        """One step in the padded form: through the bucket's CUDA graph (captured on first use) on CUDA.

        ``pos``: every row's position; ``None``: ``buffers.pos`` already holds each row's own.
        """
        import torch

        buffers.tokens.copy_(sequence)
        if pos is not None:
            buffers.pos.fill_(pos)
        if not self._graphable(sequence):
            return self._one_step(buffers)
        if buffers.graph is None:
            # warm-up on a side stream (cuBLAS workspaces, lazy inits), then capture; re-running the
            # step writes the same keys/values at the same position, so nothing else changes
            stream = torch.cuda.Stream()
            stream.wait_stream(torch.cuda.current_stream())
            with torch.cuda.stream(stream):
                for _ in range(2):
                    self._one_step(buffers)
            torch.cuda.current_stream().wait_stream(stream)
            if self._pool is None:
                self._pool = torch.cuda.graph_pool_handle()
            graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(graph, pool=self._pool):
                buffers.logits = self._one_step(buffers)
            buffers.graph = graph
            logger.info(
                "captured a decoding step graph: %d rows, %d steps, %d text tokens",
                buffers.rows,
                buffers.capacity,
                buffers.text_len,
            )
        buffers.graph.replay()
        return buffers.logits
