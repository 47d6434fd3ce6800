"""XTTS-v2 voice cloning through the coqui backend, on the tiny random XTTS (coqui's own loader).

The tiny checkpoint (``workers/tiny/coqui.py``) has XTTS-v2's real structure: tokenizer file, perceiver
conditioning on the references, GPT over audio codes, HiFi-GAN decoder conditioned on the speaker
embedding. Its GPT never stops early, so a sentence always lasts ``XTTS_CODES_PER_SENTENCE`` codes:
durations are predictable while every input (text, language, references, seed, speed) still shapes
the samples.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from gen_server.audio import Audio
from gen_server.contract.catalog import STATIC_MODELS, XTTS_LANGUAGES, ModelEntry
from gen_server.errors import InvalidInput
from gen_server.settings import Settings
from workers.backends.base import GenRequest
from workers.backends.coqui import CoquiBackend, resolve_coqui_source
from workers.text import SENTENCE_PAUSE_S
from workers.tiny import (
    XTTS_CODE_STRIDE,
    XTTS_CODES_PER_SENTENCE,
    XTTS_GPT_SAMPLE_RATE,
    XTTS_SPECIAL_TOKENS,
    ensure_tiny,
)

SR = 24000
TEXT = "Hello there, how are you today?"


def voice_clip(
    f0: float, formant_hz: float, sample_rate: int, seconds: float = 3.0, channels: int = 1
) -> Audio:
    """A voiced-like clip: harmonics of ``f0`` with vibrato, shaped by one formant, in syllable bursts."""
    t = np.arange(round(seconds * sample_rate)) / sample_rate
    phase = 2 * np.pi * np.cumsum(f0 * (1 + 0.03 * np.sin(2 * np.pi * 5 * t))) / sample_rate
    harmonics = range(1, int(4000 // f0))
    wave = sum(np.sin(k * phase) / k * np.exp(-(((k * f0 - formant_hz) / 600) ** 2)) for k in harmonics)
    wave = np.asarray(wave) * (0.5 + 0.5 * np.sin(2 * np.pi * 3 * t)) ** 2  # ~3 syllables a second
    wave = 0.5 * wave / np.abs(wave).max()
    return Audio(np.tile(wave, (channels, 1)).astype(np.float32), sample_rate)


LOW = voice_clip(110, 700, 22050)
HIGH = voice_clip(220, 1500, 24000)
STEREO = voice_clip(165, 1100, 44100, channels=2)


def speak(backend: CoquiBackend, text: str = TEXT, **kw: Any) -> Audio:
    """``text`` cloned from ``LOW`` in English with seed 1, unless ``kw`` says otherwise."""
    params: dict[str, Any] = {"seed": 1, "language": "en", "references": (LOW,), **kw}
    return backend.generate(GenRequest(text, **params))


def assert_speech(audio: Audio, sentences: int = 1, speed: float = 1.0) -> None:
    """Mono, finite, audible, at the native 24 kHz, and as long as the sentences the GPT coded."""
    assert audio.sample_rate == SR and audio.channels == 1
    assert audio.samples.dtype == np.float32 and np.isfinite(audio.samples).all()
    assert np.abs(audio.samples).max() <= 1.0
    assert float(np.sqrt(np.mean(np.square(audio.samples, dtype=np.float64)))) > 1e-3
    # XTTS stretches the GPT latents (one per code) by 1/speed, rounding down; each one is a code
    # stride of audio at the GPT's 22.05 kHz (the decoder rounds a little more)
    sentence_s = math.floor(XTTS_CODES_PER_SENTENCE / speed) * XTTS_CODE_STRIDE / XTTS_GPT_SAMPLE_RATE
    expected = sentences * sentence_s + (sentences - 1) * SENTENCE_PAUSE_S
    assert audio.duration_s == pytest.approx(expected, rel=0.03)


def test_clones_from_one_and_from_three_references(xtts: CoquiBackend) -> None:
    assert xtts.sample_rate == SR == xtts.entry.sample_rate
    one = speak(xtts)
    three = speak(xtts, references=(LOW, HIGH, STEREO))  # 22.05, 24 and 44.1 kHz stereo
    assert_speech(one)
    assert_speech(three)
    assert not np.array_equal(one.samples, three.samples)  # the extra references reach the model


def test_sentences_and_progress(xtts: CoquiBackend) -> None:
    seen: list[float] = []
    audio = xtts.generate(
        GenRequest("First sentence. And a second one.", seed=1, language="en", references=(HIGH,)),
        progress=seen.append,
    )
    assert seen == [0.5, 1.0]
    assert_speech(audio, sentences=2)


def test_language_reaches_the_model(xtts: CoquiBackend) -> None:
    text = "hello world"  # letters only: text and coqui's cleaners are identical in every language
    en, de, es = (speak(xtts, text, language=lang) for lang in ("en", "de", "es"))
    for audio in (en, de, es):
        assert_speech(audio)
    # the same seed, text and voice: only the language token in front of the text differs
    assert not np.array_equal(en.samples, de.samples)
    assert not np.array_equal(en.samples, es.samples)
    assert not np.array_equal(de.samples, es.samples)
    with pytest.raises(InvalidInput) as err:
        speak(xtts, text, language="xx")
    assert err.value.field == "language" and "zh-cn" in err.value.message


def test_seed_repeats_and_varies_and_speed_reaches_the_model(xtts: CoquiBackend) -> None:
    a = speak(xtts, seed=7)
    b = speak(xtts, seed=7)
    c = speak(xtts, seed=8)
    np.testing.assert_array_equal(a.samples, b.samples)
    assert not np.array_equal(a.samples, c.samples)
    fast = speak(xtts, seed=7, speed=2.0)
    assert_speech(fast, speed=2.0)
    assert fast.duration_s < 0.6 * a.duration_s
    again = speak(xtts, seed=7)  # speed is a per-call argument: nothing left behind
    np.testing.assert_array_equal(again.samples, a.samples)


def test_references_steer_the_voice(xtts: CoquiBackend) -> None:
    low = speak(xtts, references=(LOW,))
    high = speak(xtts, references=(HIGH,))
    low_high = speak(xtts, references=(LOW, HIGH))
    assert not np.array_equal(low.samples, high.samples)
    assert not np.array_equal(low_high.samples, low.samples)
    assert not np.array_equal(low_high.samples, high.samples)
    # a reference is decoded at its own rate: the same voice at 44.1 kHz clones like at 22.05 kHz
    resampled = voice_clip(110, 700, 44100)
    close = speak(xtts, references=(resampled,))
    # measured for seeds 0-19: max|close - low| / max|high - low| = 0.018-0.024 (threshold 1)
    assert float(np.abs(close.samples - low.samples).max()) < float(np.abs(high.samples - low.samples).max())


def test_cloning_needs_references(xtts: CoquiBackend, vits: CoquiBackend) -> None:
    with pytest.raises(InvalidInput) as err:
        speak(xtts, references=())
    assert err.value.field == "reference_uploads"
    with pytest.raises(InvalidInput) as err:
        vits.generate(GenRequest("Hello.", seed=1, references=(LOW,)))
    assert err.value.field == "reference_uploads"


def test_tiny_xtts_is_coquis_folder_format(tiny_models_dir: Path) -> None:
    import torch
    from TTS.tts.layers.xtts.tokenizer import VoiceBpeTokenizer

    folder = ensure_tiny("tiny:xtts", tiny_models_dir)
    config = json.loads((folder / "config.json").read_text())
    assert config["model"] == "xtts" and config["model_args"]["gpt_use_perceiver_resampler"]
    assert tuple(config["languages"]) == XTTS_LANGUAGES  # the catalog offers what the model takes
    checkpoint = torch.load(folder / "model.pth", map_location="cpu", weights_only=True)
    assert set(checkpoint) == {"model"}
    assert any(k.startswith("gpt.conditioning_perceiver.") for k in checkpoint["model"])
    assert any(k.startswith("hifigan_decoder.speaker_encoder.") for k in checkpoint["model"])
    tokenizer = VoiceBpeTokenizer(vocab_file=str(folder / "vocab.json"))
    vocab = tokenizer.tokenizer.get_vocab()
    assert vocab["[STOP]"] == 0 and all(token in vocab for token in XTTS_SPECIAL_TOKENS)
    ids = tokenizer.encode("the cat", lang="de")
    assert ids[0] == vocab["[de]"] and vocab["the"] in ids and vocab["[SPACE]"] in ids
    assert tokenizer.encode("zebra ☃", lang="en")[-1] == vocab["[UNK]"]


def test_real_xtts_entry_loads_a_local_folder(
    worker_settings: Settings, tiny_models_dir: Path, tmp_path: Path
) -> None:
    """A folder at <models_dir>/xtts-v2/ is loaded like the hub snapshot (folder + config, no hub)."""
    entry: ModelEntry = next(e for e in STATIC_MODELS if e.id == "xtts-v2")
    settings = worker_settings.model_copy(update={"models_dir": tmp_path})  # not the shared models dir
    (tmp_path / entry.id).symlink_to(ensure_tiny("tiny:xtts", tiny_models_dir), target_is_directory=True)
    source = resolve_coqui_source(entry, settings)
    assert source.model_path == tmp_path / entry.id  # XTTS loads from the folder, not model.pth
    backend = CoquiBackend(entry, settings)
    try:
        audio = backend.generate(GenRequest("Local weights.", seed=1, language="fr", references=(HIGH,)))
        assert_speech(audio)
    finally:
        backend.unload()


@pytest.mark.parametrize(("language", "text"), [("zh-cn", "你好，世界。"), ("ja", "こんにちは、世界。")])
def test_chinese_and_japanese_text_front_ends_run(xtts: CoquiBackend, language: str, text: str) -> None:
    """coqui romanises these (pypinyin, cutlet + unidic-lite: the coqui-tts[zh,ja] extras)."""
    assert_speech(speak(xtts, text, language=language))
