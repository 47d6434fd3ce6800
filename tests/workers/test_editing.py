"""Exact tempo, loops and analysis through the job pipeline (workers/editing.py via workers/pipeline.finish)
on the tiny MusicGen and AudioGen, with a beat imposed on the tiny model's audio (random weights make
no beat of their own)."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from gen_server.audio import Audio
from gen_server.audio.analysis import detect_beats, seam
from gen_server.audio.watermark import KeyedWatermarker
from gen_server.contract.catalog import Catalog, ModelEntry
from gen_server.contract.result import JobResult
from gen_server.contract.spec import JobRequest, JobSpec, build_spec
from gen_server.storage import LocalStore
from tests.gen_server.test_analysis import click_track
from workers.backends.audiogen import AudioGenBackend
from workers.backends.musicgen import MusicGenBackend
from workers.pipeline import finish, gen_request

KEY = b"k" * 32


def _spec(dev_entries: dict[str, ModelEntry], **fields: object) -> JobSpec:
    catalog = Catalog(list(dev_entries.values()))
    return build_spec(JobRequest.model_validate(fields), catalog, job_id="j-" + str(abs(hash(str(fields)))))


def _finish(spec: JobSpec, made: Audio, store: LocalStore) -> JobResult:
    return finish(
        spec, made, watermarker=KeyedWatermarker(KEY), watermark_key=KEY, store=store, generation_s=1.0
    )


def _stored(store: LocalStore, result: JobResult) -> tuple[np.ndarray, int]:
    """The stored file, decoded by soundfile (an independent decoder): ``([frames, channels], rate)``."""
    data, rate = sf.read(io.BytesIO(store.get(result.artifact)), always_2d=True, dtype="float32")
    return data, rate


def _with_beat(audio: Audio, bpm: float) -> Audio:
    """The tiny model's audio (random weights: noise-like) under an accented click track."""
    clicks = click_track(bpm, audio.duration_s, rate=audio.sample_rate, seed=1).samples
    return Audio((0.3 * audio.samples[:, : clicks.shape[1]] + clicks).astype(np.float32), audio.sample_rate)


def test_tempo_of_tiny_model_audio_with_an_imposed_beat(
    musicgen: MusicGenBackend, dev_entries: dict[str, ModelEntry]
) -> None:
    spec = _spec(dev_entries, kind="music", model="dev-musicgen-tiny", prompt="drums", duration_s=6.0, seed=3)
    made = musicgen.generate(gen_request(spec, LocalStore(Path("/nonexistent"))))
    for bpm in (92.0, 128.0):
        found = detect_beats(_with_beat(made, bpm))
        assert found is not None and abs(found.bpm - bpm) / bpm < 0.02, (bpm, found and found.bpm)


def test_exact_tempo_job(
    musicgen: MusicGenBackend, dev_entries: dict[str, ModelEntry], tmp_path: Path
) -> None:
    spec = _spec(
        dev_entries,
        kind="music",
        model="dev-musicgen-tiny",
        prompt="lofi",
        duration_s=6.0,
        seed=4,
        tempo_bpm=100,
    )
    store = LocalStore(tmp_path)
    request = gen_request(spec, store)
    assert request.prompt == "lofi, 100 bpm" and request.duration_s == pytest.approx(6.6)
    made = _with_beat(musicgen.generate(request), 94.0)  # the "model" landed 6 % slow
    result = _finish(spec, made, store)
    assert result.tempo is not None and result.tempo.generated_bpm == pytest.approx(94.0, rel=0.01)
    assert result.tempo.stretch == pytest.approx(100 / 94, rel=0.01) and not result.warnings
    assert result.duration_s == pytest.approx(6.0, abs=0.01)
    assert result.analysis is not None and result.analysis.tempo_bpm == pytest.approx(100.0, rel=0.01)
    data, rate = sf.read(io.BytesIO(store.get(result.artifact)), always_2d=True)
    again = detect_beats(Audio(data.T.astype(np.float32), rate), hint_bpm=100)
    assert again is not None and abs(again.bpm - 100.0) < 1.0
    info = sf.info(io.BytesIO(store.get(result.artifact)))
    comment = info.extra_info + str(sf.SoundFile(io.BytesIO(store.get(result.artifact))).comment)
    assert "bpm=100" in comment and "licence=random weights" in comment  # tags: tempo, the model's licence


