"""Stereo MusicGen (musicgen-stereo-* layout) on the tiny random checkpoint, through the backend interface.

``tiny:musicgen-stereo`` is written in the layout of ``facebook/musicgen-stereo-*``: a mono EnCodec and
an 8-codebook LM whose ``xp.cfg`` turns on ``interleave_stereo_codebooks``; ``MusicGen.get_pretrained``
wraps the codec for stereo, as it does for the real checkpoints.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from gen_server.audio import Audio
from gen_server.audio.encode import decode
from gen_server.audio.watermark import KeyedWatermarker
from gen_server.contract.catalog import DEV_MODELS, ModelEntry, build_catalog
from gen_server.contract.result import JobResult
from gen_server.contract.spec import JobRequest, JobSpec, build_spec
from gen_server.settings import Settings
from gen_server.storage import LocalStore
from workers.backends.base import GenRequest
from workers.backends.musicgen import MusicGenBackend
from workers.backends.registry import ModelManager
from workers.batcher import Batcher
from workers.pipeline import finish, gen_request

SR = 32000
STEREO = "dev-musicgen-stereo-tiny"


def music(seed: int = 1, duration_s: float = 1.0, prompt: str = "warm lofi piano", **kw: Any) -> GenRequest:
    params: dict[str, Any] = {"top_k": 50, **kw}
    return GenRequest(prompt, seed=seed, duration_s=duration_s, **params)


def sine(freq: float, duration_s: float, sr: int, channels: int = 1) -> Audio:
    t = np.arange(round(duration_s * sr)) / sr
    wave = 0.5 * np.sin(2 * np.pi * freq * t)
    return Audio(np.tile(wave, (channels, 1)).astype(np.float32), sr)


def rms(x: np.ndarray) -> float:
    return float(np.sqrt(np.mean(np.square(x, dtype=np.float64))))


def assert_stereo_clip(audio: Audio, duration_s: float) -> None:
    assert audio.sample_rate == SR
    assert audio.samples.dtype == np.float32
    assert audio.samples.shape == (2, round(duration_s * SR))
    assert np.isfinite(audio.samples).all()
    assert np.abs(audio.samples).max() <= 1.0
    assert min(rms(ch) for ch in audio.samples) > 1e-4


def side_ratio(samples: np.ndarray) -> float:
    """rms(left - right) / rms(left), DC removed first: 0 for duplicated mono."""
    left, right = (ch - ch.mean() for ch in samples[:2].astype(np.float64))
    return rms(left - right) / rms(left)


@pytest.fixture(scope="module")
def stereo_settings(tmp_path_factory: pytest.TempPathFactory) -> Settings:
    """Own models folder: the backend writes only the stereo checkpoint, on first load."""
    return Settings(
        data_dir=tmp_path_factory.mktemp("stereo-data"),
        models_dir=tmp_path_factory.mktemp("stereo-models"),
        dev_models=True,
        allow_downloads=False,
        device="cpu",
    )


@pytest.fixture(scope="module")
def entry() -> ModelEntry:
    return {e.id: e for e in DEV_MODELS}[STEREO]


@pytest.fixture(scope="module")
def stereo(entry: ModelEntry, stereo_settings: Settings) -> Iterator[MusicGenBackend]:
    backend = MusicGenBackend(entry, stereo_settings)
    backend.load()
    yield backend
    backend.unload()


def test_catalog_entry_and_checkpoint_are_audiocraft_stereo(
    stereo: MusicGenBackend, entry: ModelEntry, stereo_settings: Settings
) -> None:
    """The folder holds audiocraft's export format with the stereo keys; the loader wraps the codec."""
    import torch
    import yaml
    from audiocraft.models.encodec import EncodecModel, InterleaveStereoCompressionModel

    assert entry.channels == 2 and entry.dev and entry.source == "tiny:musicgen-stereo"
    folder = Path(stereo_settings.resolved_models_dir) / "dev" / "musicgen-stereo"
    lm_pkg = torch.load(folder / "state_dict.bin", map_location="cpu", weights_only=False)
    codec_pkg = torch.load(folder / "compression_state_dict.bin", map_location="cpu", weights_only=False)
    for pkg in (lm_pkg, codec_pkg):
        assert set(pkg) == {"xp.cfg", "best_state", "version", "exported"} and pkg["exported"] is True
    lm_cfg, codec_cfg = yaml.safe_load(lm_pkg["xp.cfg"]), yaml.safe_load(codec_pkg["xp.cfg"])
    assert lm_cfg["channels"] == 2
    assert lm_cfg["interleave_stereo_codebooks"] == {"use": True, "per_timestep": False}
    assert lm_cfg["transformer_lm"]["n_q"] == 8
    assert lm_cfg["codebooks_pattern"]["delay"]["delays"] == [0, 0, 1, 1, 2, 2, 3, 3]
    assert codec_cfg["channels"] == 1 and codec_cfg["rvq"]["n_q"] == 4  # the codec stays mono
    assert "interleave_stereo_codebooks" not in codec_cfg

    model = stereo._model
    assert isinstance(model.compression_model, InterleaveStereoCompressionModel)
    assert isinstance(model.compression_model.model, EncodecModel)
    assert model.audio_channels == 2 and model.lm.n_q == 8 and model.frame_rate == 50
    assert model.sample_rate == SR and model.max_duration == 30.0


