"""Batch files: parsing (YAML, JSONL, CSV), line-numbered validation, variations, ids and naming."""

from __future__ import annotations

from pathlib import Path

import pytest

from gen_server.batch.errors import BatchError, BatchInvalid
from gen_server.batch.manifest import read_manifest
from gen_server.batch.parse import load_batch, parse_batch_text
from gen_server.batch.plan import (
    BatchPlan,
    derived_seed,
    plan_batch,
    validate_batch_bytes,
    validate_batch_file,
)
from gen_server.batch.template import DEFAULT_TEMPLATE, check_template, render_output, resolve_output
from gen_server.contract.catalog import Catalog, build_catalog
from gen_server.errors import InvalidInput
from gen_server.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
PROMPTS = ROOT / "prompts"


@pytest.fixture(scope="module")
def catalog() -> Catalog:
    return build_catalog(Settings(dev_models=True))


def plan_of(text: str, catalog: Catalog, name: str = "b.yaml") -> BatchPlan:
    return validate_batch_bytes(text.encode(), name, catalog)


def errors_of(text: str, catalog: Catalog, name: str = "b.yaml") -> list[BatchError]:
    with pytest.raises(BatchInvalid) as info:
        validate_batch_bytes(text.encode(), name, catalog)
    return info.value.errors


# -- the example files -----------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["game_sfx_pack.yaml", "podcast_cues.csv", "narration.jsonl"])
def test_example_files_validate_clean(name: str, catalog: Catalog) -> None:
    plan = validate_batch_file(PROMPTS / name, catalog)
    assert plan.jobs
    assert len({j.file for j in plan.jobs}) == len(plan.jobs)
    assert len({j.item_id for j in plan.jobs}) == len(plan.jobs)


def test_example_files_validate_against_the_catalog_without_dev_models() -> None:
    real = build_catalog(Settings(dev_models=False))
    assert validate_batch_file(PROMPTS / "game_sfx_pack.yaml", real).jobs[0].model == "audiogen-medium"
    assert validate_batch_file(PROMPTS / "podcast_cues.csv", real).jobs[0].model == "musicgen-small"
    narration = validate_batch_file(PROMPTS / "narration.jsonl", real)
    assert {j.model for j in narration.jobs} == {"piper-en_US-joe-medium"}


def test_example_shapes(catalog: Catalog) -> None:
    sfx = validate_batch_file(PROMPTS / "game_sfx_pack.yaml", catalog)
    assert len(sfx.jobs) == 29
    assert {j.kind for j in sfx.jobs} == {"sfx"}
    clicks = [j for j in sfx.jobs if j.name == "ui_click"]
    assert [j.seed for j in clicks] == [101, 102, 103, 104]
    assert clicks[0].request["post"] == {"trim_silence": False, "fade_out_s": 0.05, "target_lufs": -18.0}
    cues = validate_batch_file(PROMPTS / "podcast_cues.csv", catalog)
    assert {j.kind for j in cues.jobs} == {"music"}
    stinger = [j for j in cues.jobs if j.name == "segment_stinger"]
    assert [j.seed for j in stinger] == [7, 8, 9]
    assert stinger[0].request["post"]["fade_out_s"] == 0.2
    assert stinger[0].file == "segment_stinger/segment_stinger_1.wav"
    ad = [j for j in cues.jobs if j.name == "ad_break"]
    assert ad[0].file.endswith(".mp3") and ad[0].request["format"] == "mp3"
    lines = validate_batch_file(PROMPTS / "narration.jsonl", catalog)
    assert lines.name == "the-lighthouse"
    assert [j.file for j in lines.jobs[:2]] == ["01_title.wav", "02_line_01.wav"]
    assert lines.jobs[0].line == 6  # after four comment lines and the header line


