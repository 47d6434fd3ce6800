"""Real backends on tiny random-weight checkpoints, loaded through the libraries' own loaders."""

from __future__ import annotations

import itertools
import threading
import time
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pytest

from gen_server.audio import Audio
from gen_server.contract.catalog import STATIC_MODELS, ModelEntry
from gen_server.errors import InvalidInput, ModelUnavailable
from gen_server.settings import Settings
from workers.backends._audiocraft import chunk_plan
from workers.backends.audiogen import AudioGenBackend
from workers.backends.base import GenRequest
from workers.backends.coqui import CoquiBackend
from workers.backends.musicgen import MusicGenBackend
from workers.backends.piper import PiperBackend
from workers.backends.registry import ModelManager, create_backend
from workers.tiny import MANIFEST, ensure_tiny, write_tiny_vits

SR = 32000


def music(seed: int = 1, duration_s: float = 1.0, **kw: Any) -> GenRequest:
    """A music request with the tiny codebook's valid top_k unless ``kw`` says otherwise."""
    params: dict[str, Any] = {"top_k": 50, **kw}
    return GenRequest("warm lofi piano", seed=seed, duration_s=duration_s, **params)


def rms(audio: Audio) -> float:
    return float(np.sqrt(np.mean(np.square(audio.samples, dtype=np.float64))))


def assert_clip(audio: Audio, sample_rate: int, duration_s: float) -> None:
    assert audio.sample_rate == sample_rate
    assert audio.samples.dtype == np.float32
    assert audio.samples.shape == (1, round(duration_s * sample_rate))
    assert np.isfinite(audio.samples).all()
    assert np.abs(audio.samples).max() <= 1.0
    assert rms(audio) > 1e-4


def sine(freq: float, duration_s: float, sr: int, channels: int = 1) -> Audio:
    t = np.arange(round(duration_s * sr)) / sr
    wave = 0.5 * np.sin(2 * np.pi * freq * t)
    return Audio(np.tile(wave, (channels, 1)).astype(np.float32), sr)


# -- MusicGen ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("duration_s", [1.0, 1.37])
def test_musicgen_exact_duration_and_progress(musicgen: MusicGenBackend, duration_s: float) -> None:
    seen: list[float] = []
    audio = musicgen.generate(music(duration_s=duration_s), progress=seen.append)
    assert_clip(audio, SR, duration_s)
    assert seen[-1] == 1.0
    assert all(a < b for a, b in itertools.pairwise(seen))


def test_dev_step_pacing_sets_a_least_job_length_and_leaves_the_audio_alone(
    worker_settings: Settings, dev_entries: dict[str, ModelEntry], musicgen: MusicGenBackend
) -> None:
    """SOUNDRY_DEV_STEP_MS (a test aid) makes each decoding step last at least that long, on any CPU.

    Only a lower bound is asserted (sleeping guarantees it); how much longer it takes is the CPU's.
    """
    paced = MusicGenBackend(
        dev_entries["dev-musicgen-tiny"], worker_settings.model_copy(update={"dev_step_ms": 40.0})
    )
    try:
        started = time.monotonic()
        audio = paced.generate(music(duration_s=0.5, seed=3), progress=lambda _: None)  # 25 steps
        assert time.monotonic() - started >= 25 * 0.040
    finally:
        paced.unload()
    np.testing.assert_array_equal(audio.samples, musicgen.generate(music(duration_s=0.5, seed=3)).samples)
    with pytest.raises(ValueError, match="SOUNDRY_DEV_MODELS"):
        Settings(dev_step_ms=5.0, dev_models=False)


def test_musicgen_seed_repeats_and_varies(musicgen: MusicGenBackend) -> None:
    a = musicgen.generate(music(seed=7))
    b = musicgen.generate(music(seed=7))
    c = musicgen.generate(music(seed=8))
    np.testing.assert_array_equal(a.samples, b.samples)
    assert not np.array_equal(a.samples, c.samples)


@pytest.mark.parametrize(
    "change", [{"temperature": 0.3}, {"top_k": 2}, {"top_p": 0.5}, {"cfg_coef": 1.0}], ids=str
)
def test_musicgen_sampling_params_reach_the_model(musicgen: MusicGenBackend, change: dict[str, Any]) -> None:
    base = musicgen.generate(music(seed=3))
    changed = musicgen.generate(music(seed=3, **change))
    assert not np.array_equal(base.samples, changed.samples)