@pytest.mark.parametrize("duration_s", [1.0, 1.37])
def test_stereo_exact_duration_and_real_stereo(stereo: MusicGenBackend, duration_s: float) -> None:
    """Two channels at 32 kHz, exactly the asked length; left and right are independent clips."""
    seen: list[float] = []
    audio = stereo.generate(music(seed=5, duration_s=duration_s), progress=seen.append)
    assert_stereo_clip(audio, duration_s)
    assert seen[-1] == 1.0 and all(a < b for a, b in itertools.pairwise(seen))
    other = stereo.generate(music(seed=6, duration_s=duration_s))
    # duplicated mono would give 0; independent channels differ as much as two seeds' left channels do.
    # Measured for seeds 0-19 (1 s and 1.37 s): rms(L-R)/between_seeds 0.95-1.10 (threshold 0.5),
    # side_ratio 0.090-0.099 (threshold 0.02; long form, continuation and wav/flac/mp3 jobs: >= 0.09)
    between_seeds = rms(audio.samples[0] - other.samples[0])
    assert between_seeds > 0
    assert rms(audio.samples[0] - audio.samples[1]) > 0.5 * between_seeds
    assert side_ratio(audio.samples) > 0.02


def test_stereo_seed_repeats_and_varies(stereo: MusicGenBackend) -> None:
    a = stereo.generate(music(seed=7))
    b = stereo.generate(music(seed=7))
    c = stereo.generate(music(seed=8))
    np.testing.assert_array_equal(a.samples, b.samples)
    for ch in range(2):  # each channel follows the seed
        assert not np.array_equal(a.samples[ch], c.samples[ch])


def test_stereo_batch_equals_each_request_alone(stereo: MusicGenBackend) -> None:
    reqs = [music(seed=11), music(seed=99, prompt="rock drums")]
    key = stereo.batch_key(reqs[0])
    assert key is not None and key == stereo.batch_key(reqs[1])
    batched = stereo.generate_batch(reqs)
    assert len(batched) == 2
    for request, audio in zip(reqs, batched, strict=True):
        assert_stereo_clip(audio, 1.0)
        np.testing.assert_array_equal(audio.samples, stereo.generate(request).samples)
    assert not np.array_equal(batched[0].samples, batched[1].samples)


