"""Apps written against ElevenLabs work unchanged: its official SDK against a real ``soundry serve``.

The server has an API key (sent by the SDK as ``xi-api-key``); sound effects come from the dev preset's
``dev-audiogen-tiny``, speech from the bundled Piper voice and ``dev-vits-tiny``.
"""

from __future__ import annotations

import base64
import io
from collections.abc import Iterator
from pathlib import Path

import av
import numpy as np
import pytest
from elevenlabs import ElevenLabs, VoiceSettings
from elevenlabs.core.api_error import ApiError

from gen_server.audio.encode import decode
from gen_server.auth import KeyStore, keys_path
from tests.helpers import running_server

pytestmark = pytest.mark.e2e

SPEECH = "Dr. Smith arrived at 3 p.m. Then he left."


@pytest.fixture(scope="module")
def keyed_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str]]:
    """(base URL, API key) of a real server that requires keys."""
    data_dir: Path = tmp_path_factory.mktemp("soundry-elevenlabs")
    secret, _ = KeyStore(keys_path(data_dir)).create("elevenlabs-app")
    with running_server(data_dir) as url:
        yield url, secret


@pytest.fixture(scope="module")
def client(keyed_server: tuple[str, str]) -> ElevenLabs:
    url, secret = keyed_server
    return ElevenLabs(base_url=url, api_key=secret, timeout=240)


def pyav_decode(data: bytes, **open_options: str) -> tuple[np.ndarray, int]:
    """Decode every frame with PyAV (raising on damage): ``([channels, frames], rate)``."""
    fmt = open_options.pop("format", None)
    with av.open(io.BytesIO(data), format=fmt, options=open_options) as container:
        stream = container.streams.audio[0]
        frames = [f.to_ndarray().reshape(f.layout.nb_channels, -1) for f in container.decode(stream)]
        rate = stream.codec_context.sample_rate
    return np.concatenate(frames, axis=1), rate


@pytest.mark.parametrize(
    ("output_format", "duration_s", "rate"),
    [
        ("mp3_44100_128", 2.0, 44100),
        ("pcm_24000", 1.5, 24000),
        ("opus_48000_64", 2.0, 48000),
        ("mp3_22050_32", 1.0, 22050),
        ("ulaw_8000", 1.0, 8000),
        ("wav_16000", 1.5, 16000),
    ],
)
def test_sound_effects_in_every_kind_of_format(
    client: ElevenLabs, output_format: str, duration_s: float, rate: int
) -> None:
    data = b"".join(
        client.text_to_sound_effects.convert(
            text="glass shattering on concrete",
            duration_seconds=duration_s,
            prompt_influence=0.5,
            output_format=output_format,  # type: ignore[arg-type]
        )
    )
    codec = output_format.split("_")[0]
    if codec == "pcm":
        assert len(data) % 2 == 0
        samples = np.frombuffer(data, "<i2")
        got_s = samples.size / rate
    elif codec == "ulaw":
        samples_2d, got_rate = pyav_decode(data, format="mulaw", sample_rate=str(rate), ch_layout="mono")
        assert got_rate == rate and samples_2d.shape[1] == len(data)
        samples = samples_2d[0]
        got_s = len(data) / rate
    else:
        samples_2d, got_rate = pyav_decode(data)
        assert got_rate == rate
        assert samples_2d.shape[0] == 1  # mono, as ElevenLabs answers
        audio = decode(data)  # Soundry's strict decoder: refuses a truncated file
        assert audio.sample_rate == rate
        samples = samples_2d[0]
        got_s = samples_2d.shape[1] / rate
    assert abs(got_s - duration_s) <= 0.05 * duration_s, (output_format, got_s)
    assert float(np.abs(samples.astype(np.float64)).max()) > 0


def test_opus_bitrate_is_the_one_asked_for(client: ElevenLabs) -> None:
    sizes = {}
    for kbps in (32, 128):
        data = b"".join(
            client.text_to_sound_effects.convert(
                text="rain on a tin roof",
                duration_seconds=3.0,
                output_format=f"opus_48000_{kbps}",  # type: ignore[arg-type]
            )
        )
        sizes[kbps] = len(data)
    assert sizes[128] > 2 * sizes[32], sizes


def test_a_looping_sound_effect_repeats_without_a_seam(client: ElevenLabs) -> None:
    from gen_server.audio import Audio
    from gen_server.audio.analysis import seam

    data = b"".join(
        client.text_to_sound_effects.convert(
            text="rain on a tin roof",
            duration_seconds=2.0,
            loop=True,
            output_format="wav_16000",  # type: ignore[arg-type]
        )
    )
    samples, rate = pyav_decode(data)
    assert rate == 16000 and samples.shape[1] == 32000  # exactly the asked length
    loop = Audio(np.ascontiguousarray(samples, dtype=np.float32) / 32768.0, rate)
    measured = seam(Audio(np.tile(loop.samples, (1, 4)), rate))
    # no click: the step at the wrap is no larger than the clip's typical step between samples; its
    # spectral change is within the spread of the clip's own frame-to-frame changes (the random-weight
    # model's noise-like output puts interior flux at ratio 1 +- ~0.1, unseeded: a CI run met 1.06)
    assert measured.jump_ratio <= 1.0 and measured.flux_ratio <= 1.25, measured


