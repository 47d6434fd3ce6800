"""Job validation for voice cloning models (XTTS-v2 and its tiny dev twin): languages, 1-3 references."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from gen_server.contract.catalog import XTTS_LANGUAGES, Catalog, build_catalog
from gen_server.contract.spec import JobRequest, JobSpec, build_spec
from gen_server.errors import InvalidInput
from gen_server.settings import Settings

CLONING_MODELS = ("xtts-v2", "dev-xtts-tiny")


@pytest.fixture(scope="module")
def catalog() -> Catalog:
    return build_catalog(Settings(dev_models=True))


def spec(catalog: Catalog, **body: Any) -> JobSpec:
    request = JobRequest(**{"kind": "speech", "text": "Hello there.", **body})
    return build_spec(request, catalog, job_id="j1")


def refused(catalog: Catalog, **body: Any) -> InvalidInput:
    with pytest.raises(InvalidInput) as err:
        spec(catalog, **body)
    return err.value


def test_cloning_models_offer_the_xtts_languages(catalog: Catalog) -> None:
    for model in CLONING_MODELS:
        entry = catalog.get(model)
        assert entry.voice_cloning and entry.kind == "speech" and entry.sample_rate == 24000
        assert entry.languages == XTTS_LANGUAGES and not entry.speakers


@pytest.mark.parametrize("model", CLONING_MODELS)
def test_every_xtts_language_is_accepted_and_en_is_the_default(catalog: Catalog, model: str) -> None:
    for language in XTTS_LANGUAGES:
        assert spec(catalog, model=model, language=language, reference_uploads=["r1"]).language == language
    assert spec(catalog, model=model, reference_uploads=["r1"]).language == "en"


@pytest.mark.parametrize("language", ["xx", "EN", "zh", "en-US", "", "de "])
@pytest.mark.parametrize("model", CLONING_MODELS)
def test_other_languages_are_refused(catalog: Catalog, model: str, language: str) -> None:
    err = refused(catalog, model=model, language=language, reference_uploads=["r1"])
    assert err.field == "language"
    assert "zh-cn" in err.message  # names the languages on offer


@pytest.mark.parametrize("model", CLONING_MODELS)
def test_one_to_three_references(catalog: Catalog, model: str) -> None:
    for refs in (["a"], ["a", "b"], ["a", "b", "c"]):
        assert spec(catalog, model=model, reference_uploads=refs).reference_uploads == tuple(refs)
    err = refused(catalog, model=model)
    assert err.field == "reference_uploads" and "1-3" in err.message
    with pytest.raises(ValidationError) as too_many:
        JobRequest(kind="speech", model=model, text="Hi.", reference_uploads=["a", "b", "c", "d"])
    assert too_many.value.errors()[0]["loc"] == ("reference_uploads",)


@pytest.mark.parametrize("model", ["dev-vits-tiny", "vits-vctk"])
def test_references_on_a_model_that_does_not_clone(catalog: Catalog, model: str) -> None:
    err = refused(catalog, model=model, reference_uploads=["r1"])
    assert err.field == "reference_uploads" and "does not clone" in err.message


def test_cloning_models_take_no_named_voice(catalog: Catalog) -> None:
    err = refused(catalog, model="xtts-v2", voice="alice", reference_uploads=["r1"])
    assert err.field == "voice"
