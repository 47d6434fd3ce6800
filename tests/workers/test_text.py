"""workers.text: number words, sentence splitting, segments and pauses (pure functions)."""

from __future__ import annotations

import time

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


# (language, text, the sentences a careful reader would mark). Cases under "# amended" fail with
# pysbd 0.3.4 alone and pass through the amendments in workers.text (missing titles, "!!!", French
# quotes, closing marks after the full stop). Left out because pysbd gets them wrong and no small fix
# is worth it: 'He said (quietly.) Then left.' (kept whole), '« Viens. » « Non. » Il resta.' (no cut
# between the quotations), German 'Er wohnt in der Hauptstr. 5.' (cut after "Hauptstr.": an abbreviated
# compound, no list can hold them), and Latin titles inside Chinese text ('他叫Mr. Li。' is cut after
# "Mr.").
SENTENCE_CASES: list[tuple[str, str, list[str]]] = [
    # abbreviations, mid-sentence and at the end
    (
        "en",
        "Dr. Smith met Mr. Jones at 3 p.m. in the U.S. office.",
        ["Dr. Smith met Mr. Jones at 3 p.m. in the U.S. office."],
    ),
    (
        "en",
        "Mrs. Brown bought apples, pears, etc. and went home.",
        ["Mrs. Brown bought apples, pears, etc. and went home."],
    ),
    ("en", "Bring pens, paper, etc. We start at nine.", ["Bring pens, paper, etc.", "We start at nine."]),
    ("en", "I bought milk, eggs, etc.", ["I bought milk, eggs, etc."]),
    (
        "en",
        "She likes fruit, e.g. apples. He likes nuts, i.e. almonds.",
        ["She likes fruit, e.g. apples.", "He likes nuts, i.e. almonds."],
    ),
    ("en", "That's it, i.e. the end.", ["That's it, i.e. the end."]),
    ("en", "Mr. and Mrs. Smith are here.", ["Mr. and Mrs. Smith are here."]),
    ("en", "Prof. Smith arrived. They sat down.", ["Prof. Smith arrived.", "They sat down."]),
    ("en", "John Smith Jr. arrived late. They sat down.", ["John Smith Jr. arrived late.", "They sat down."]),
    ("en", "It was Mr. Smith's car. Nobody knew.", ["It was Mr. Smith's car.", "Nobody knew."]),
    (
        "en",
        "She arrived on Jan. 5 at noon. He came later.",
        ["She arrived on Jan. 5 at noon.", "He came later."],
    ),
    ("en", "No. 5 is my favourite. It is lucky.", ["No. 5 is my favourite.", "It is lucky."]),
    ("en", "St. Louis is a city. It is in Missouri.", ["St. Louis is a city.", "It is in Missouri."]),
    # amended
    ("en", "The Hon. Jane Doe spoke. We listened.", ["The Hon. Jane Doe spoke.", "We listened."]),
    # U.S. / U.K.
    ("en", "He lived in the U.K. until 1973.", ["He lived in the U.K. until 1973."]),
    (
        "en",
        "He lived in the U.K. until 1973. Then he moved.",
        ["He lived in the U.K. until 1973.", "Then he moved."],
    ),
    (
        "en",
        "The U.S. economy grew. The U.K. economy shrank.",
        ["The U.S. economy grew.", "The U.K. economy shrank."],
    ),
    ("en", "I live in the U.S. It is big.", ["I live in the U.S.", "It is big."]),
    # initials
    (
        "en",
        "J. R. R. Tolkien wrote books. He died in 1973.",
        ["J. R. R. Tolkien wrote books.", "He died in 1973."],
    ),
    ("en", "A. Lincoln was president. He was tall.", ["A. Lincoln was president.", "He was tall."]),
    # numbers: decimals, times, money, thousands, versions
    ("en", "Pi is 3.14 roughly. It is irrational.", ["Pi is 3.14 roughly.", "It is irrational."]),
    (
        "en",
        "We meet at 10:30 a.m. tomorrow. Don't be late.",
        ["We meet at 10:30 a.m. tomorrow.", "Don't be late."],
    ),
    ("en", "We meet at 10:30 a.m. Don't be late.", ["We meet at 10:30 a.m.", "Don't be late."]),
    (
        "en",
        "It starts at 3 p.m. and ends at 5 p.m. Please come.",
        ["It starts at 3 p.m. and ends at 5 p.m.", "Please come."],
    ),
    (
        "en",
        "It costs $3.50 today. Tomorrow it costs more.",
        ["It costs $3.50 today.", "Tomorrow it costs more."],
    ),
    ("en", "The city has 1,234,567 people. It grows.", ["The city has 1,234,567 people.", "It grows."]),
    ("en", "See section 4.2.1 for details. Thanks.", ["See section 4.2.1 for details.", "Thanks."]),
    # quotes, ellipses, ? and !
    ("en", 'He said "Stop." Then he left.', ['He said "Stop."', "Then he left."]),
    ("en", '"Stop!" he shouted. Nobody moved.', ['"Stop!" he shouted.', "Nobody moved."]),
    ("en", "“Are you coming?” she asked. He nodded.", ["“Are you coming?” she asked.", "He nodded."]),
    ("en", "Wait... what?", ["Wait... what?"]),
    ("en", "Wait... What happened? I don't know!", ["Wait...", "What happened?", "I don't know!"]),
    ("en", "Really? Yes! Okay.", ["Really?", "Yes!", "Okay."]),
    ("en", "What?! No way.", ["What?!", "No way."]),
    # amended
    ("en", "I love it!!! Do you?", ["I love it!!!", "Do you?"]),
    # amended
    ("en", "Hello!!!! Long time no see.", ["Hello!!!!", "Long time no see."]),
    ("en", "Wow!!! great stuff. Yes.", ["Wow!!! great stuff.", "Yes."]),
    # parentheses, URLs, e-mail
    ("en", "He left (without a word). She stayed.", ["He left (without a word).", "She stayed."]),
    ("en", "He left (see Fig. 3). She stayed.", ["He left (see Fig. 3).", "She stayed."]),
    (
        "en",
        "Visit https://example.com/page.html for details. Then write to info@example.com now.",
        ["Visit https://example.com/page.html for details.", "Then write to info@example.com now."],
    ),
    (
        "en",
        "Write to john.doe@example.org. We reply fast.",
        ["Write to john.doe@example.org.", "We reply fast."],
    ),
    # whitespace: runs of spaces and single newlines are one space
    ("en", "Hello world.  This is   a test.\nIt works.", ["Hello world.", "This is a test.", "It works."]),
    # German
    ("de", "Am 3. Mai kam er.", ["Am 3. Mai kam er."]),
    ("de", "Am 3. Mai kam er. Dann ging er.", ["Am 3. Mai kam er.", "Dann ging er."]),
    ("de", "Das ist der 2. Weltkrieg.", ["Das ist der 2. Weltkrieg."]),
    (
        "de",
        "Im 2. Weltkrieg war er Soldat. Danach nicht mehr.",
        ["Im 2. Weltkrieg war er Soldat.", "Danach nicht mehr."],
    ),
    (
        "de",
        "Herr Dr. Müller kommt um 15 Uhr. Er ist pünktlich.",
        ["Herr Dr. Müller kommt um 15 Uhr.", "Er ist pünktlich."],
    ),
    ("de", "Das kostet z. B. 3,50 Euro. Das ist billig.", ["Das kostet z. B. 3,50 Euro.", "Das ist billig."]),
    (
        "de",
        "Wir sehen uns am 24.12.2024 wieder. Bis dann!",
        ["Wir sehen uns am 24.12.2024 wieder.", "Bis dann!"],
    ),
    # amended
    (
        "de",
        "Hr. Schmidt und Fr. Weber kamen. Sie blieben.",
        ["Hr. Schmidt und Fr. Weber kamen.", "Sie blieben."],
    ),
    ("de", "Er sagte: „Komm her.“ Dann ging er.", ["Er sagte: „Komm her.“", "Dann ging er."]),
    # amended
    ("de", "Er sagte: »Komm her.« Dann ging er.", ["Er sagte: »Komm her.«", "Dann ging er."]),
    ("de", "Wie geht's? Gut! Und dir?", ["Wie geht's?", "Gut!", "Und dir?"]),
    # French
    ("fr", "M. Dupont est arrivé. Il est content.", ["M. Dupont est arrivé.", "Il est content."]),
    (
        "fr",
        "M. et Mme Dupont sont arrivés. Ils sont fatigués.",
        ["M. et Mme Dupont sont arrivés.", "Ils sont fatigués."],
    ),
    ("fr", "« Bonjour ! » dit-il. Elle sourit.", ["« Bonjour ! » dit-il.", "Elle sourit."]),
    # amended
    ("fr", "Il a dit « Arrête. » Puis il est parti.", ["Il a dit « Arrête. »", "Puis il est parti."]),
    ("fr", "Qu'est-ce que c'est ? Je ne sais pas !", ["Qu'est-ce que c'est ?", "Je ne sais pas !"]),
    # Spanish, Italian, Dutch, Polish, Russian
    ("es", "¿Dónde está el baño? ¡Allí está!", ["¿Dónde está el baño?", "¡Allí está!"]),
    ("es", "Hola. ¿Cómo estás? Bien, gracias.", ["Hola.", "¿Cómo estás?", "Bien, gracias."]),
    # amended
    (
        "es",
        "El Sr. García llegó tarde. La Sra. López no.",
        ["El Sr. García llegó tarde.", "La Sra. López no."],
    ),
    ("es", "Pagó 3,50 euros. Luego se fue.", ["Pagó 3,50 euros.", "Luego se fue."]),
    ("it", "Il Sig. Rossi è arrivato. Ciao!", ["Il Sig. Rossi è arrivato.", "Ciao!"]),
    # amended
    ("nl", "Dhr. Jansen is er. Hij wacht.", ["Dhr. Jansen is er.", "Hij wacht."]),
    # amended
    ("pl", "Prof. Nowak przyszedł. Był zmęczony.", ["Prof. Nowak przyszedł.", "Był zmęczony."]),
    ("ru", "Он пришёл в 10 ч. утра. Все ждали.", ["Он пришёл в 10 ч. утра.", "Все ждали."]),
    # Chinese and Japanese: full stops split without a space; zh-cn uses the zh rules
    ("zh", "你好。我很好！你呢？谢谢。", ["你好。", "我很好！", "你呢？", "谢谢。"]),
    ("zh-cn", "你好。我很好！谢谢", ["你好。", "我很好！", "谢谢"]),
    ("zh", "今天是3.5度。很冷。", ["今天是3.5度。", "很冷。"]),
    # amended
    ("zh", "他说：“你好。”然后走了。", ["他说：“你好。”", "然后走了。"]),
    ("ja", "こんにちは。元気ですか？はい！", ["こんにちは。", "元気ですか？", "はい！"]),
    ("ja", "「こんにちは。」と彼は言った。次へ。", ["「こんにちは。」と彼は言った。", "次へ。"]),
    # amended
    ("ja", "本当ですか！？すごい。", ["本当ですか！？", "すごい。"]),
    # languages pysbd lacks fall back to its English rules
    ("pt", "O Dr. Silva chegou. Ele estava cansado.", ["O Dr. Silva chegou.", "Ele estava cansado."]),
    ("xx", "Dr. Smith came. He sat.", ["Dr. Smith came.", "He sat."]),
]


