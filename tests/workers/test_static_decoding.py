"""Static-cache decoding and precision modes (workers/backends/_audiocraft_fast.py) on the tiny models.

The default worker (``musicgen`` fixture) decodes through the static decoder; these tests compare it
with audiocraft's own loop on the same checkpoint, seeds and requests, and run every precision.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from gen_server.contract.catalog import ModelEntry
from gen_server.errors import ModelUnavailable
from gen_server.settings import Settings
from workers.backends._audiocraft_fast import (
    StaticDecoder,
    apply_precision,
    resolve_precision,
    unsupported_reason,
)
from workers.backends._audiocraft_sampling import per_row_sampling
from workers.backends.audiogen import AudioGenBackend
from workers.backends.base import GenRequest
from workers.backends.musicgen import MusicGenBackend


@pytest.fixture(scope="module")
def library_musicgen(
    worker_settings: Settings, dev_entries: dict[str, ModelEntry]
) -> Iterator[MusicGenBackend]:
    """The same tiny MusicGen decoded by audiocraft's own loop."""
    settings = worker_settings.model_copy(update={"static_decoding": False})
    backend = MusicGenBackend(dev_entries["dev-musicgen-tiny"], settings)
    backend.load()
    yield backend
    backend.unload()


def _tokens(
    backend: MusicGenBackend, prompts: list[str], seeds: list[int], decoder: StaticDecoder | None
) -> object:
    import contextlib

    import torch

    model = backend._require_model()
    model.set_generation_params(duration=1.0, top_k=50, cfg_coef=3.0, two_step_cfg=False)
    installed = decoder.installed() if decoder is not None else contextlib.nullcontext()
    with torch.inference_mode(), per_row_sampling(seeds, "cpu"), installed:
        attributes, prompt_tokens = model._prepare_tokens_and_attributes(prompts, None)
        return model._generate_tokens(attributes, prompt_tokens, False)


def test_default_worker_decodes_statically_and_matches_audiocraft(
    musicgen: MusicGenBackend, library_musicgen: MusicGenBackend
) -> None:
    assert musicgen._decoder is not None and library_musicgen._decoder is None
    assert musicgen.precision == "float32"  # auto on CPU
    solo = [GenRequest("warm lofi piano", seed=7, duration_s=1.5, top_k=50)]
    batch = [GenRequest(p, seed=s, duration_s=1.0, top_k=40) for p, s in (("a", 1), ("b", 2), ("c", 3))]
    for fast, slow in (
        (musicgen.generate(solo[0]), library_musicgen.generate(solo[0])),
        *zip(musicgen.generate_batch(batch), library_musicgen.generate_batch(batch), strict=True),
    ):
        np.testing.assert_array_equal(fast.samples, slow.samples)


def test_continuation_and_long_form_match_audiocraft(
    musicgen: MusicGenBackend, library_musicgen: MusicGenBackend
) -> None:
    rng = np.random.default_rng(3)
    from gen_server.audio import Audio

    prompt = Audio(rng.uniform(-0.3, 0.3, (1, 32000)).astype(np.float32), 32000)
    cont = GenRequest("more", seed=4, duration_s=2.0, top_k=50, continuation=prompt)
    np.testing.assert_array_equal(musicgen.generate(cont).samples, library_musicgen.generate(cont).samples)
    window = musicgen.window_s
    long = GenRequest("long", seed=5, duration_s=window + 1.0, top_k=50)
    np.testing.assert_array_equal(musicgen.generate(long).samples, library_musicgen.generate(long).samples)


def test_padded_graph_form_gives_the_same_tokens(library_musicgen: MusicGenBackend) -> None:
    """The CUDA graph's computation (capacity and text padded, position as a tensor, masked attention)
    run eagerly on CPU; buffers are reused by a second generation with another text length."""
    lm = library_musicgen._require_model().lm
    expected = _tokens(library_musicgen, ["one", "two words"], [1, 2], None)
    padded = StaticDecoder(lm, padded=True)
    assert (_tokens(library_musicgen, ["one", "two words"], [1, 2], padded) == expected).all()
    again = _tokens(library_musicgen, ["three words here", "x"], [1, 2], padded)
    assert (again == _tokens(library_musicgen, ["three words here", "x"], [1, 2], None)).all()
    assert len(padded._buckets) == 1  # same rows, capacity and padded text length: one bucket


def test_arrival_order_in_a_batch_does_not_change_a_row(musicgen: MusicGenBackend) -> None:
    lm = musicgen._require_model().lm
    decoder = StaticDecoder(lm)
    forward = _tokens(musicgen, ["a", "b", "c"], [1, 2, 3], decoder)
    backward = _tokens(musicgen, ["c", "b", "a"], [3, 2, 1], decoder)
    assert (forward == backward.flip(0)).all()  # type: ignore[attr-defined]


@pytest.mark.parametrize("precision", ["float32", "bfloat16", "float16", "int8"])
def test_every_precision_generates_and_repeats_its_seed(
    worker_settings: Settings, dev_entries: dict[str, ModelEntry], precision: str
) -> None:
    settings = worker_settings.model_copy(update={"precision": precision})
    backend = AudioGenBackend(dev_entries["dev-audiogen-tiny"], settings)
    backend.load()
    try:
        assert backend.precision == precision and backend._decoder is not None
        request = GenRequest("rain on a tin roof", seed=9, duration_s=0.5, top_k=50)
        first, second = backend.generate(request), backend.generate(request)
        assert first.samples.shape == (1, 8000) and np.isfinite(first.samples).all()
        assert np.abs(first.samples).max() > 0
        np.testing.assert_array_equal(first.samples, second.samples)
        weight = backend._require_model().lm.transformer.layers[0].self_attn.in_proj_weight
        assert str(weight.dtype) == {"bfloat16": "torch.bfloat16", "float16": "torch.float16"}.get(
            precision, "torch.float32"
        )
    finally:
        backend.unload()