def test_stereo_requests_share_one_batcher_call(
    stereo: MusicGenBackend, entry: ModelEntry, stereo_settings: Settings
) -> None:
    """Through the worker's batcher: one model call for both jobs, each gets its own stereo clip."""
    sizes: list[int] = []
    models = ModelManager(stereo_settings, factory=lambda _entry, _settings: stereo)
    # max_batch = the two jobs: the call goes once both are queued (a 30 s window is never waited out)
    batcher = Batcher(models, max_batch=2, window_s=30.0, on_model_call=lambda _m, n: sizes.append(n)).start()
    try:
        reqs = [music(seed=21), music(seed=22, prompt="ambient pad")]
        slots = [batcher.submit(entry, r, job_id=f"s{i}") for i, r in enumerate(reqs)]
        results = [s.result(120) for s in slots]
    finally:
        batcher.stop()
    assert sizes == [2] and [g.batch_size for g in results] == [2, 2]
    for request, got in zip(reqs, results, strict=True):
        assert got.audio.channels == 2
        np.testing.assert_array_equal(got.audio.samples, stereo.generate(request).samples)


def test_stereo_long_form_and_continuation_keep_two_channels(
    entry: ModelEntry, stereo_settings: Settings
) -> None:
    """Windowed extension past the window (stereo tokens carried as the next window's prompt) stays stereo."""
    backend = MusicGenBackend(entry.model_copy(update={"window_s": 2.0}), stereo_settings)
    try:
        seen: list[float] = []
        audio = backend.generate(music(seed=4, duration_s=5.0), progress=seen.append)
        assert_stereo_clip(audio, 5.0)
        assert seen[-1] == 1.0 and len(seen) > 2 * (2 * 50 + 3)  # several 2 s windows reported
        late = audio.samples[:, 3 * SR :]  # made by the last windows only
        assert side_ratio(late) > 0.02
        again = backend.generate(music(seed=4, duration_s=5.0))
        np.testing.assert_array_equal(audio.samples, again.samples)  # long form repeats with its seed
        # continuation: a mono 44.1 kHz prompt is converted by audiocraft; with long form too
        cont = backend.generate(music(seed=4, duration_s=3.0, continuation=sine(220, 1.0, 44100)))
        assert_stereo_clip(cont, 3.0)
        assert side_ratio(cont.samples[:, 2 * SR :]) > 0.02
        wide = sine(220, 1.0, SR, channels=2)
        wide.samples[1] *= -1.0
        assert_stereo_clip(backend.generate(music(seed=4, duration_s=1.5, continuation=wide)), 1.5)
    finally:
        backend.unload()


def made(spec: JobSpec, backend: MusicGenBackend, store: LocalStore) -> JobResult:
    """``spec`` made as the worker makes it (without the queue)."""
    audio = backend.generate(gen_request(spec, store))
    watermarker, key = KeyedWatermarker(), b"stereo-test"
    return finish(spec, audio, watermarker=watermarker, watermark_key=key, store=store, generation_s=0.0)


@pytest.mark.parametrize("fmt", ["wav", "flac", "mp3"])
def test_stereo_job_keeps_two_channels_through_post_and_encode(
    stereo: MusicGenBackend, stereo_settings: Settings, tmp_path: Path, fmt: str
) -> None:
    """The worker's path (generate, then ``finish``: post-process -> watermark -> encode -> store), still
    stereo at the end."""
    catalog = build_catalog(stereo_settings)
    req = JobRequest(kind="music", model=STEREO, prompt="wide synth pad", duration_s=2.0, seed=3, format=fmt)
    spec = build_spec(req, catalog, job_id=f"stereo-{fmt}")
    store = LocalStore(tmp_path)
    result = made(spec, stereo, store)
    assert result.channels == 2 and result.sample_rate == SR
    audio = decode(store.get(result.artifact))
    assert audio.channels == 2 and audio.sample_rate == SR
    assert abs(audio.duration_s - 2.0) < 0.1
    assert side_ratio(audio.samples) > 0.02
    # the post chain's own channel option still folds it down on request
    mono_spec = build_spec(
        req.model_copy(update={"post": req.post.model_copy(update={"channels": 1})}),
        catalog,
        job_id=f"mono-{fmt}",
    )
    mono = made(mono_spec, stereo, store)
    assert mono.channels == 1 and decode(store.get(mono.artifact)).channels == 1