@pytest.mark.parametrize(("language", "text", "expected"), SENTENCE_CASES)
def test_split_sentences_hard_cases(language: str, text: str, expected: list[str]) -> None:
    assert split_sentences(text, language) == expected


def test_split_sentences_keeps_abbreviations_initials_and_quotes() -> None:
    text = 'Dr. Smith met J. R. Tolkien in 1950. He said "Hi!" Then left...  ok? yes'
    assert split_sentences(text) == [
        "Dr. Smith met J. R. Tolkien in 1950.",
        'He said "Hi!"',
        "Then left... ok?",  # a lower-case word after "..." goes on with the sentence
        "yes",
    ]


def test_split_sentences_cjk_and_whitespace() -> None:
    assert split_sentences("你好。我很好！谢谢") == ["你好。", "我很好！", "谢谢"]
    assert split_sentences("  one\n two.   three  ") == ["one two.", "three"]
    assert split_sentences("   ") == []


def test_split_sentences_never_drops_or_changes_text() -> None:
    # pysbd's placeholder characters in the input make it rewrite sentences; they are still cut, not lost
    text = "a ∯ b. c ȸ d. e &ᓴ& f."
    assert " ".join(split_sentences(text)) == text


def test_split_sentences_long_text_is_linear() -> None:
    """pysbd's own segment() maps sentences back in quadratic time; ours must grow linearly.

    Judged by a ratio measured in the same run (4x the text: ~4x the time, quadratic would be ~16x),
    never by a wall-clock bound that depends on the machine; best of 3 against noise.
    """

    def best_of_3(text: str) -> float:
        times = []
        for _ in range(3):
            start = time.perf_counter()
            assert len(split_sentences(text)) == text.count(".")
            times.append(time.perf_counter() - start)
        return min(times)

    small, large = best_of_3("a. " * 1250), best_of_3("a. " * 5000)
    assert large < 10 * small, (small, large)


