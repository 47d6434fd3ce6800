"""Real checkpoints from the local model cache (``pytest -m real_weights``), skipped when absent.

Each test first asks the backend's own resolver where the weights are, with downloads off: that
answers from the local cache without loading a model or touching the network, so a missing model
skips at once, naming the command that fetches it (``soundry models pull ID``). Present weights
load through the real backend and make 1-2 s of audio.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import numpy as np
import pytest

from gen_server.audio import Audio
from gen_server.contract.catalog import ModelEntry, build_catalog
from gen_server.errors import ModelUnavailable
from gen_server.settings import Settings, get_settings
from workers.backends._audiocraft_weights import resolve_audiocraft_source
from workers.backends.base import Backend, GenRequest
from workers.backends.coqui import resolve_coqui_source
from workers.backends.registry import create_backend

pytestmark = pytest.mark.real_weights

RESOLVERS: dict[str, Callable[[ModelEntry, Settings], object]] = {
    "musicgen": resolve_audiocraft_source,
    "audiogen": resolve_audiocraft_source,
    "coqui": resolve_coqui_source,
}


@pytest.fixture(scope="module")
def settings() -> Settings:
    """This machine's settings (its models folder and caches), never downloading."""
    return get_settings().model_copy(update={"allow_downloads": False})


def cached_entry(model_id: str, settings: Settings) -> ModelEntry:
    """The catalog entry of ``model_id`` if its weights are local; skips the test otherwise."""
    entry = build_catalog(settings).get(model_id)
    try:
        RESOLVERS[entry.family](entry, settings)
    except ModelUnavailable:
        pytest.skip(f"{model_id}: real weights not in the local cache; run `soundry models pull {model_id}`")
    return entry


@pytest.fixture
def loaded(request: pytest.FixtureRequest, settings: Settings) -> Iterator[Backend]:
    """The real backend of the parametrized model id, loaded; unloaded afterwards."""
    backend = create_backend(cached_entry(request.param, settings), settings)
    try:
        backend.load()
        yield backend
    finally:
        backend.unload()


def assert_audio(audio: Audio, entry: ModelEntry, min_s: float, max_s: float) -> None:
    assert audio.sample_rate == entry.sample_rate
    assert audio.channels == entry.channels
    assert audio.samples.dtype == np.float32 and np.isfinite(audio.samples).all()
    assert min_s <= audio.duration_s <= max_s, audio.duration_s
    assert float(np.sqrt(np.mean(np.square(audio.samples, dtype=np.float64)))) > 1e-3  # not silence


@pytest.mark.parametrize(
    ("loaded", "prompt"),
    [("musicgen-small", "warm lofi piano with soft drums"), ("audiogen-medium", "a dog barks twice")],
    indirect=["loaded"],
)
def test_audiocraft_makes_the_requested_length(loaded: Backend, prompt: str) -> None:
    audio = loaded.generate(GenRequest(prompt, seed=1, duration_s=1.5))
    assert_audio(audio, loaded.entry, 1.4, 1.6)
    assert audio.frames == round(1.5 * loaded.entry.sample_rate)


@pytest.mark.parametrize("loaded", ["xtts-v2"], indirect=True)
def test_xtts_clones_a_reference(loaded: Backend) -> None:
    sr = 22050
    t = np.arange(3 * sr) / sr
    phase = 2 * np.pi * np.cumsum(140 * (1 + 0.03 * np.sin(2 * np.pi * 5 * t))) / sr
    voiced = sum(np.sin(k * phase) / k for k in range(1, 20)) * (0.5 + 0.5 * np.sin(2 * np.pi * 3 * t)) ** 2
    reference = Audio.mono((0.4 * voiced / np.abs(voiced).max()).astype(np.float32), sr)
    audio = loaded.generate(GenRequest("Hello from Soundry.", seed=1, language="en", references=(reference,)))
    assert_audio(audio, loaded.entry, 0.4, 6.0)


@pytest.mark.parametrize("loaded", ["vits-ljspeech"], indirect=True)
def test_vits_speaks(loaded: Backend) -> None:
    audio = loaded.generate(GenRequest("Hello from Soundry.", seed=1))
    assert_audio(audio, loaded.entry, 0.4, 6.0)