def test_speech_with_a_premade_voice_id(client: ElevenLabs) -> None:
    data = b"".join(
        client.text_to_speech.convert(
            voice_id="JBFqnCBsd6RMkjVDRZzb",  # ElevenLabs' "George": the default voice here
            text=SPEECH,
            model_id="eleven_multilingual_v2",
            output_format="mp3_44100_128",
        )
    )
    samples, rate = pyav_decode(data)
    assert rate == 44100 and samples.shape[0] == 1
    assert decode(data).duration_s > 1.5
    assert float(np.abs(samples).max()) > 0.01


def test_speech_with_timestamps_aligns_every_character(client: ElevenLabs) -> None:
    """The SDK's ``convert_with_timestamps``: base64 audio plus when each character is spoken."""
    response = client.text_to_speech.convert_with_timestamps(
        voice_id="piper-en_US-joe-medium", text=SPEECH, output_format="mp3_44100_128"
    )
    data = base64.b64decode(response.audio_base_64)
    duration_s = decode(data).duration_s
    alignment = response.alignment
    assert alignment is not None and "".join(alignment.characters) == SPEECH
    starts, ends = alignment.character_start_times_seconds, alignment.character_end_times_seconds
    assert starts == sorted(starts) and all(a <= b for a, b in zip(starts, ends, strict=True))
    assert 0 <= starts[0] < 0.5 and duration_s - 1.0 < ends[-1] <= duration_s + 0.05
    spoken = response.normalized_alignment
    assert spoken is not None and "three" in "".join(spoken.characters)  # "3 p.m." as the voice read it


def test_speech_with_a_catalog_speaker_as_raw_pcm(client: ElevenLabs) -> None:
    voice_ids = {v.voice_id for v in client.voices.get_all().voices}
    assert "dev-vits-tiny:alice" in voice_ids
    data = b"".join(
        client.text_to_speech.convert(
            voice_id="dev-vits-tiny:alice",
            text="Hello there.",
            voice_settings=VoiceSettings(stability=0.5, speed=1.2),
            seed=4_000_000_000,
            output_format="pcm_16000",
        )
    )
    assert len(data) % 2 == 0 and len(data) / 2 / 16000 > 0.2


@pytest.mark.parametrize(
    ("output_format", "open_options", "rate"),
    [
        ("mp3_44100_128", {}, 44100),
        ("opus_48000_64", {}, 48000),
        ("ulaw_8000", {"format": "mulaw", "sample_rate": "8000", "ch_layout": "mono"}, 8000),
    ],
)
def test_speech_streams_one_whole_file_as_long_as_the_whole_route(
    client: ElevenLabs, output_format: str, open_options: dict[str, str], rate: int
) -> None:
    """``/stream`` (one job, one encoder fed sentence by sentence) against the whole-file route."""
    text = "Dr. Smith arrived at 3 p.m. in the U.S. office. Then he left. It was late."
    args = {"voice_id": "piper-en_US-joe-medium", "text": text, "seed": 11, "output_format": output_format}
    chunks = [c for c in client.text_to_speech.stream(**args) if c]  # type: ignore[arg-type]
    whole = b"".join(client.text_to_speech.convert(**args))  # type: ignore[arg-type]
    streamed, got_rate = pyav_decode(b"".join(chunks), **open_options)
    stored, _ = pyav_decode(whole, **open_options)
    assert got_rate == rate and streamed.shape[0] == 1
    assert abs(streamed.shape[1] - stored.shape[1]) <= 0.05 * stored.shape[1]


def test_a_wrong_key_is_refused(keyed_server: tuple[str, str]) -> None:
    url, _ = keyed_server
    wrong = ElevenLabs(base_url=url, api_key="sk-soundry-not-a-key", timeout=60)
    with pytest.raises(ApiError) as e:
        b"".join(wrong.text_to_sound_effects.convert(text="a door creaks", duration_seconds=1.0))
    assert e.value.status_code == 401
    assert isinstance(e.value.body, dict) and e.value.body["detail"]["status"] == "unauthorized"


def test_a_bad_field_is_422_naming_it(client: ElevenLabs) -> None:
    with pytest.raises(ApiError) as e:
        b"".join(client.text_to_sound_effects.convert(text="a door creaks", duration_seconds=31.0))
    assert e.value.status_code == 422
    assert isinstance(e.value.body, dict)
    assert e.value.body["detail"]["message"].startswith("duration_seconds:"), e.value.body