def test_a_far_stretch_is_done_and_reported(
    musicgen: MusicGenBackend, dev_entries: dict[str, ModelEntry], tmp_path: Path
) -> None:
    spec = _spec(
        dev_entries,
        kind="music",
        model="dev-musicgen-tiny",
        prompt="x",
        duration_s=5.0,
        seed=5,
        tempo_bpm=120,
    )
    made = _with_beat(musicgen.generate(gen_request(spec, LocalStore(tmp_path))), 100.0)
    result = _finish(spec, made, LocalStore(tmp_path))
    assert result.tempo is not None and result.tempo.stretch == pytest.approx(1.2, rel=0.01)
    assert result.warnings and "beyond +-8 %" in result.warnings[0]


def test_music_loop_job_on_whole_bars(
    musicgen: MusicGenBackend, dev_entries: dict[str, ModelEntry], tmp_path: Path
) -> None:
    spec = _spec(
        dev_entries,
        kind="music",
        model="dev-musicgen-tiny",
        prompt="loop",
        seed=6,
        tempo_bpm=120,
        loop=True,
        loop_bars=2,
    )
    assert spec.duration_s == pytest.approx(4.0)
    store = LocalStore(tmp_path)
    request = gen_request(spec, store)
    made = _with_beat(musicgen.generate(request), 120.0)
    result = _finish(spec, made, store)
    assert result.loop is not None and result.loop.bars == 2
    assert result.duration_s == pytest.approx(4.0, abs=1e-3)
    data, rate = _stored(store, result)
    loop = Audio(np.ascontiguousarray(data.T), rate)
    tiled = Audio(np.tile(loop.samples, (1, 4)), rate)
    measured = seam(tiled, bar_lines_s=np.arange(1, 8) * 2.0)
    # no click (the wrap's step no larger than the clip's typical step); its spectral change within the
    # spread of the clip's own frame-to-frame changes: the random-weight model's noise-like output puts
    # the interior flux at ratio 1 +- ~0.1 (a CI run met 1.004), as in tests/e2e/test_elevenlabs.py
    assert measured.jump_ratio <= 1.0 and measured.flux_ratio <= 1.25, measured
    found = KeyedWatermarker(KEY).detect(loop)
    assert found.detected and f"{found.payload:08x}" == result.watermark_payload


def test_sfx_loop_job(audiogen: AudioGenBackend, dev_entries: dict[str, ModelEntry], tmp_path: Path) -> None:
    spec = _spec(
        dev_entries, kind="sfx", model="dev-audiogen-tiny", prompt="rain", duration_s=3.0, seed=7, loop=True
    )
    store = LocalStore(tmp_path)
    made = audiogen.generate(gen_request(spec, store))
    assert made.duration_s == pytest.approx(3.0 + 1.25, abs=0.05)
    result = _finish(spec, made, store)
    assert result.loop is not None and result.loop.bars is None
    assert result.duration_s == pytest.approx(3.0, abs=1e-3)
    data, rate = _stored(store, result)
    measured = seam(Audio(np.tile(np.ascontiguousarray(data.T), (1, 4)), rate))
    # no click (the wrap's step no larger than the clip's typical step); its spectral change within the
    # spread of the clip's own frame-to-frame changes: the random-weight model's noise-like output puts
    # the interior flux at ratio 1 +- ~0.1 (a CI run met 1.004), as in tests/e2e/test_elevenlabs.py
    assert measured.jump_ratio <= 1.0 and measured.flux_ratio <= 1.25, measured
    assert (
        result.analysis is not None
        and result.analysis.key is None
        and result.analysis.loudness_lufs is not None
    )


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"kind": "sfx", "prompt": "x", "tempo_bpm": 120}, "tempo_bpm"),
        ({"kind": "speech", "text": "hi", "loop": True}, "loop"),
        ({"kind": "music", "prompt": "x", "loop_bars": 2, "tempo_bpm": 120}, "loop_bars"),
        ({"kind": "music", "prompt": "x", "loop": True, "loop_bars": 2}, "loop_bars"),
        (
            {"kind": "music", "prompt": "x", "loop": True, "loop_bars": 2, "tempo_bpm": 120, "duration_s": 4},
            "duration_s",
        ),
        ({"kind": "music", "prompt": "x", "loop": True, "post": {"fade_out_s": 1}}, "post.fade_out_s"),
        ({"kind": "music", "prompt": "x", "loop": True, "loop_bars": 64, "tempo_bpm": 40}, "loop_bars"),
        ({"kind": "sfx", "prompt": "x", "loop": True, "duration_s": 0.5}, "duration_s"),
    ],
)
def test_bad_edit_options_are_refused_naming_the_field(
    dev_entries: dict[str, ModelEntry], fields: dict[str, object], field: str
) -> None:
    from gen_server.errors import InvalidInput

    with pytest.raises(InvalidInput) as refused:
        _spec(dev_entries, **fields)
    assert refused.value.field == field, refused.value