def test_invalid_example_reports_every_planted_error_with_its_line(catalog: Catalog) -> None:
    with pytest.raises(BatchInvalid) as info:
        validate_batch_file(PROMPTS / "invalid_example.yaml", catalog)
    got = {(e.line, e.field) for e in info.value.errors}
    assert got == {
        (14, "promt"),
        (17, "duration_s"),
        (20, "model"),
        (23, "format"),
        (24, "name"),
        (29, "seeds"),
        (32, "text"),
    }
    by_field = {e.field: e for e in info.value.errors}
    assert "did you mean 'prompt'" in by_field["promt"].message
    assert "audiogen-gigantic" in by_field["model"].message
    assert all(e.file.endswith("invalid_example.yaml") and e.column == 5 for e in info.value.errors)
    assert str(by_field["duration_s"]).startswith(f"{PROMPTS / 'invalid_example.yaml'}:17:5: duration_s: ")


# -- YAML ------------------------------------------------------------------------------------------


def test_yaml_syntax_error_has_line_and_column(catalog: Catalog) -> None:
    errs = errors_of("items:\n  - prompt: a\n    kind: [sfx\n  - prompt: b\n", catalog)
    assert len(errs) == 1
    assert errs[0].line is not None and errs[0].line >= 3
    assert errs[0].column is not None
    assert "YAML syntax error" in errs[0].message


def test_yaml_unknown_top_level_and_default_fields(catalog: Catalog) -> None:
    text = "defaults:\n  kind: sfx\n  promt: x\nitem:\n  - prompt: a\nitems:\n  - prompt: b\n"
    errs = errors_of(text, catalog)
    assert (3, 3, "defaults.promt") in {(e.line, e.column, e.field) for e in errs}
    assert any(e.line == 4 and e.field == "item" and "did you mean 'items'" in e.message for e in errs)


def test_yaml_duplicate_key_is_an_error(catalog: Catalog) -> None:
    errs = errors_of("items:\n  - kind: sfx\n    prompt: a\n    prompt: b\n", catalog)
    assert [(e.line, e.field, e.message) for e in errs] == [(4, "items.0.prompt", "duplicate key")]


def test_yaml_bare_list_and_defaults_errors_point_at_defaults(catalog: Catalog) -> None:
    assert (
        len(plan_of("- {kind: sfx, prompt: a, duration_s: 1}\n- {kind: music, prompt: b}\n", catalog).jobs)
        == 2
    )
    text = "defaults:\n  kind: sfx\n  duration_s: -1\nitems:\n  - prompt: a\n  - prompt: b\n"
    errs = errors_of(text, catalog)
    assert [(e.line, e.field) for e in errs] == [(3, "duration_s")]  # once, at the default


def test_nested_fields_are_validated_with_their_lines(catalog: Catalog) -> None:
    text = (
        "defaults: {kind: music, duration_s: 1}\n"
        "items:\n"
        "  - prompt: a\n"
        "    post:\n"
        "      target_lufs: 3\n"
        "      loud: true\n"
        "  - prompt: b\n"
        "    sampling: {top_k: 100000}\n"
        "  - prompt: c\n"
        "    sampling: {top_k: 100}\n"
    )
    errs = errors_of(text, catalog)
    got = {(e.line, e.field) for e in errs}
    assert got == {(5, "post.target_lufs"), (6, "post.loud"), (8, "sampling.top_k"), (10, "sampling.top_k")}
    assert any("codebook" in e.message for e in errs if e.line == 10)


def test_missing_kind_and_wrong_model_kind(catalog: Catalog) -> None:
    text = "items:\n  - prompt: a\n  - kind: music\n    model: dev-audiogen-tiny\n    prompt: b\n"
    errs = errors_of(text, catalog)
    assert [(e.line, e.field) for e in errs] == [(2, "kind"), (4, "model")]
    assert "set it on the item or in defaults" in errs[0].message


def test_empty_and_itemless_files(catalog: Catalog) -> None:
    assert errors_of("", catalog)[0].message == "the file is empty"
    assert "no items" in errors_of("items: []\n", catalog)[0].message
    assert errors_of("just text\n", catalog)[0].line == 1


# -- JSONL -----------------------------------------------------------------------------------------