def test_musicgen_params_do_not_leak_between_calls(
    musicgen: MusicGenBackend, worker_settings: Settings, dev_entries: dict[str, ModelEntry]
) -> None:
    musicgen.generate(music(seed=5, temperature=0.2, top_k=3, cfg_coef=1.0, duration_s=1.5))
    second = musicgen.generate(music(seed=5))
    fresh = MusicGenBackend(dev_entries["dev-musicgen-tiny"], worker_settings)
    try:
        expected = fresh.generate(music(seed=5))
    finally:
        fresh.unload()
    np.testing.assert_array_equal(second.samples, expected.samples)


def test_musicgen_rejects_bad_requests(musicgen: MusicGenBackend) -> None:
    with pytest.raises(InvalidInput) as err:
        musicgen.generate(music(top_k=65))
    assert err.value.field == "sampling.top_k"
    with pytest.raises(InvalidInput):
        musicgen.generate(music(melody=sine(440, 1.0, SR)))
    with pytest.raises(InvalidInput):
        musicgen.generate(GenRequest("x", seed=1, duration_s=None))
    with pytest.raises(InvalidInput):  # the prompt must be shorter than the clip
        musicgen.generate(music(duration_s=1.0, continuation=sine(220, 1.0, SR)))


def test_musicgen_continuation(musicgen: MusicGenBackend) -> None:
    prompt = sine(220, 1.0, 44100, channels=2)  # other rate and channels: converted by audiocraft
    a = musicgen.generate(music(seed=2, duration_s=2.0, continuation=prompt))
    b = musicgen.generate(music(seed=2, duration_s=2.0, continuation=prompt))
    plain = musicgen.generate(music(seed=2, duration_s=2.0))
    assert_clip(a, SR, 2.0)
    np.testing.assert_array_equal(a.samples, b.samples)
    assert not np.array_equal(a.samples, plain.samples)


def test_musicgen_long_form_spans_windows(
    musicgen: MusicGenBackend, worker_settings: Settings, dev_entries: dict[str, ModelEntry]
) -> None:
    entry = dev_entries["dev-musicgen-tiny"].model_copy(update={"window_s": 2.0})
    backend = MusicGenBackend(entry, worker_settings)
    seen: list[float] = []
    audio = backend.generate(music(seed=4, duration_s=5.0), progress=seen.append)
    assert_clip(audio, SR, 5.0)
    assert seen[-1] == 1.0
    assert all(a < b for a, b in itertools.pairwise(seen))
    one_window_steps = 2 * 50 + 3  # tokens of one 2 s window at 50 Hz plus the codebook delays
    assert len(seen) > 2 * one_window_steps  # several windows reported, not one
    assert len(chunk_plan(5.0, 2.0, 1.2, 50.0)) == 4
    # 2.76 s made audiocraft's own loop plan an empty last pass (float truncation): must work
    assert_clip(backend.generate(music(seed=4, duration_s=2.76)), SR, 2.76)
    # continuation combined with long form
    cont = backend.generate(music(seed=4, duration_s=4.0, continuation=sine(220, 1.0, SR)))
    assert_clip(cont, SR, 4.0)
    backend.unload()


def test_musicgen_batch(musicgen: MusicGenBackend) -> None:
    reqs = [music(seed=11, duration_s=1.0), GenRequest("rock drums", seed=99, duration_s=1.0, top_k=50)]
    assert musicgen.batch_key(reqs[0]) == musicgen.batch_key(reqs[1])
    first = musicgen.generate_batch(reqs)
    again = musicgen.generate_batch(reqs)
    assert len(first) == 2
    for audio in first:
        assert_clip(audio, SR, 1.0)
    for x, y in zip(first, again, strict=True):
        np.testing.assert_array_equal(x.samples, y.samples)
    assert not np.array_equal(first[0].samples, first[1].samples)
    with pytest.raises(InvalidInput):
        musicgen.generate_batch([reqs[0], music(duration_s=2.0)])
    assert musicgen.batch_key(music(continuation=sine(220, 0.5, SR))) is None