def test_precision_names_and_device_rules() -> None:
    assert resolve_precision("auto", "cpu") == "float32"
    assert resolve_precision("auto", "cuda:0") == "float16"
    assert resolve_precision("bfloat16", "cuda") == "bfloat16"
    with pytest.raises(ValueError, match="CPU-only"):
        resolve_precision("int8", "cuda:1")
    with pytest.raises(ValueError, match="precision must be one of"):
        resolve_precision("fp8", "cpu")


def test_int8_on_a_gpu_is_refused_at_load_naming_the_setting(
    worker_settings: Settings, dev_entries: dict[str, ModelEntry]
) -> None:
    settings = worker_settings.model_copy(update={"precision": "int8", "device": "cuda:0"})
    backend = MusicGenBackend(dev_entries["dev-musicgen-tiny"], settings)
    with pytest.raises(ModelUnavailable, match="SOUNDRY_PRECISION"):
        backend._fast_path(object())


def test_melody_model_keeps_audiocraft_decoding(musicgen_melody: MusicGenBackend) -> None:
    lm = musicgen_melody._require_model().lm
    reason = unsupported_reason(lm)
    assert reason is not None and "prepend" in reason
    assert musicgen_melody._decoder is None
    with pytest.raises(ValueError, match="static decoding does not support"):
        StaticDecoder(lm)


def test_library_path_precision_uses_audiocraft_autocast(library_musicgen: MusicGenBackend) -> None:
    """Without the static decoder a precision is audiocraft's own autocast; the weights stay float32."""
    import torch

    model = library_musicgen._require_model()
    assert model.autocast.autocast is None  # float32 on CPU: autocast off
    try:
        apply_precision(model, "bfloat16", store_weights=False)
        assert model.autocast.autocast.fast_dtype == torch.bfloat16
        assert model.lm.linears[0].weight.dtype == torch.float32
        clip = library_musicgen.generate(GenRequest("x", seed=1, duration_s=0.5, top_k=50))
        assert np.isfinite(clip.samples).all() and np.abs(clip.samples).max() > 0
    finally:
        apply_precision(model, "float32", store_weights=False)


def test_gpu_benchmark_script_dry_run(tmp_path: Path) -> None:
    """``benchmarks/gpu.sh --dry-run``: the GPU benchmark's code end to end on the tiny model on CPU.

    The script's Python runs in this process (a second interpreter would import torch and audiocraft
    again); the shell wrapper is checked by ``bash -n`` and by its one line that starts the module.
    """
    from benchmarks import gpu

    root = Path(__file__).resolve().parents[2]
    script = root / "benchmarks" / "gpu.sh"
    assert subprocess.run(["bash", "-n", str(script)], check=False).returncode == 0
    assert '-m benchmarks.gpu "$@"' in script.read_text()
    gpu.main(["--dry-run", "--out", str(tmp_path)])
    report = json.loads((tmp_path / "gpu-dry-run.json").read_text())
    variants = {(row["variant"], row["batch"]) for row in report["speed"]}
    assert variants == {
        (v, b) for v in ("audiocraft", "soundry-static", "soundry-graph", "bound") for b in (1, 8)
    }
    timed = [row for row in report["speed"] if row["variant"] != "bound"]
    assert all(row["steps_per_s"] > 0 and row["steps"] == 18 for row in timed)
    # on CPU the graph variant runs the graph's padded, masked step form: the same tokens as eager steps
    assert all(row["tokens_equal_to_static"] == 1.0 for row in timed if row["variant"] == "soundry-graph")
    fidelity = {row["precision"]: row for row in report["fidelity"]}
    assert set(fidelity) == {"bfloat16", "int8"}
    assert all(0.5 < row["top1_agreement"] <= 1.0 and row["kl_mean"] >= 0 for row in fidelity.values())
    assert "| musicgen-tiny | soundry-graph | 8 |" in (tmp_path / "gpu-dry-run.md").read_text()


def test_compiled_step_decodes_the_same_tokens(musicgen: MusicGenBackend) -> None:
    """SOUNDRY_COMPILED_DECODING: the padded one-token step through torch.compile (inductor, C++ on
    CPU) gives the tokens of the same step run eagerly, on the same seeds."""
    import torch

    lm = musicgen._require_model().lm
    eager = StaticDecoder(lm, cuda_graphs=False, padded=True)
    compiled = StaticDecoder(lm, cuda_graphs=False, compiled=True)
    assert compiled._padded(torch.zeros(1))  # compiled implies the padded, fixed-shape form
    prompts, seeds = ["warm pad", "drums"], [1, 2]
    expected = _tokens(musicgen, prompts, seeds, eager)
    got = _tokens(musicgen, prompts, seeds, compiled)
    assert compiled._compiled_step is not None
    assert torch.equal(got, expected)  # type: ignore[arg-type]