def test_segment_text_splits_before_spelling_numbers() -> None:
    assert [s.text for s in segment_text("Dr. Smith met Mr. Jones at 3 p.m. in the U.S. office.")] == [
        "Dr. Smith met Mr. Jones at three p.m. in the U.S. office."
    ]
    assert [s.text for s in segment_text("It costs $3.50 today. Tomorrow more.")] == [
        "It costs three dollars and fifty cents today.",
        "Tomorrow more.",
    ]
    # the ordinal's full stop is judged before "3" becomes a word, so it ends no sentence
    assert len(segment_text("Am 3. Mai kam er. Dann ging er.", language="de")) == 2
    assert [s.text for s in segment_text("他说：“你好。”然后走了。", language="zh-cn")] == [
        "他说：“你好。”",
        "然后走了。",
    ]


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


def test_segment_text_follows_markup_spans() -> None:
    ssml = (
        '<speak><p>First paragraph here.</p><p>Second <break time="700ms"/> part, '
        '<prosody rate="fast">quickly said.</prosody> End.</p></speak>'
    )
    segments = segment_text(ssml)
    assert [(s.text, s.pause_after_s, s.speed, s.exact_pause) for s in segments] == [
        ("First paragraph here.", PARAGRAPH_PAUSE_S, 1.0, False),
        ("Second", 0.7, 1.0, True),
        ("part,", CLAUSE_PAUSE_S, 1.0, False),
        ("quickly said.", SENTENCE_PAUSE_S, 1.25, False),
        ("End.", 0.0, 1.0, False),
    ]


def test_lexicon_respells_spoken_words_not_markup() -> None:
    segments = segment_text('<speak>Say break <break time="200ms"/> now.</speak>', lexicon={"break": "brake"})
    assert [(s.text, s.pause_after_s) for s in segments] == [("Say brake", 0.2), ("now.", 0.0)]