def test_musicgen_melody(musicgen_melody: MusicGenBackend) -> None:
    melody = sine(440, 2.0, 44100)
    a = musicgen_melody.generate(music(seed=6, duration_s=1.5, melody=melody))
    b = musicgen_melody.generate(music(seed=6, duration_s=1.5, melody=melody))
    other = musicgen_melody.generate(music(seed=6, duration_s=1.5, melody=sine(196, 2.0, 44100)))
    plain = musicgen_melody.generate(music(seed=6, duration_s=1.5))
    assert_clip(a, SR, 1.5)
    np.testing.assert_array_equal(a.samples, b.samples)  # Demucs' random shift is seeded too
    assert not np.array_equal(a.samples, other.samples)
    assert not np.array_equal(a.samples, plain.samples)


# -- AudioGen ---------------------------------------------------------------------------------------


def test_audiogen_half_second(audiogen: AudioGenBackend) -> None:
    seen: list[float] = []
    audio = audiogen.generate(
        GenRequest("a door creaks", seed=1, duration_s=0.5, top_k=50), progress=seen.append
    )
    assert_clip(audio, 16000, 0.5)
    assert seen[-1] == 1.0


# -- coqui VITS -------------------------------------------------------------------------------------


def test_vits_speakers_seed_and_speed(vits: CoquiBackend) -> None:
    text = "Hello there. I have 42 apples!"
    alice = vits.generate(GenRequest(text, seed=1, voice="alice"))
    alice2 = vits.generate(GenRequest(text, seed=1, voice="alice"))
    bob = vits.generate(GenRequest(text, seed=1, voice="bob"))
    fast = vits.generate(GenRequest(text, seed=1, voice="alice", speed=2.0))
    for audio in (alice, bob, fast):
        assert audio.sample_rate == 22050 and audio.channels == 1
        assert audio.duration_s > 0.3 and rms(audio) > 1e-4
    np.testing.assert_array_equal(alice.samples, alice2.samples)
    assert not np.array_equal(alice.samples, bob.samples)
    assert fast.duration_s < alice.duration_s
    with pytest.raises(InvalidInput) as err:
        vits.generate(GenRequest(text, seed=1, voice="carol"))
    assert err.value.field == "voice" and "alice" in err.value.message


def test_vits_progress_per_sentence(vits: CoquiBackend) -> None:
    seen: list[float] = []
    vits.generate(GenRequest("One. Two. Three. Four.", seed=1), progress=seen.append)
    assert seen == [0.25, 0.5, 0.75, 1.0]


# -- Piper ------------------------------------------------------------------------------------------


def test_piper_speaks_and_speed(piper: PiperBackend) -> None:
    text = "Welcome to Soundry. It speaks 2 sentences."
    normal = piper.generate(GenRequest(text, seed=1))
    fast = piper.generate(GenRequest(text, seed=1, speed=2.0))
    assert normal.sample_rate == 22050 and normal.channels == 1
    assert normal.duration_s > 1.0 and rms(normal) > 1e-3
    assert fast.duration_s < 0.8 * normal.duration_s
    with pytest.raises(InvalidInput):
        piper.generate(GenRequest(text, seed=1, voice="nobody"))


