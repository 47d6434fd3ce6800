"""Kokoro in the API: voice blends, the tts-1-hd mapping and the licence on the spec (no server)."""

from __future__ import annotations

from pathlib import Path

import pytest

from gen_server.contract.catalog import KOKORO_ID, build_catalog, kokoro_installed
from gen_server.contract.spec import JobRequest, JobSpec, build_spec
from gen_server.contract.voice_mix import parse_voice_mix
from gen_server.errors import InvalidInput
from gen_server.routes.openai_compat import KOKORO_HD_VOICES, OPENAI_VOICES, voice_map
from gen_server.settings import Settings


def test_blends_are_normalised() -> None:
    assert parse_voice_mix("af_bella(2)+af_sky(1)") == (("af_bella", 2 / 3), ("af_sky", 1 / 3))
    assert parse_voice_mix(" af_bella + af_sky ") == (("af_bella", 0.5), ("af_sky", 0.5))
    assert parse_voice_mix("af_bella(0.5)+af_sky(0.5)+af_bella(1)") == (("af_bella", 0.75), ("af_sky", 0.25))
    assert parse_voice_mix("af_bella") == (("af_bella", 1.0),)


@pytest.mark.parametrize(
    "voice", ["af_bella(0)", "af_bella(-1)", "a(2", "+af_sky", "a(x)", "+".join("a" * 9)]
)
def test_malformed_blends_name_voice(voice: str) -> None:
    with pytest.raises(InvalidInput) as err:
        parse_voice_mix(voice)
    assert err.value.field == "voice"


def _spec(settings: Settings, **fields: object) -> JobSpec:
    request = JobRequest.model_validate({"kind": "speech", "text": "Hello.", **fields})
    return build_spec(request, build_catalog(settings), job_id="j1")


def test_the_api_checks_each_blended_voice_and_records_the_licence(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path, dev_models=True)
    spec = _spec(settings, model="dev-kokoro-tiny", voice="af_heart(2)+am_adam(1)")
    assert spec.voice == "af_heart(2)+am_adam(1)"
    assert (_spec(settings, model=KOKORO_ID).licence or "").startswith("Apache-2.0")
    for voice, named in (("af_heart(2)+af_nobody", "af_nobody"), ("af_nobody", "af_nobody")):
        with pytest.raises(InvalidInput) as err:
            _spec(settings, model="dev-kokoro-tiny", voice=voice)
        assert err.value.field == "voice" and f"unknown voice '{named}'" in err.value.message
    with pytest.raises(InvalidInput) as err:  # models without blending take plain speaker names only
        _spec(settings, model="dev-vits-tiny", voice="alice(1)+bob(1)")
    assert err.value.field == "voice"


def test_tts_1_hd_speaks_with_kokoro_once_installed(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path)
    catalog = build_catalog(settings)
    assert not kokoro_installed(settings)
    assert voice_map(settings, catalog, hd=True)["alloy"].model == "piper-en_US-joe-medium"
    folder = settings.resolved_models_dir / KOKORO_ID
    (folder / "voices").mkdir(parents=True)
    for name in ("config.json", "kokoro-v1_0.pth", "voices/af_alloy.pt"):
        (folder / name).write_bytes(b"")
    assert kokoro_installed(settings)
    hd = voice_map(settings, catalog, hd=True)
    assert set(hd) == set(OPENAI_VOICES) == set(KOKORO_HD_VOICES)
    assert (hd["alloy"].model, hd["alloy"].speaker) == (KOKORO_ID, "af_alloy")
    assert set(KOKORO_HD_VOICES.values()) <= set(catalog.get(KOKORO_ID).speakers)
    assert voice_map(settings, catalog)["alloy"].model == "piper-en_US-joe-medium"  # tts-1 unchanged
