"""Captions from word timings: cue rules, and files a real SRT/WebVTT parser reads back whole."""

from __future__ import annotations

import io
import itertools
import json

import pytest
import srt
import webvtt

from gen_server.captions import MAX_CUE_S, MAX_LINE, MIN_CUE_S, character_alignment, cues, render
from gen_server.contract.result import WordTiming

TEXT = (
    "The quick brown fox, who had been running all morning through the cold and silent forest, finally "
    "stopped beside the river to drink; the water was clear and very cold. Then it slept. Dr. Smith "
    "arrived at three p.m. today, and nobody noticed."
)


def timed(
    text: str, word_s: float = 0.32, gap_s: float = 0.04, sentence_pause_s: float = 0.3
) -> list[WordTiming]:
    """Words laid out like a voice speaks them: a pause after each sentence (as the backends put one)."""
    out, at = [], 0.1
    sentence_ends = {"cold.", "slept.", "noticed."}  # pysbd's sentences of TEXT ("Dr." and "p.m." are not)
    for token in text.split():
        out.append(WordTiming(text=token, start_s=round(at, 3), end_s=round(at + word_s, 3), source="model"))
        at += word_s + (sentence_pause_s if token in sentence_ends else gap_s)
    return out


def seconds(stamp: str) -> float:
    """``HH:MM:SS.mmm`` in seconds (webvtt-py's own ``start_in_seconds`` drops the milliseconds)."""
    h, m, s = stamp.split(":")
    return int(h) * 3600 + int(m) * 60 + float(s)


def test_cues_follow_the_subtitle_rules() -> None:
    words = timed(TEXT)
    found = cues(words)
    assert [w for c in found for w in c.words] == words  # every word once, in order
    for c in found:
        assert 1 <= len(c.lines) <= 2 and all(len(line) <= MAX_LINE for line in c.lines), c.lines
        assert MIN_CUE_S <= c.end_s - c.start_s <= MAX_CUE_S + 1e-9, c
    for a, b in itertools.pairwise(found):
        assert a.end_s <= b.start_s
    texts = [c.text.replace("\n", " ") for c in found]
    assert texts[0] == "The quick brown fox,"  # a long sentence is cut after a clause mark
    assert any(t.endswith("very cold.") for t in texts) and "Then it slept." in texts
    assert any(t.startswith("Dr. Smith arrived at three p.m. today,") for t in texts)  # no cut after "Dr."


def test_a_long_run_without_punctuation_is_cut_at_seven_seconds() -> None:
    words = timed(" ".join(["word"] * 60), word_s=0.45)
    found = cues(words)
    assert len(found) > 1
    assert all(c.end_s - c.start_s <= MAX_CUE_S for c in found)


@pytest.mark.parametrize("fmt", ["srt", "vtt", "json"])
def test_every_format_parses_back_with_every_word(fmt: str) -> None:
    words = timed(TEXT)
    text = render(words, fmt)  # type: ignore[arg-type]
    if fmt == "srt":
        parsed = [(s.start.total_seconds(), s.end.total_seconds(), s.content) for s in srt.parse(text)]
    elif fmt == "vtt":
        vtt = webvtt.from_buffer(io.StringIO(text))
        parsed = [(seconds(c.start), seconds(c.end), c.text) for c in vtt.captions]
    else:
        parsed = [(c["start_s"], c["end_s"], c["text"]) for c in json.loads(text)["cues"]]
    spoken = " ".join(t.replace("\n", " ") for _, _, t in parsed).split()
    assert spoken == [w.text for w in words]
    expected = [c.start_s for c in cues(words)]
    assert [round(s, 3) for s, _, _ in parsed] == pytest.approx(expected, abs=0.0015)


def test_character_alignment_spans_each_word() -> None:
    words = [
        WordTiming(text="Hello", start_s=0.1, end_s=0.5, source="model"),
        WordTiming(text="world.", start_s=0.6, end_s=1.2, source="model"),
    ]
    a = character_alignment("Hello world.", words)
    assert "".join(a.characters) == "Hello world."
    assert a.character_start_times_seconds[0] == 0.1 and a.character_end_times_seconds[4] == 0.5
    assert a.character_start_times_seconds[5] == 0.5 and a.character_end_times_seconds[5] == 0.6  # the space
    assert a.character_end_times_seconds[-1] == 1.2
    starts = a.character_start_times_seconds
    assert starts == sorted(starts)
    # the text as sent may have fewer words than were spoken ("42" read as "forty-two"): spread evenly
    b = character_alignment(
        "It is 42.", [*words, WordTiming(text="x", start_s=1.3, end_s=1.5, source="model")][:2]
    )
    assert len(b.characters) == 9 and b.character_end_times_seconds[-1] == pytest.approx(1.2)
