"""Kokoro on the tiny random checkpoint: hexgrad/Kokoro-82M's layout, loaded by ``kokoro.KModel``."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from gen_server.audio import Audio
from gen_server.contract.catalog import DEV_MODELS, STATIC_MODELS
from gen_server.errors import InvalidInput
from workers.backends.base import GenRequest
from workers.backends.kokoro import KokoroBackend, language_for, phoneme_chunks
from workers.tiny.kokoro import CHECKPOINT, SAMPLES_PER_FRAME, TINY_VOICES, VOCAB

TEXT = "The brown fox jumps. It was not amused!"
SUBMODULES = {"bert", "bert_encoder", "predictor", "text_encoder", "decoder"}


def rms(audio: Audio) -> float:
    return float(np.sqrt(np.mean(np.square(audio.samples, dtype=np.float64))))


def test_tiny_folder_is_the_real_layout_and_every_weight_loads(kokoro: KokoroBackend) -> None:
    """config.json + kokoro-v1_0.pth (sub-module state dicts, ``module.`` keys) + voices/*.pt; KModel's
    loader falls back to ``strict=False`` for those keys, so check that nothing was left out."""
    folder = Path(kokoro._folder.checkpoint).parent  # type: ignore[union-attr]
    assert sorted(p.name for p in (folder / "voices").iterdir()) == sorted(f"{v}.pt" for v in TINY_VOICES)
    saved = torch.load(folder / CHECKPOINT, map_location="cpu", weights_only=True)
    assert set(saved) == SUBMODULES
    for name, state in saved.items():
        assert all(key.startswith("module.") for key in state)
        loaded = getattr(kokoro._model, name).state_dict()
        assert set(loaded) == {key.removeprefix("module.") for key in state}, name
        for key, value in state.items():
            assert torch.equal(loaded[key.removeprefix("module.")], value.to(loaded[key[7:]].dtype)), key
    assert kokoro._model.vocab == VOCAB and len(VOCAB) == 114
    pack = torch.load(folder / "voices" / "af_heart.pt", weights_only=True)
    assert pack.shape == (510, 1, 256) and pack.dtype == torch.float32


def test_speaks_sentences_at_24khz_with_model_word_timings(kokoro: KokoroBackend) -> None:
    pieces: list[Audio] = []
    audio = kokoro.generate(GenRequest(TEXT, seed=3, voice="af_heart", on_audio=pieces.append))
    assert audio.sample_rate == 24000 and audio.channels == 1
    assert rms(audio) > 1e-4 and np.isfinite(audio.samples).all()
    # 3 frames (600 samples each) per input symbol at speed 1, plus the pause between the sentences
    symbols = sum(len(kokoro.phonemes(s, "en-us")) + 2 for s in TEXT.replace("!", ".").split(". "))
    expected_s = symbols * 3 * SAMPLES_PER_FRAME / 24000
    assert expected_s < audio.duration_s < expected_s + 1.5
    assert len(pieces) == 2  # one piece per sentence, streamed as made
    assert sum(p.frames for p in pieces) == audio.frames
    assert [w.text for w in audio.words] == TEXT.split()
    assert all(w.source in ("model", "estimated") for w in audio.words)
    assert sum(w.source == "model" for w in audio.words) >= len(audio.words) - 4
    starts = [w.start_s for w in audio.words]
    assert starts == sorted(starts) and audio.words[-1].end_s <= audio.duration_s
    again = kokoro.generate(GenRequest(TEXT, seed=3, voice="af_heart"))
    assert np.array_equal(again.samples, audio.samples)  # a seed repeats the take


def test_blend_is_the_normalised_weighted_mix_of_the_packs(kokoro: KokoroBackend) -> None:
    heart, _ = kokoro.voice_pack("af_heart")
    adam, _ = kokoro.voice_pack("am_adam")
    blend, names = kokoro.voice_pack("af_heart(2)+am_adam(1)")
    assert names == ["af_heart", "am_adam"]
    torch.testing.assert_close(blend, (2 * heart + adam) / 3)
    assert not torch.allclose(blend, heart) and not torch.allclose(blend, adam)
    said = [kokoro.generate(GenRequest("Hello there.", seed=1, voice=v)) for v in ("af_heart", "am_adam")]
    mixed = kokoro.generate(GenRequest("Hello there.", seed=1, voice="af_heart(2)+am_adam(1)"))
    for one in said:
        assert mixed.frames == one.frames and not np.allclose(mixed.samples, one.samples, atol=1e-4)


def test_speed_divides_the_durations(kokoro: KokoroBackend) -> None:
    lengths = [
        kokoro.generate(GenRequest("Speed test sentence.", seed=1, speed=speed)).frames
        for speed in (0.5, 1.0, 2.0)
    ]
    assert lengths[0] > 1.5 * lengths[1] > 2.25 * lengths[2]


@pytest.mark.parametrize("voice", ["zz_nobody", "af_heart(2)+zz_nobody", "af_heart(0)", "af_heart("])
def test_unknown_or_malformed_voice_is_refused_naming_voice(kokoro: KokoroBackend, voice: str) -> None:
    with pytest.raises(InvalidInput) as err:
        kokoro.generate(GenRequest("Hi.", seed=1, voice=voice))
    assert err.value.field == "voice"


def test_languages_through_espeak(kokoro: KokoroBackend) -> None:
    entry = kokoro.entry
    assert language_for(entry, None, ["bf_emma"]) == "en-gb"
    assert language_for(entry, None, ["ef_dora"]) == "es"
    assert language_for(entry, "en", ["bf_emma"]) == "en-gb"
    with pytest.raises(InvalidInput) as err:
        language_for(entry, "ja", ["af_heart"])
    assert err.value.field == "language"
    assert kokoro.phonemes("Hola, mundo.", "es") and kokoro.phonemes("Bonjour.", "fr") != "bonjour"
    spanish = kokoro.generate(GenRequest("Hola, mundo.", seed=1, voice="af_heart", language="es"))
    assert spanish.duration_s > 0.3


def test_long_phoneme_strings_are_cut_at_spaces() -> None:
    words = ["abcdefgh"] * 120
    chunks = phoneme_chunks(" ".join(words), limit=100)
    assert all(len(c) <= 100 for c in chunks) and " ".join(chunks).split() == words


def test_catalog_entries() -> None:
    dev = next(e for e in DEV_MODELS if e.id == "dev-kokoro-tiny")
    assert dev.dev and dev.family == "kokoro" and dev.speakers == TINY_VOICES and dev.voice_blending
    real = next(e for e in STATIC_MODELS if e.id == "kokoro-82m")
    assert real.source == "hexgrad/Kokoro-82M" and real.licence.startswith("Apache-2.0")
    assert real.commercial_use and real.sample_rate == 24000 and len(real.speakers) == 41
    assert {"af_heart", "af_bella", "af_sky", "am_adam", "bf_emma", "bm_george"} <= set(real.speakers)