# -- unavailable real models ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "model_id",
    [
        *("musicgen-small", "musicgen-melody", "audiogen-medium", "vits-vctk", "xtts-v2", "kokoro-82m"),
        "stable-audio-open-1.0",
    ],
)
def test_real_model_not_cached_is_unavailable_fast(
    model_id: str, worker_settings: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Fast by construction, not by a stopwatch: the answer comes from the local cache alone (no
    connection is attempted, so no network timeout can stretch it) and no model is loaded."""
    import socket

    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "hf"))
    monkeypatch.setenv("TTS_HOME", str(tmp_path / "tts"))
    connections: list[object] = []

    def no_network(self: socket.socket, address: object) -> None:
        connections.append(address)
        raise OSError(f"test: no network ({address})")

    monkeypatch.setattr(socket.socket, "connect", no_network)
    monkeypatch.setattr(socket.socket, "connect_ex", no_network)
    entry = next(e for e in STATIC_MODELS if e.id == model_id)
    backend = create_backend(entry, worker_settings)
    with pytest.raises(ModelUnavailable) as err:
        backend.load()
    assert connections == [], f"tried to connect to {connections}"
    assert model_id in err.value.message
    assert f"soundry models pull {model_id}" in err.value.message
    assert not backend.loaded  # type: ignore[attr-defined]


def test_local_checkpoint_folder_wins(worker_settings: Settings, tiny_models_dir: Path) -> None:
    """A checkpoint at <models_dir>/<id>/ is used for a real id (no hub lookup)."""
    entry = next(e for e in STATIC_MODELS if e.id == "vits-vctk")
    write_tiny_vits(tiny_models_dir / entry.id, speakers=("p225", "p226"))
    backend = CoquiBackend(entry, worker_settings)
    try:
        audio = backend.generate(GenRequest("Local weights.", seed=1, voice="p226"))
        assert audio.duration_s > 0.1
    finally:
        backend.unload()


# -- tiny checkpoints -------------------------------------------------------------------------------


def test_ensure_tiny_is_idempotent_and_checks_names(tiny_models_dir: Path) -> None:
    folder = ensure_tiny("tiny:audiogen", tiny_models_dir)
    stamp = (folder / "state_dict.bin").stat().st_mtime_ns
    assert ensure_tiny("tiny:audiogen", tiny_models_dir) == folder
    assert (folder / "state_dict.bin").stat().st_mtime_ns == stamp
    assert (folder / MANIFEST).is_file()
    assert not [p for p in folder.parent.iterdir() if p.name.startswith(".")]  # no temp leftovers
    assert (ensure_tiny("tiny:musicgen-melody", tiny_models_dir) / "demucs" / "htdemucs.th").is_file()
    with pytest.raises(ValueError, match="tiny:musicgen"):
        ensure_tiny("tiny:nope", tiny_models_dir)


def test_tiny_vits_is_deterministic(tmp_path: Path) -> None:
    import torch

    a = torch.load(write_tiny_vits(tmp_path / "a") / "model.pth", weights_only=True)["model"]
    b = torch.load(write_tiny_vits(tmp_path / "b") / "model.pth", weights_only=True)["model"]
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_create_backend_by_family(worker_settings: Settings, dev_entries: dict[str, ModelEntry]) -> None:
    assert isinstance(create_backend(dev_entries["dev-musicgen-tiny"], worker_settings), MusicGenBackend)
    assert isinstance(create_backend(dev_entries["dev-audiogen-tiny"], worker_settings), AudioGenBackend)
    assert isinstance(create_backend(dev_entries["dev-vits-tiny"], worker_settings), CoquiBackend)


# -- ModelManager -----------------------------------------------------------------------------------


class FakeBackend:
    """Counts loads; its size is what the test says (ModelManager logic only)."""

    loads: ClassVar[dict[str, int]] = {}

    def __init__(self, entry: ModelEntry, settings: Settings, size: int, delay_s: float = 0.0) -> None:
        self.entry = entry
        self.size = size
        self.delay_s = delay_s
        self.loaded = False

    def load(self) -> None:
        time.sleep(self.delay_s)
        FakeBackend.loads[self.entry.id] = FakeBackend.loads.get(self.entry.id, 0) + 1
        self.loaded = True

    def unload(self) -> None:
        self.loaded = False

    def memory_bytes(self) -> int:
        return self.size if self.loaded else 0

    def generate(self, request: GenRequest, *, progress: object = None) -> Audio:
        raise NotImplementedError


MB = 1024**2


def fake_manager(
    settings: Settings, sizes: dict[str, int], delay_s: float = 0.0
) -> tuple[ModelManager, list[float]]:
    now = [0.0]
    manager = ModelManager(
        settings,
        factory=lambda entry, s: FakeBackend(entry, s, sizes[entry.id], delay_s),
        clock=lambda: now[0],
    )
    return manager, now


def entry(model_id: str, dev_entries: dict[str, ModelEntry]) -> ModelEntry:
    return dev_entries["dev-audiogen-tiny"].model_copy(update={"id": model_id})


def test_manager_lru_eviction_under_budget(
    worker_settings: Settings, dev_entries: dict[str, ModelEntry]
) -> None:
    settings = worker_settings.model_copy(update={"model_memory_gb": 10 / 1024})  # 10 MB
    manager, now = fake_manager(settings, {"a": 4 * MB, "b": 4 * MB, "c": 4 * MB})
    a, b, c = (entry(x, dev_entries) for x in "abc")
    backend_a = manager.get(a)
    now[0] = 1
    manager.get(b)
    now[0] = 2
    assert manager.get(a) is backend_a  # cached; a is now the most recent
    now[0] = 3
    manager.get(c)  # 12 MB > 10 MB: b (least recently used) goes
    assert manager.loaded_ids() == ["a", "c"]
    assert manager.used_bytes() == 8 * MB
    with manager.use(a):  # pinned models survive eviction
        now[0] = 4
        manager.get(b)
        assert "a" in manager.loaded_ids() and "c" not in manager.loaded_ids()


def test_manager_keeps_a_model_larger_than_the_budget(
    worker_settings: Settings, dev_entries: dict[str, ModelEntry]
) -> None:
    settings = worker_settings.model_copy(update={"model_memory_gb": 1 / 1024})
    manager, _ = fake_manager(settings, {"big": 5 * MB, "small": MB // 2})
    manager.get(entry("small", dev_entries))
    backend = manager.get(entry("big", dev_entries))
    assert manager.loaded_ids() == ["big"] and backend.loaded  # type: ignore[attr-defined]


def test_manager_idle_eviction(worker_settings: Settings, dev_entries: dict[str, ModelEntry]) -> None:
    settings = worker_settings.model_copy(update={"model_idle_s": 60.0})
    manager, now = fake_manager(settings, {"a": MB, "b": MB})
    backend_a = manager.get(entry("a", dev_entries))
    now[0] = 50
    manager.get(entry("b", dev_entries))
    assert manager.evict_idle(now=59) == []
    assert manager.evict_idle(now=61) == ["a"]
    assert not backend_a.loaded  # type: ignore[attr-defined]
    assert manager.loaded_ids() == ["b"]
    assert manager.evict_idle(now=200) == ["b"]
    assert manager.used_bytes() == 0


def test_manager_loads_a_model_once_under_concurrency(
    worker_settings: Settings, dev_entries: dict[str, ModelEntry]
) -> None:
    manager, _ = fake_manager(worker_settings, {"slow": MB}, delay_s=0.2)
    FakeBackend.loads.pop("slow", None)
    results: list[object] = []
    threads = [
        threading.Thread(target=lambda: results.append(manager.get(entry("slow", dev_entries))))
        for _ in range(4)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert FakeBackend.loads["slow"] == 1
    assert len({id(r) for r in results}) == 1


def test_manager_with_real_tiny_backends(
    worker_settings: Settings, dev_entries: dict[str, ModelEntry]
) -> None:
    settings = worker_settings.model_copy(update={"model_memory_gb": 2.0 / 1024})  # 2 MB: one tiny model
    manager = ModelManager(settings)
    musicgen = manager.get(dev_entries["dev-musicgen-tiny"])
    assert 0 < manager.used_bytes() <= 2 * 1024**2
    audiogen = manager.get(dev_entries["dev-audiogen-tiny"])
    assert manager.loaded_ids() == ["dev-audiogen-tiny"]
    assert not musicgen.loaded and audiogen.loaded  # type: ignore[attr-defined]
    assert_clip(audiogen.generate(GenRequest("rain", seed=1, duration_s=0.5, top_k=50)), 16000, 0.5)
    manager.unload_all()
    assert manager.loaded_ids() == [] and not audiogen.loaded  # type: ignore[attr-defined]


def test_generate_loads_lazily(worker_settings: Settings, dev_entries: dict[str, ModelEntry]) -> None:
    backend = AudioGenBackend(dev_entries["dev-audiogen-tiny"], worker_settings)
    assert not backend.loaded
    assert_clip(backend.generate(GenRequest("wind", seed=1, duration_s=0.5, top_k=50)), 16000, 0.5)
    assert backend.loaded
    backend.unload()
    assert not backend.loaded and backend.memory_bytes() == 0
