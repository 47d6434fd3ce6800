"""MusicGen and AudioGen stream while the LM runs: ``GenRequest.on_audio`` gets the clip in pieces.

Tiny random checkpoints through the real loaders (see conftest.py), plus the chunked decoder on a
real-size random-weight EnCodec. The pieces are decoded chunk by chunk from the same tokens as the
returned clip, with context on both sides, so joined they match the one-shot decode closely (the
relative error is computed in dB; -40 dB is the bar, the measured values are in the docstrings).
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest

from gen_server.audio import Audio
from gen_server.audio.postprocess import loudness_lufs, stream_chain, true_peak_dbtp
from gen_server.contract.catalog import ModelEntry
from gen_server.contract.spec import PostProcess
from gen_server.settings import Settings
from workers.backends._audiocraft import AudiocraftBackend
from workers.backends._audiocraft_stream import ChunkedDecoder
from workers.backends.base import AudioSink, GenRequest
from workers.backends.musicgen import MusicGenBackend

MAX_ERROR_DB = -40.0
"""Stream vs one-shot decode of the same tokens, relative error."""
TINY_MAX_ERROR_DB = -70.0
"""The same bar on the tiny codecs, tightened: a random-weight codec's output hardly depends on its
tokens (mostly a token-independent offset), so the clips of two different seeds are only about -42 dB
apart there and -40 dB would not catch a wrong token. The streams measure -142..-146 dB."""


class Sink:
    """Collects the pieces handed to ``on_audio`` and the progress reached at each one."""

    def __init__(self) -> None:
        self.pieces: list[Audio] = []
        self.progress_at: list[float] = []
        self.progress: list[float] = []

    def __call__(self, audio: Audio) -> None:
        self.pieces.append(audio)
        self.progress_at.append(self.progress[-1] if self.progress else 0.0)

    def on_progress(self, fraction: float) -> None:
        self.progress.append(fraction)

    def joined(self) -> np.ndarray:
        return np.concatenate([p.samples for p in self.pieces], axis=1)


def rms(x: np.ndarray) -> float:
    return math.sqrt(float(np.mean(np.square(x.astype(np.float64)))))


def error_db(stream: np.ndarray, reference: np.ndarray) -> float:
    """rms(stream - reference) / rms(reference), in dB (the relative error of the stream)."""
    diff = stream.astype(np.float64) - reference.astype(np.float64)
    return 20.0 * math.log10(max(rms(diff), 1e-12) / rms(reference))


def request(
    sink: AudioSink | None = None, *, seed: int = 3, duration_s: float = 4.0, **kw: Any
) -> GenRequest:
    params: dict[str, Any] = {"top_k": 50, **kw}
    return GenRequest("warm lofi piano", seed=seed, duration_s=duration_s, on_audio=sink, **params)


def streamed(backend: AudiocraftBackend, **kw: Any) -> tuple[Audio, Sink]:
    """The clip made while streaming, checked against the same request made without a sink."""
    sink = Sink()
    clip = backend.generate(request(sink, **kw), progress=sink.on_progress)
    alone = backend.generate(request(None, **kw))
    np.testing.assert_array_equal(clip.samples, alone.samples)  # streaming leaves the clip alone
    assert sink.pieces, "nothing was streamed"
    for piece in sink.pieces:
        assert piece.sample_rate == clip.sample_rate
        assert piece.channels == clip.channels
        assert piece.samples.dtype == np.float32
    joined = sink.joined()
    assert joined.shape == clip.samples.shape
    assert error_db(joined, clip.samples) < TINY_MAX_ERROR_DB
    return clip, sink


@pytest.fixture(scope="module")
def stereo(worker_settings: Settings, dev_entries: dict[str, ModelEntry]) -> Iterator[MusicGenBackend]:
    backend = MusicGenBackend(dev_entries["dev-musicgen-stereo-tiny"], worker_settings)
    backend.load()
    yield backend
    backend.unload()


@pytest.fixture(scope="module")
def long_form(worker_settings: Settings, dev_entries: dict[str, ModelEntry]) -> Iterator[MusicGenBackend]:
    """Tiny MusicGen with a 2 s window: longer clips take several windows (1.2 s stride)."""
    backend = MusicGenBackend(
        dev_entries["dev-musicgen-tiny"].model_copy(update={"window_s": 2.0}), worker_settings
    )
    yield backend
    backend.unload()


@pytest.mark.parametrize("model", ["musicgen", "audiogen", "stereo"])
def test_pieces_join_to_the_returned_clip(model: str, request: pytest.FixtureRequest) -> None:
    """4 s clips: four 1 s pieces, the first well before the LM is done; joined, the returned clip.

    Measured (stream vs one-shot decode of the same tokens): MusicGen -146 dB, AudioGen -142 dB,
    stereo MusicGen -146 dB.
    """
    backend: AudiocraftBackend = request.getfixturevalue(model)
    clip, sink = streamed(backend, duration_s=4.0)
    assert len(sink.pieces) >= 4
    assert sink.progress_at[0] < 0.5  # the first second arrives while most of the clip is still to come
    assert sink.progress[-1] == 1.0 and sink.progress_at[-1] < 1.0  # every piece before the call returned
    assert sink.progress_at == sorted(sink.progress_at)
    if model == "stereo":
        assert clip.channels == 2
        assert not np.array_equal(sink.joined()[0], sink.joined()[1])


def test_odd_durations_end_exactly(musicgen: MusicGenBackend) -> None:
    """1.37 s is 68.5 token frames: the stream is cut to the returned clip's exact length."""
    clip, sink = streamed(musicgen, duration_s=1.37)
    assert clip.frames == round(1.37 * 32000) == sum(p.frames for p in sink.pieces)