def test_jsonl_reports_every_bad_line(catalog: Catalog) -> None:
    text = (
        '{"defaults": {"kind": "sfx", "duration_s": 1}}\n'
        '{"prompt": "ok"}\n'
        '{"prompt": "broken",}\n'
        "\n"
        "# a comment\n"
        '{"prompt": "x", "duration_s": "long"}\n'
        "[1, 2]\n"
        '{"prompt": "y", "prompt": "z"}\n'
        '{"prompt": "w", "speeed": 2}\n'
    )
    errs = errors_of(text, catalog, "b.jsonl")
    got = [(e.line, e.column, e.field) for e in errs]
    assert got[0][0] == 3 and got[0][1] is not None and "JSON syntax error" in errs[0].message
    assert (6, 17, "duration_s") in got
    assert (7, 1, None) in got
    assert any(e.line == 8 and "duplicate key" in e.message for e in errs)
    assert (9, 17, "speeed") in got


def test_jsonl_header_only_on_first_line(catalog: Catalog) -> None:
    text = '{"prompt": "a", "kind": "sfx"}\n{"defaults": {"kind": "sfx"}}\n'
    errs = errors_of(text, catalog, "b.jsonl")
    assert any(e.line == 2 and "first line only" in e.message for e in errs)


# -- CSV -------------------------------------------------------------------------------------------


def test_csv_directives_types_and_columns(catalog: Catalog) -> None:
    text = (
        "# @defaults: {kind: sfx, duration_s: 1}\n"
        "# @output: {name}_{variation}.{format}\n"
        "name,prompt,seeds,post.trim_silence,speed\n"
        'a,"rain, heavy",1;2,false,\n'
        "b,wind,,yes,\n"
    )
    plan = plan_of(text, catalog, "b.csv")
    assert [(j.name, j.seed) for j in plan.jobs][:2] == [("a", 1), ("a", 2)]
    assert plan.jobs[0].request["prompt"] == "rain, heavy"
    assert plan.jobs[0].request["post"] == {"trim_silence": False}
    assert plan.jobs[2].request["post"] == {"trim_silence": True}
    assert [j.file for j in plan.jobs] == ["a_1.wav", "a_2.wav", "b_1.wav"]
    assert plan.jobs[0].line == 4


def test_csv_errors_have_row_line_and_cell_column(catalog: Catalog) -> None:
    text = (
        "# @defaults: {kind: music}\n"
        "name,prompt,duration_s,modle\n"
        "a,calm piano,2,\n"
        'b,"quoted, comma",-4,\n'
        "c,drums,abc,\n"
        "d,bass,1,2,extra\n"
    )
    errs = errors_of(text, catalog, "b.csv")
    got = {(e.line, e.column, e.field) for e in errs}
    assert (2, 24, "modle") in got
    assert (4, 19, "duration_s") in got
    assert (5, 9, "duration_s") in got
    assert any(e.line == 6 and "cells" in e.message for e in errs)


def test_csv_unknown_directive(catalog: Catalog) -> None:
    errs = errors_of("# @defualts: {kind: sfx}\nprompt,kind\na,sfx\n", catalog, "b.csv")
    assert errs[0].line == 1 and "did you mean 'defaults'" in errs[0].message


# -- variations, ids and seeds ---------------------------------------------------------------------


def test_variations_n_seeds_and_seed(catalog: Catalog) -> None:
    text = (
        "defaults: {kind: sfx, duration_s: 1}\n"
        "items:\n"
        "  - {name: a, prompt: x, n: 3}\n"
        "  - {name: b, prompt: x, seeds: [5, 9]}\n"
        "  - {name: c, prompt: x, seed: 40, n: 2}\n"
        "  - {name: d, prompt: x}\n"
    )
    plan = plan_of(text, catalog)
    by = {(j.name, j.variation): j for j in plan.jobs}
    assert len(plan.jobs) == 3 + 2 + 2 + 1
    assert [by["b", 1].seed, by["b", 2].seed] == [5, 9]
    assert [by["c", 1].seed, by["c", 2].seed] == [40, 41]
    assert by["a", 1].seed == derived_seed("name:a", 1)
    assert len({by["a", v].seed for v in (1, 2, 3)}) == 3
    assert all(j.request["seed"] == j.seed for j in plan.jobs)


