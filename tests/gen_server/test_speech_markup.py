"""Directing speech: the SSML subset, inline pause tags, and pronunciation lexicons (API and rules)."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from gen_server.errors import InvalidInput
from gen_server.speech_markup import apply_lexicon, parse, words_used

SSML = (
    '<speak>Hello <break time="500ms"/> world.<p>New <say-as interpret-as="characters">API</say-as> on '
    '<say-as interpret-as="date" format="ymd">2024-05-03</say-as>.</p>'
    '<prosody rate="slow">Slowly now,</prosody> the <say-as interpret-as="ordinal">3</say-as> '
    '<sub alias="World Wide Web">WWW</sub> has <say-as interpret-as="cardinal">42</say-as> pages.</speak>'
)


def test_ssml_becomes_spans_with_pauses_rates_and_spoken_forms() -> None:
    spans = parse(SSML)
    assert [(s.text.split(), s.rate, s.pause_s, s.boundary) for s in spans] == [
        (["Hello"], 1.0, 0.5, None),
        (["world."], 1.0, None, "paragraph"),
        (["New", "A", "P", "I", "on", "May", "third,", "twenty", "twenty-four."], 1.0, None, "paragraph"),
        (["Slowly", "now,"], 0.8, None, None),
        (["the", "third", "World", "Wide", "Web", "has", "forty-two", "pages."], 1.0, None, None),
    ]


def test_inline_pause_tags() -> None:
    spans = parse("Wait [pause 0.8s] for it [PAUSE 300ms].")
    assert [(s.text.strip(), s.pause_s) for s in spans] == [("Wait", 0.8), ("for it", 0.3), (".", None)]
    assert [(s.text, s.pause_s) for s in parse("No tags [here] at all.")] == [
        ("No tags [here] at all.", None)
    ]


@pytest.mark.parametrize(
    ("text", "where", "words"),
    [
        ("<speak>Hi <foo/></speak>", "line 1, column 11", "unknown SSML element <foo>"),
        ('<speak>Hi\n  <break time="soon"/></speak>', "line 2, column 3", "500ms or 1.5s"),
        ('<speak>Hi <break time="30s"/></speak>', "line 1, column 11", "at most 10 s"),
        ('<speak>Hi <prosody rate="warp">x</prosody></speak>', "line 1, column 11", "prosody rate"),
        ('<speak>Hi <say-as interpret-as="ordinal">x</say-as></speak>', "line 1, column 11", "whole number"),
        (
            '<speak>Hi <say-as interpret-as="date">2024-13-01</say-as></speak>',
            "line 1, column 11",
            "not a date",
        ),
        ("<speak>Hi <sub>x</sub></speak>", "line 1, column 11", "needs an alias"),
        ('<speak>Hi <break tiem="1s"/></speak>', "line 1, column 11", "no attribute 'tiem'"),
        ("<speak>Hi <p>unclosed</speak>", "line 1, column 24", "not valid SSML"),
        ("<speak>one</speak><speak>two</speak>", "line 1, column 19", "not valid SSML"),
        ('<!DOCTYPE x [<!ENTITY a "b">]><speak>&a;</speak>', "line 1", "DOCTYPE"),
        ("Plain [pause soon] text", "line 1, column 7", "500ms or 1.5s"),
    ],
)
def test_bad_markup_names_its_position(text: str, where: str, words: str) -> None:
    with pytest.raises(InvalidInput) as info:
        parse(text)
    assert info.value.field == "text"
    assert where in info.value.message and words in info.value.message, info.value.message


def test_lexicon_replaces_whole_words_in_any_case() -> None:
    lexicon = {"gif": "jiff", "SQL": "sequel"}
    assert apply_lexicon("A GIF, a gif's SQL; gifted", lexicon) == "A jiff, a gif's sequel; gifted"
    assert words_used("Look: a GIF!", ["gif", "sql"]) == {"gif"}


def test_markup_is_refused_at_submission_with_its_position(api: TestClient) -> None:
    r = api.post("/v1/jobs", json={"kind": "speech", "text": "<speak>Hi <break time='x'/></speak>"})
    assert r.status_code == 422, r.text
    error = r.json()["error"]
    assert error["field"] == "text" and "line 1, column 11" in error["message"]


def test_lexicon_api_and_jobs_carry_the_entries_they_use(api: TestClient) -> None:
    r = api.post(
        "/v1/lexicon", json={"language": "en", "entries": {"Soundry": "Sound ree", "nginx": "engine x"}}
    )
    assert r.status_code == 200, r.text
    assert r.json()["key"] == {"nginx": "engine x", "soundry": "Sound ree"}
    api.post("/v1/lexicon", json={"scope": "installation", "entries": {"GIF": "jiff", "nginx": "N G I N X"}})
    view = api.get("/v1/lexicon", params={"language": "en"}).json()
    assert view["installation"] == {"gif": "jiff", "nginx": "N G I N X"}
    job = api.post("/v1/jobs", json={"kind": "speech", "text": "Soundry serves a GIF behind nginx."}).json()
    spec = api.get(f"/v1/jobs/{job['id']}").json()["spec"]
    assert spec["lexicon"] == {"gif": "jiff", "nginx": "engine x", "soundry": "Sound ree"}  # the key's wins
    other = api.post("/v1/jobs", json={"kind": "speech", "text": "Nothing to respell."}).json()
    assert api.get(f"/v1/jobs/{other['id']}").json()["spec"]["lexicon"] == {}
    assert api.delete("/v1/lexicon/en/soundry").status_code == 204
    assert api.delete("/v1/lexicon/en/soundry").status_code == 404
    bad = api.post("/v1/lexicon", json={"entries": {"two words": "x"}})
    assert bad.status_code == 422 and bad.json()["error"]["field"] == "entries"
    bad = api.post("/v1/lexicon", json={"entries": {"x": "<speak>"}})
    assert bad.status_code == 422 and "no markup" in bad.json()["error"]["message"]