def test_batched_rows_each_stream_their_own_clip(musicgen: MusicGenBackend) -> None:
    """Each row streams to its own sink; a row without one costs nothing; clips stay solo-identical."""
    sinks = [Sink(), None, Sink()]
    requests = [
        request(sinks[0], seed=11, duration_s=3.0),
        GenRequest("rock drums", seed=99, duration_s=3.0, top_k=50),
        GenRequest("rock drums", seed=98, duration_s=3.0, top_k=50, on_audio=sinks[2]),
    ]
    clips = musicgen.generate_batch(requests)
    for req, clip, sink in zip(requests, clips, sinks, strict=True):
        alone = musicgen.generate(GenRequest(req.prompt, seed=req.seed, duration_s=3.0, top_k=50))
        np.testing.assert_array_equal(clip.samples, alone.samples)
        if sink is not None:
            assert len(sink.pieces) >= 3
            assert error_db(sink.joined(), clip.samples) < TINY_MAX_ERROR_DB
    assert sinks[0] is not None and sinks[2] is not None
    assert error_db(sinks[0].joined(), clips[2].samples) > -50.0  # not each other's audio


def test_long_form_streams_across_windows(long_form: MusicGenBackend) -> None:
    """5 s with a 2 s window is four LM passes; the stream goes on through them, each frame once."""
    _, sink = streamed(long_form, duration_s=5.0)
    assert len(sink.pieces) >= 5
    assert sink.progress_at[0] < 0.3  # the first window's audio, long before the last window
    assert sum(1 for p in sink.progress_at if p < 0.75) >= 3  # pieces keep coming window after window


def test_continuation_streams_the_prompt_first(musicgen: MusicGenBackend, long_form: MusicGenBackend) -> None:
    """The returned clip starts with the (re-encoded) prompt, and so does the stream, at once."""
    t = np.arange(32000) / 32000
    prompt = Audio((0.5 * np.sin(2 * np.pi * 220 * t))[None].astype(np.float32), 32000)
    _, sink = streamed(musicgen, duration_s=2.0, continuation=prompt)
    assert sink.progress_at[0] < 0.3  # the prompt's second needs only the right context to be made
    _, sink = streamed(long_form, duration_s=4.0, continuation=prompt)  # continuation + long form
    assert len(sink.pieces) >= 4


def test_melody_streams(musicgen_melody: MusicGenBackend) -> None:
    t = np.arange(2 * 44100) / 44100
    melody = Audio((0.5 * np.sin(2 * np.pi * 440 * t))[None].astype(np.float32), 44100)
    _, sink = streamed(musicgen_melody, duration_s=2.5, melody=melody)
    assert len(sink.pieces) >= 3