def test_ids_seeds_and_hashes_are_deterministic_and_keyed_by_name(catalog: Catalog) -> None:
    one = plan_of(
        "defaults: {kind: sfx, duration_s: 1}\nitems:\n  - {name: a, prompt: x}\n"
        "  - {name: b, prompt: y, n: 2}\n",
        catalog,
    )
    two = plan_of(
        "defaults: {kind: sfx, duration_s: 1}\nitems:\n  - {name: new, prompt: z}\n"
        "  - {name: b, prompt: y, n: 2}\n  - {name: a, prompt: x}\n",
        catalog,
    )
    a1, a2 = (next(j for j in p.jobs if j.name == "a") for p in (one, two))
    assert (a1.item_id, a1.seed, a1.spec_hash) == (a2.item_id, a2.seed, a2.spec_hash)
    assert a1.file != a2.file  # {index} moved
    changed = plan_of("defaults: {kind: sfx, duration_s: 2}\nitems:\n  - {name: a, prompt: x}\n", catalog)
    assert changed.jobs[0].item_id == a1.item_id and changed.jobs[0].spec_hash != a1.spec_hash


def test_unnamed_items_get_names_from_their_prompt_and_stable_ids(catalog: Catalog) -> None:
    text = (
        "defaults: {kind: sfx, duration_s: 1}\n"
        "items:\n"
        "  - prompt: A door creaks!\n"
        "  - prompt: A door creaks!\n"
    )
    plan = plan_of(text, catalog)
    assert [j.name for j in plan.jobs] == ["A_door_creaks", "A_door_creaks"]
    assert plan.jobs[0].item_id != plan.jobs[1].item_id
    assert [j.file for j in plan.jobs] == ["001_A_door_creaks_v1.wav", "002_A_door_creaks_v1.wav"]


def test_variation_errors(catalog: Catalog) -> None:
    text = (
        "defaults: {kind: sfx, duration_s: 1}\n"
        "items:\n"
        "  - {name: a, prompt: x, n: 0}\n"
        "  - {name: b, prompt: x, seeds: [1, 1]}\n"
        "  - {name: c, prompt: x, seeds: [-1]}\n"
        "  - {name: d, prompt: x, seed: abc}\n"
        "  - {name: e, prompt: x, seed: 1, seeds: [2]}\n"
        "  - {name: f, prompt: x, n: 101}\n"
    )
    errs = errors_of(text, catalog)
    assert [(e.line, e.field) for e in errs] == [
        (3, "n"),
        (4, "seeds"),
        (5, "seeds"),
        (6, "seed"),
        (7, "seeds"),
        (8, "n"),
    ]


def test_duplicate_names_and_colliding_outputs(catalog: Catalog) -> None:
    text = (
        'output: "{name}.{format}"\n'
        "defaults: {kind: sfx, duration_s: 1}\n"
        "items:\n"
        "  - {name: a, prompt: x}\n"
        "  - {name: A, prompt: y}\n"
        "  - {name: b, prompt: y, n: 2}\n"
    )
    errs = errors_of(text, catalog)
    assert (5, "name") in {(e.line, e.field) for e in errs}
    collide = [e for e in errs if e.field == "output"]
    assert collide and collide[0].line == 6 and "{variation}" in collide[0].message


# -- output template -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "template",
    [
        "/etc/{name}.{format}",
        "../{name}.{format}",
        "a/../../{name}.{format}",
        "{name}\\..\\x.{format}",
        "C:/x/{name}.{format}",
        "{name.__class__}",
        "{name!r}.{format}",
        "{nope}.{format}",
        "{index:{n}}",
        "{index:q}",
        "",
        "manifest.jsonl",
        "a//{name}",
    ],
)
def test_bad_templates_are_refused(template: str) -> None:
    assert check_template(template), template


def test_template_escape_is_reported_at_the_output_line(catalog: Catalog) -> None:
    errs = errors_of('items:\n  - {kind: sfx, prompt: a}\noutput: "../../{name}.{format}"\n', catalog)
    assert [(e.line, e.column, e.field) for e in errs] == [(3, 1, "output")]
    assert "'..'" in errs[0].message


