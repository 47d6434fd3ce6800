"""Stable Audio Open on the tiny random pipeline: diffusers' folder layout, loaded by
``StableAudioPipeline.from_pretrained`` through the backend (the real loader)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from gen_server.audio import Audio
from gen_server.audio.encode import decode
from gen_server.audio.watermark import KeyedWatermarker
from gen_server.contract.catalog import STATIC_MODELS, ModelEntry, build_catalog
from gen_server.contract.spec import JobRequest, build_spec
from gen_server.errors import InvalidInput, JobCancelled
from gen_server.settings import Settings
from gen_server.storage import LocalStore
from workers.backends.base import GenRequest
from workers.backends.registry import ModelManager
from workers.backends.stable_audio import StableAudioBackend
from workers.batcher import Batcher
from workers.pipeline import finish, gen_request
from workers.tiny.stable_audio import TINY_SIZES, window_s

SR = 44100
TOLERANCE = 1e-4
"""Batched rows vs solo runs (float32 rounding of the DiT's per-batch conditioning product; see the
backend's docstring): measured 5e-7 at most."""


def sfx(seed: int = 1, duration_s: float = 1.5, prompt: str = "rain on a tin roof", **kw: Any) -> GenRequest:
    """An sfx request with 4 steps and guidance 7 unless ``kw`` says otherwise."""
    return GenRequest(prompt, seed=seed, duration_s=duration_s, **{"cfg_coef": 7.0, "steps": 4, **kw})


def rms(x: np.ndarray) -> float:
    return float(np.sqrt(np.mean(np.square(x, dtype=np.float64))))


def side_ratio(samples: np.ndarray) -> float:
    """rms(left - right) / rms(left): 0 for duplicated mono."""
    left, right = (ch - ch.mean() for ch in samples[:2].astype(np.float64))
    return rms(left - right) / rms(left)


def test_tiny_folder_is_diffusers_pipeline_layout(
    stable_audio: StableAudioBackend, tiny_models_dir: Path
) -> None:
    """model_index.json names every component; the loaded pipeline has the released classes (the
    scheduler aside: see workers/tiny/stable_audio.py) and the tiny sizes."""
    folder = tiny_models_dir / "dev" / "stable-audio"
    index = json.loads((folder / "model_index.json").read_text())
    assert index["_class_name"] == "StableAudioPipeline"
    assert {k: v[1] for k, v in index.items() if not k.startswith("_")} == {
        "transformer": "StableAudioDiTModel",
        "vae": "AutoencoderOobleck",
        "text_encoder": "T5EncoderModel",
        "tokenizer": "T5TokenizerFast",
        "projection_model": "StableAudioProjectionModel",
        "scheduler": "EDMDPMSolverMultistepScheduler",
    }
    assert (folder / "tokenizer" / "tokenizer.json").is_file()
    for part in ("transformer", "vae", "projection_model"):
        assert (folder / part / "diffusion_pytorch_model.safetensors").is_file()
    pipe = stable_audio._pipe
    assert (
        pipe.vae.sampling_rate == SR and pipe.vae.config.audio_channels == 2 and pipe.vae.hop_length == 2048
    )
    assert pipe.tokenizer("rain").input_ids[-1] == pipe.tokenizer.eos_token_id == 1
    assert stable_audio.window_s == pytest.approx(window_s(TINY_SIZES))
    assert stable_audio.entry.max_duration_s <= stable_audio.window_s
    assert 0 < stable_audio.memory_bytes() < 5_000_000


def test_stereo_44k_exact_duration_progress_per_step_and_seed(stable_audio: StableAudioBackend) -> None:
    seen: list[float] = []
    audio = stable_audio.generate(sfx(seed=5, duration_s=1.37, steps=5), progress=seen.append)
    assert audio.sample_rate == SR and audio.samples.dtype == np.float32
    assert audio.samples.shape == (2, round(1.37 * SR))
    assert np.isfinite(audio.samples).all() and np.abs(audio.samples).max() <= 1.0
    # not silent, not mono twice; measured for seeds 0-9: channel rms >= 0.30, side ratio 2.02 (noise)
    assert min(rms(ch) for ch in audio.samples) > 1e-3 and side_ratio(audio.samples) > 0.1
    assert seen == [0.2, 0.4, 0.6, 0.8, 0.999, 1.0]  # one report per denoising step, then done
    again = stable_audio.generate(sfx(seed=5, duration_s=1.37, steps=5))
    np.testing.assert_array_equal(audio.samples, again.samples)
    other = stable_audio.generate(sfx(seed=6, duration_s=1.37, steps=5))
    assert not np.array_equal(audio.samples, other.samples)


def test_controls_change_the_output(stable_audio: StableAudioBackend) -> None:
    """Steps, guidance, negative prompt and the prompt each reach the pipeline."""
    base = stable_audio.generate(sfx())
    for changed in (
        sfx(steps=3),
        GenRequest("rain on a tin roof", seed=1, duration_s=1.5, cfg_coef=2.0, steps=4),
        sfx(negative_prompt="wind"),
        sfx(prompt="a dog barks"),
    ):
        assert not np.array_equal(base.samples, stable_audio.generate(changed).samples), changed


def test_cancel_stops_between_denoising_steps(stable_audio: StableAudioBackend) -> None:
    seen: list[float] = []

    def cancel_at_two(fraction: float) -> None:
        seen.append(fraction)
        if len(seen) == 2:
            raise JobCancelled("job 'x' was cancelled")

    with pytest.raises(JobCancelled):
        stable_audio.generate(sfx(steps=6), progress=cancel_at_two)
    assert seen == [pytest.approx(1 / 6), pytest.approx(2 / 6)]  # no step ran after the cancel
    # the next call starts from a fresh scheduler and repeats its seed
    a, b = (stable_audio.generate(sfx(seed=9, steps=6)) for _ in range(2))
    np.testing.assert_array_equal(a.samples, b.samples)


def test_batch_rows_equal_their_solo_runs(stable_audio: StableAudioBackend) -> None:
    reqs = [sfx(seed=11), sfx(seed=12, prompt="a dog barks twice"), sfx(seed=13, prompt="x")]
    keys = {stable_audio.batch_key(r) for r in reqs}
    assert len(keys) == 1 and None not in keys
    batched = stable_audio.generate_batch(reqs)
    solo = [stable_audio.generate(r) for r in reqs]
    for got, alone in zip(batched, solo, strict=True):
        assert got.samples.shape == (2, round(1.5 * SR))
        np.testing.assert_allclose(got.samples, alone.samples, rtol=0, atol=TOLERANCE)
    assert not np.allclose(batched[0].samples, batched[1].samples, atol=1e-3)
    negatives = [sfx(seed=1, negative_prompt="wind"), sfx(seed=2, negative_prompt="low quality")]
    for got, request in zip(stable_audio.generate_batch(negatives), negatives, strict=True):
        np.testing.assert_allclose(
            got.samples, stable_audio.generate(request).samples, rtol=0, atol=TOLERANCE
        )


def test_batch_keys_split_what_one_call_cannot_serve(stable_audio: StableAudioBackend) -> None:
    key = stable_audio.batch_key(sfx())
    assert key == stable_audio.batch_key(sfx(seed=2, prompt="other"))
    for other in (sfx(steps=5), sfx(duration_s=2.0), sfx(negative_prompt="wind")):
        assert stable_audio.batch_key(other) != key
    assert stable_audio.batch_key(sfx(init_audio=Audio(np.zeros((1, SR), np.float32), SR))) is None
    with pytest.raises(InvalidInput):
        stable_audio.generate_batch([sfx(), sfx(steps=5)])


def test_requests_share_one_batcher_call(stable_audio: StableAudioBackend, worker_settings: Settings) -> None:
    sizes: list[int] = []
    models = ModelManager(worker_settings, factory=lambda _entry, _settings: stable_audio)
    batcher = Batcher(models, max_batch=2, window_s=30.0, on_model_call=lambda _m, n: sizes.append(n)).start()
    try:
        reqs = [sfx(seed=21), sfx(seed=22, prompt="ambient pad")]
        slots = [batcher.submit(stable_audio.entry, r, job_id=f"sa{i}") for i, r in enumerate(reqs)]
        results = [s.result(120) for s in slots]
    finally:
        batcher.stop()
    assert sizes == [2] and [g.batch_size for g in results] == [2, 2]
    for request, got in zip(reqs, results, strict=True):
        np.testing.assert_allclose(got.audio.samples, stable_audio.generate(request).samples, atol=TOLERANCE)


def test_initial_audio_variation(stable_audio: StableAudioBackend) -> None:
    """A mono 22.05 kHz upload is resampled and widened to the model's stereo; it and its noise level
    change the result; a level at or below the schedule's floor is refused naming the field."""
    t = np.arange(SR // 2) / (SR // 2)
    upload = Audio((0.5 * np.sin(2 * np.pi * 220 * t)).astype(np.float32)[None], SR // 2)
    plain = stable_audio.generate(sfx())
    low = stable_audio.generate(sfx(init_audio=upload, init_noise_level=1.0))
    high = stable_audio.generate(sfx(init_audio=upload, init_noise_level=100.0))
    assert low.samples.shape == plain.samples.shape == (2, round(1.5 * SR))
    assert not np.array_equal(low.samples, plain.samples) and not np.array_equal(low.samples, high.samples)
    np.testing.assert_array_equal(low.samples, stable_audio.generate(sfx(init_audio=upload)).samples)
    with pytest.raises(InvalidInput) as err:
        stable_audio.generate(sfx(init_audio=upload, init_noise_level=0.3))
    assert err.value.field == "init_noise_level"


@pytest.mark.parametrize(
    ("request_", "field"),
    [
        (sfx(duration_s=12.0), "duration_s"),
        (sfx(steps=0), "sampling.steps"),
        (sfx(continuation=Audio(np.zeros((1, 100), np.float32), SR)), "continuation_upload"),
    ],
)
def test_bad_requests_name_the_field(
    stable_audio: StableAudioBackend, request_: GenRequest, field: str
) -> None:
    with pytest.raises(InvalidInput) as err:
        stable_audio.generate(request_)
    assert err.value.field == field


def test_stereo_job_stays_stereo_through_post_watermark_and_encode(
    stable_audio: StableAudioBackend, worker_settings: Settings, tmp_path: Path
) -> None:
    """The worker's path for an sfx job (generate, then finish: post-process, watermark, encode, store)."""
    catalog = build_catalog(worker_settings)
    body = {"kind": "sfx", "model": "dev-stable-audio-tiny", "prompt": "glass breaks", "duration_s": 2.0}
    spec = build_spec(
        JobRequest.model_validate({**body, "seed": 3, "format": "flac"}), catalog, job_id="sa-flac"
    )
    assert spec.sampling.steps == stable_audio.entry.steps and spec.sampling.cfg_coef == 7.0
    store = LocalStore(tmp_path)
    audio = stable_audio.generate(gen_request(spec, store))
    result = finish(
        spec, audio, watermarker=KeyedWatermarker(), watermark_key=b"sa", store=store, generation_s=0.0
    )
    assert result.channels == 2 and result.sample_rate == SR
    stored = decode(store.get(result.artifact))
    assert stored.channels == 2 and stored.sample_rate == SR and abs(stored.duration_s - 2.0) < 0.05
    assert side_ratio(stored.samples) > 0.01


def test_real_model_needs_its_folder_and_names_the_pull(worker_settings: Settings, tmp_path: Path) -> None:
    """stable-audio-open-1.0 with no local folder: ModelUnavailable at once (no network), naming
    ``soundry models pull``; a folder whose scheduler is the released CosineDPMSolverMultistepScheduler
    names torchsde, which it needs and this installation lacks."""
    from gen_server.errors import ModelUnavailable

    entry: ModelEntry = next(e for e in STATIC_MODELS if e.id == "stable-audio-open-1.0")
    settings = worker_settings.model_copy(update={"models_dir": tmp_path})
    with pytest.raises(ModelUnavailable) as err:
        StableAudioBackend(entry, settings).load()
    assert "soundry models pull stable-audio-open-1.0" in err.value.message
    assert "model_index.json" in err.value.message
    # the released layout, with the released scheduler class
    import shutil

    shutil.copytree(worker_settings.resolved_models_dir / "dev" / "stable-audio", tmp_path / entry.id)
    config = tmp_path / entry.id / "scheduler" / "scheduler_config.json"
    data = json.loads(config.read_text())
    config.write_text(json.dumps({**data, "_class_name": "CosineDPMSolverMultistepScheduler"}))
    index = tmp_path / entry.id / "model_index.json"
    layout = json.loads(index.read_text())
    index.write_text(json.dumps({**layout, "scheduler": ["diffusers", "CosineDPMSolverMultistepScheduler"]}))
    try:
        import torchsde  # noqa: F401
    except ImportError:
        with pytest.raises(ModelUnavailable) as err:
            StableAudioBackend(entry, settings).load()
        assert "torchsde" in err.value.message
    else:  # with torchsde installed the released layout loads and runs
        backend = StableAudioBackend(entry, settings)
        assert backend.generate(sfx(steps=2)).channels == 2