def test_the_tap_is_only_there_while_streaming(musicgen: MusicGenBackend) -> None:
    """No sink: the sampler is not tapped. A cancelled job: no piece after the error, LM restored.

    (``generate`` itself is shadowed by the static decoder during every generation.)
    """
    lm = musicgen._require_model().lm
    wrapped: list[bool] = []
    musicgen.generate(
        request(None, duration_s=1.0), progress=lambda f: wrapped.append("_sample_next_token" in vars(lm))
    )
    assert wrapped and not any(wrapped)

    class Cancelled(Exception):
        pass

    sink = Sink()

    def cancel_midway(fraction: float) -> None:
        wrapped.append("_sample_next_token" in vars(lm))
        if fraction > 0.6:
            raise Cancelled

    with pytest.raises(Cancelled):
        musicgen.generate(request(sink, duration_s=3.0), progress=cancel_midway)
    assert wrapped[-1] and 1 <= len(sink.pieces) < 3
    assert "generate" not in vars(lm) and "_sample_next_token" not in vars(lm)


def test_a_failing_sink_stops_the_stream_not_the_job(musicgen: MusicGenBackend) -> None:
    """Sinks must not raise (``AudioSink``); if one does, streaming stops and the clip is still made."""
    calls: list[int] = []

    def broken(audio: Audio) -> None:
        calls.append(audio.frames)
        raise RuntimeError("sink failed")

    clip = musicgen.generate(request(broken, duration_s=3.0))
    np.testing.assert_array_equal(clip.samples, musicgen.generate(request(None, duration_s=3.0)).samples)
    assert len(calls) == 1


def test_chunked_decode_matches_one_shot_on_a_real_size_encodec() -> None:
    """musicgen-small's 32 kHz EnCodec (real size, random weights), 4 s of random codes fed a few
    frames at a time: the stitched chunks vs one decode of all the codes.

    Measured with the default context (25 frames left, 5 right): -132 dB relative to the clip, -103 dB
    relative to its token-dependent part (the clip minus the decode of other codes; a random codec's
    output is mostly a token-independent offset, other codes decode only -29 dB away). With 5/5
    frames: -85 dB and -57 dB. (AudioGen's 16 kHz EnCodec: -128 dB and -104 dB.)
    """
    import torch
    from audiocraft.models import builders
    from omegaconf import OmegaConf

    from benchmarks.realsize import audiocraft_config

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        codec = builders.get_compression_model(OmegaConf.create(audiocraft_config("musicgen"))).eval()
        codes = torch.randint(0, 2048, (1, 4, 4 * 50 + 7))
    frames = codes.shape[-1]
    samples = frames * 640 - 123  # a clip that ends inside its last frame
    sink = Sink()
    decoder = ChunkedDecoder(codec, [sink], frames, samples)
    with torch.inference_mode():
        reference = codec.decode(codes, None)[0].numpy()[:, :samples]
        other = codec.decode(torch.roll(codes, 1, dims=-1), None)[0].numpy()[:, :samples]
        for start in range(0, frames, 3):
            decoder.extend(codes[..., start : start + 3])
        decoder.finish()
    assert len(sink.pieces) == 5
    joined = sink.joined()
    assert joined.shape == reference.shape
    assert error_db(joined, reference) < MAX_ERROR_DB
    token_part = reference.astype(np.float64) - other
    assert 20.0 * math.log10(rms(joined - reference.astype(np.float64)) / rms(token_part)) < MAX_ERROR_DB


def test_stream_chain_keeps_the_level_of_music_and_normalises_speech() -> None:
    """Music/sfx chunks keep the model's level (a quiet second stays quiet) under the peak ceiling."""
    sr = 32000
    t = np.arange(sr) / sr
    quiet = Audio((0.05 * np.sin(2 * np.pi * 220 * t))[None].astype(np.float32), sr)
    loud = Audio((0.99 * np.sin(2 * np.pi * 220 * t))[None].astype(np.float32), sr)
    post = PostProcess()
    for kind in ("music", "sfx"):
        np.testing.assert_allclose(stream_chain(quiet, post, kind).samples, quiet.samples)
        assert true_peak_dbtp(stream_chain(loud, post, kind)) <= post.true_peak_dbtp + 1e-6
    assert abs(loudness_lufs(stream_chain(quiet, post, "speech")) - (-16.0)) < 0.5