def test_good_templates_render_and_get_an_extension() -> None:
    assert not check_template(DEFAULT_TEMPLATE)
    assert not check_template("{kind}/{batch}/{index:04d}-{name}-{seed}")
    values = {
        "index": 3,
        "name": "n",
        "variation": 2,
        "n": 2,
        "seed": 7,
        "format": "mp3",
        "kind": "sfx",
        "model": "m/x",
        "id": "f" * 16,
        "batch": "b",
    }
    assert render_output(DEFAULT_TEMPLATE, values) == "003_n_v2.mp3"
    assert render_output("{kind}/{model}-{seed}", values) == "sfx/m_x-7.mp3"


def test_resolve_output_refuses_symlink_escape(tmp_path: Path) -> None:
    out = tmp_path / "out"
    (out).mkdir()
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    (out / "link").symlink_to(outside)
    assert resolve_output(out, "sub/a.wav") == (out / "sub" / "a.wav").resolve()
    with pytest.raises(InvalidInput):
        resolve_output(out, "link/a.wav")
    with pytest.raises(InvalidInput):
        resolve_output(out, "../a.wav")


# -- misc ------------------------------------------------------------------------------------------


def test_load_batch_and_unknown_suffix(tmp_path: Path) -> None:
    good = tmp_path / "x.yml"
    good.write_text("items:\n  - {kind: sfx, prompt: a}\n")
    batch = load_batch(good)
    assert batch.format == "yaml" and batch.items[0].pos.line == 2
    bad = tmp_path / "x.txt"
    bad.write_text("whatever")
    with pytest.raises(BatchInvalid, match="unknown batch file type"):
        load_batch(bad)
    with pytest.raises(BatchInvalid, match="cannot read"):
        load_batch(tmp_path / "missing.yaml")


def test_parse_collects_errors_without_raising() -> None:
    batch, errors = parse_batch_text('{"prompt": "a"}\n{oops}\n', "x.jsonl")
    assert len(batch.items) == 1 and errors[0].line == 2


def test_not_utf8(catalog: Catalog) -> None:
    with pytest.raises(BatchInvalid, match="UTF-8") as info:
        validate_batch_bytes(b"items:\n  - prompt: caf\xe9\n", "x.yaml", catalog)
    assert info.value.errors[0].line == 2


def test_read_manifest_skips_a_torn_last_line(tmp_path: Path) -> None:
    path = tmp_path / "manifest.jsonl"
    path.write_text(
        '{"item_id": "a", "file": "1"}\n{"item_id": "b"}\n{"item_id": "a", "file": "2"}\n{"item_id": "c", '
    )
    entries = read_manifest(path)
    assert set(entries) == {"a", "b"} and entries["a"]["file"] == "2"


def test_plan_batch_reports_prior_errors_with_item_errors(catalog: Catalog) -> None:
    batch, errors = parse_batch_text('{"kind": "sfx", "prompt": "a", "duration_s": 0}\n{bad\n', "x.jsonl")
    with pytest.raises(BatchInvalid) as info:
        plan_batch(batch, catalog, prior_errors=errors)
    assert [e.line for e in info.value.errors] == [1, 2]


def test_captions_field_is_checked_and_planned(catalog: Catalog) -> None:
    text = """\
defaults:
  kind: speech
  captions: vtt
items:
  - name: a
    text: Hello there.
  - name: b
    text: Hi.
    captions: srt
"""
    jobs = plan_of(text, catalog).jobs
    assert [(j.captions, j.captions_file) for j in jobs] == [("vtt", "001_a_v1.vtt"), ("srt", "002_b_v1.srt")]
    bad = """\
items:
  - kind: speech
    text: Hello.
    captions: ass
  - kind: sfx
    model: dev-audiogen-tiny
    prompt: a click
    captions: srt
"""
    errors = errors_of(bad, catalog)
    assert [(e.line, e.field) for e in errors] == [(4, "captions"), (8, "captions")]
    assert "one of srt, vtt" in errors[0].message and "for speech items" in errors[1].message
