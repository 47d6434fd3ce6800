"""Stable Audio in the contract: its catalog entries and licence, the commercial-only catalog, and the
diffusion controls a job spec takes or refuses (no server, no torch)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from gen_server.contract.catalog import STABILITY_CONDITION, STABLE_AUDIO_ID, build_catalog
from gen_server.contract.spec import JobRequest, JobSpec, build_spec
from gen_server.errors import InvalidInput
from gen_server.settings import Settings


def _spec(settings: Settings, **fields: Any) -> JobSpec:
    body = {"kind": "sfx", "prompt": "glass breaks", "duration_s": 4.0, **fields}
    return build_spec(JobRequest.model_validate(body), build_catalog(settings), job_id="j1")


def test_entries_carry_the_community_licence_and_its_condition(tmp_path: Path) -> None:
    catalog = build_catalog(Settings(data_dir=tmp_path, dev_models=True))
    real, dev = catalog.get(STABLE_AUDIO_ID), catalog.get("dev-stable-audio-tiny")
    assert real.family == dev.family == "stable_audio"
    assert real.licence == "Stability AI Community License" and real.commercial_use == "conditional"
    assert real.commercial_condition == STABILITY_CONDITION
    assert "USD 1M" in STABILITY_CONDITION and "Enterprise" in STABILITY_CONDITION
    assert "commercial use allowed if: free for research" in real.licence_terms
    assert (real.sample_rate, real.channels, real.max_duration_s) == (44100, 2, 47.0)
    assert real.makes("music") and real.makes("sfx") and not real.makes("speech")
    assert dev.dev and dev.source == "tiny:stable-audio" and dev.commercial_use == "allowed"
    assert "stable-audio-open-small" not in catalog  # not loadable by StableAudioPipeline: see catalog.py


def test_commercial_only_catalog_keeps_stable_audio_and_makes_it_the_sfx_default(tmp_path: Path) -> None:
    """SOUNDRY_LICENCES=commercial keeps conditional models ("commercial use allowed if ..."): without the
    dev preset, Stable Audio is then the only sfx model, so an sfx job naming none gets it."""
    catalog = build_catalog(Settings(data_dir=tmp_path, licences="commercial"))
    assert STABLE_AUDIO_ID in catalog and "audiogen-medium" not in catalog and "musicgen-small" not in catalog
    assert catalog.default_for("sfx").id == STABLE_AUDIO_ID
    assert catalog.default_for("music").id == STABLE_AUDIO_ID
    spec = _spec(Settings(data_dir=tmp_path, licences="commercial"))
    assert spec.model == STABLE_AUDIO_ID and spec.queue == "sfx"
    assert spec.licence and "Stability AI Community License" in spec.licence
    with pytest.raises(InvalidInput) as err:
        _spec(Settings(data_dir=tmp_path, licences="commercial"), model="audiogen-medium")
    assert err.value.field == "model" and "CC-BY-NC-4.0" in err.value.message


def test_diffusion_defaults_and_controls_reach_the_spec(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path, dev_models=True)
    spec = _spec(settings, model=STABLE_AUDIO_ID)
    assert spec.sampling.steps == 100 and spec.sampling.cfg_coef == 7.0 and spec.kind == "sfx"
    sampling = {"steps": 30, "cfg_coef": 4.5, "negative_prompt": "  low quality "}
    spec = _spec(settings, kind="music", model="dev-stable-audio-tiny", sampling=sampling, duration_s=11.0)
    assert (spec.sampling.steps, spec.sampling.cfg_coef, spec.sampling.negative_prompt) == (
        30,
        4.5,
        "low quality",
    )
    spec = _spec(settings, model="dev-stable-audio-tiny", init_audio_upload="u1", init_noise_level=2.5)
    assert (spec.init_audio_upload, spec.init_noise_level) == ("u1", 2.5)
    musicgen = _spec(settings, kind="music", model="dev-musicgen-tiny")
    assert musicgen.sampling.steps is None and musicgen.sampling.cfg_coef == 3.0


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"model": "dev-audiogen-tiny", "sampling": {"steps": 10}}, "sampling.steps"),
        ({"model": "dev-audiogen-tiny", "sampling": {"negative_prompt": "wind"}}, "sampling.negative_prompt"),
        ({"model": "dev-audiogen-tiny", "init_audio_upload": "u1"}, "init_audio_upload"),
        ({"model": "dev-stable-audio-tiny", "init_noise_level": 3.0}, "init_noise_level"),
        ({"model": "dev-stable-audio-tiny", "sampling": {"top_k": 50}}, "sampling.top_k"),
        ({"model": "dev-stable-audio-tiny", "sampling": {"temperature": 0.7}}, "sampling.temperature"),
        ({"model": "dev-stable-audio-tiny", "duration_s": 12.0}, "duration_s"),
        ({"model": STABLE_AUDIO_ID, "duration_s": 48.0}, "duration_s"),
        ({"model": STABLE_AUDIO_ID, "continuation_upload": "u1"}, "continuation_upload"),
        ({"kind": "speech", "text": "hi", "model": STABLE_AUDIO_ID}, "model"),
    ],
)
def test_controls_a_model_does_not_take_are_refused_naming_the_field(
    tmp_path: Path, fields: dict[str, Any], field: str
) -> None:
    with pytest.raises(InvalidInput) as err:
        _spec(Settings(data_dir=tmp_path, dev_models=True), **fields)
    assert err.value.field == field, err.value.message


@pytest.mark.parametrize(
    "body",
    [
        {"sampling": {"steps": 0}},
        {"sampling": {"steps": 501}},
        {"init_noise_level": 0.3},
        {"init_noise_level": 600},
    ],
)
def test_out_of_range_diffusion_controls_fail_validation(body: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        JobRequest.model_validate({"kind": "sfx", "prompt": "x", **body})
