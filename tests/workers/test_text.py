"""workers.text: number words, sentence splitting, segments and pauses (pure functions)."""

from __future__ import annotations

import numpy as np
import pytest

from workers.text import (
    CLAUSE_PAUSE_S,
    PARAGRAPH_PAUSE_S,
    SENTENCE_PAUSE_S,
    join_segments,
    normalize_numbers,
    segment_text,
    split_sentences,
)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("I have 42 apples.", "I have forty-two apples."),
        ("1,234 people", "one thousand two hundred and thirty-four people"),
        ("pi is 3.14", "pi is three point one four"),
        ("It was -5 degrees", "It was minus five degrees"),
        ("pages 10-20", "pages ten-twenty"),
        ("the 21st time", "the twenty-first time"),
        ("in 1999 and 2024", "in nineteen ninety-nine and twenty twenty-four"),
        ("costs $5.50", "costs five dollars and fifty cents"),
        ("costs $1", "costs one dollar"),
        ("grew 50%", "grew fifty percent"),
        ("version 1.2.3", "version 1.2.3"),
        ("no digits here", "no digits here"),
    ],
)
def test_normalize_numbers_english(text: str, expected: str) -> None:
    assert normalize_numbers(text, "en") == expected


def test_normalize_numbers_other_languages() -> None:
    assert normalize_numbers("Ich habe 42 Äpfel und 3,5 Kilo", "de") == (
        "Ich habe zweiundvierzig Äpfel und drei Komma fünf Kilo"
    )
    assert normalize_numbers("1.234 Birnen", "de") == "eintausendzweihundertvierunddreißig Birnen"
    assert normalize_numbers("Tengo 3 gatos", "es") == "Tengo tres gatos"
    # num2words has no Chinese: digits stay for the model's own front end
    assert normalize_numbers("我有42个", "zh-cn") == "我有42个"


def test_split_sentences_keeps_abbreviations_initials_and_quotes() -> None:
    text = 'Dr. Smith met J. R. Tolkien in 1950. He said "Hi!" Then left...  ok? yes'
    assert split_sentences(text) == [
        "Dr. Smith met J. R. Tolkien in 1950.",
        'He said "Hi!"',
        "Then left...",
        "ok?",
        "yes",
    ]


def test_split_sentences_cjk_and_whitespace() -> None:
    assert split_sentences("你好。我很好！谢谢") == ["你好。", "我很好！", "谢谢"]
    assert split_sentences("  one\n two.   three  ") == ["one two.", "three"]
    assert split_sentences("   ") == []


def test_segment_text_pauses_paragraphs_and_long_sentences() -> None:
    text = (
        "Hello world. This is 1 test.\n\n"
        "A long sentence, with a clause that goes on and on, until it exceeds the limit, really."
    )
    segments = segment_text(text, max_chars=40)
    assert [s.text for s in segments] == [
        "Hello world.",
        "This is one test.",
        "A long sentence,",
        "with a clause that goes on and on,",
        "until it exceeds the limit, really.",
    ]
    assert [s.pause_after_s for s in segments] == [
        SENTENCE_PAUSE_S,
        PARAGRAPH_PAUSE_S,
        CLAUSE_PAUSE_S,
        CLAUSE_PAUSE_S,
        0.0,
    ]
    assert all(len(s.text) <= 40 for s in segments)


def test_segment_text_hard_cuts_and_drops_unspeakable() -> None:
    word = "x" * 70
    segments = segment_text(f"{word}. !!!", max_chars=30)
    assert [s.text for s in segments] == ["x" * 30, "x" * 30, "x" * 10 + "."]
    assert segment_text("... !!! ---") == []
    with pytest.raises(ValueError):
        segment_text("hi", max_chars=5)


def test_join_segments_inserts_exact_silences() -> None:
    a = np.ones(100, dtype=np.float32)
    b = np.full(50, 0.5, dtype=np.float32)
    out = join_segments([a, b], [0.01, 0.0], sample_rate=1000)
    assert out.dtype == np.float32
    assert out.shape == (160,)
    assert np.all(out[100:110] == 0) and np.all(out[110:] == 0.5)
    assert join_segments([], [], 1000).shape == (0,)
    with pytest.raises(ValueError):
        join_segments([a], [], 1000)
