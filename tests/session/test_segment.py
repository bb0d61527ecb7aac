"""The streaming segmenter: first-unit latency rules, sentence rules, and split independence."""

from __future__ import annotations

import itertools
import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from session.segment import (
    Segmenter,
    SegmenterConfig,
    first_unit_end,
    first_unit_ready_at,
    split_units,
)


def llm_tokens(text: str) -> list[str]:
    """Pieces shaped like an LLM's tokens: a leading space, then at most four characters."""
    return re.findall(r"\s*\S{1,4}|\s+", text)


def stream(pieces: list[str], config: SegmenterConfig | None = None) -> list[str]:
    segmenter = Segmenter(config)
    units = [unit for piece in pieces for unit in segmenter.push(piece)]
    return units + segmenter.flush()


def word_count(unit: str) -> int:
    return sum(any(ch.isalnum() for ch in token) for token in unit.split())


# --- the first unit ---------------------------------------------------------------------------------


def test_first_unit_is_released_by_the_token_after_its_clause() -> None:
    segmenter = Segmenter()
    assert segmenter.push("Hello") == []
    assert segmenter.push(" there") == []
    assert segmenter.push(",") == []  # "there,x" would not be a clause: wait for the space
    assert segmenter.push(" how") == ["Hello there,"]
    assert segmenter.pending == "how"


def test_realistic_llm_answer_streamed_token_by_token() -> None:
    text = (
        "Sure, I can help with that. The quickest way is to take the train, which leaves every "
        "ten minutes. If you prefer the bus, line 42 stops right outside the station; it takes "
        "about 25 minutes. Let me know if you need anything else!"
    )
    assert stream(llm_tokens(text)) == [
        "Sure, I can help with that.",
        "The quickest way is to take the train, which leaves every ten minutes.",
        "If you prefer the bus, line 42 stops right outside the station; it takes about 25 minutes.",
        "Let me know if you need anything else!",
    ]


def test_a_short_clause_does_not_end_the_first_unit() -> None:
    assert split_units("Well, I think that we should go now.") == [
        "Well, I think that we should",
        "go now.",
    ]


def test_first_unit_is_cut_after_max_complete_words_without_punctuation() -> None:
    segmenter = Segmenter(SegmenterConfig(first_unit_max_words=6))
    assert segmenter.push("So I was thinking that may") == []
    assert segmenter.push("be") == []  # "maybe" is not complete yet
    assert segmenter.push(" we") == ["So I was thinking that maybe"]
    assert segmenter.flush() == ["we"]


def test_a_sentence_end_ends_the_first_unit_at_any_length() -> None:
    assert split_units("Sure! Here is the answer, in short.") == [
        "Sure!",
        "Here is the answer, in short.",
    ]


def test_a_line_break_ends_the_first_unit_at_any_length() -> None:
    assert split_units("Steps:\n1. Install it.\n2. Run it, then wait.") == [
        "Steps:",
        "1. Install it.",
        "2. Run it, then wait.",
    ]


def test_flush_starts_a_new_utterance_whose_first_unit_is_short_again() -> None:
    segmenter = Segmenter()
    assert segmenter.push("First turn, short. ") == ["First turn,", "short."]
    assert not segmenter.awaiting_first_unit
    assert segmenter.flush() == []
    assert segmenter.awaiting_first_unit
    assert segmenter.push("Second turn, also short. ") == ["Second turn,", "also short."]


# --- later units -----------------------------------------------------------------------------------


def test_later_units_are_whole_sentences() -> None:
    text = "Okay. One, two and three are here, and four too. Then, finally, five!"
    assert split_units(text) == ["Okay.", "One, two and three are here, and four too.",
                                 "Then, finally, five!"]  # fmt: skip


def test_a_long_sentence_is_cut_at_its_last_clause_boundary() -> None:
    config = SegmenterConfig(first_unit_max_words=2, max_unit_words=10)
    text = "Okay. a b c, d e f; g h i j k l m n."
    assert split_units(text, config) == ["Okay.", "a b c, d e f;", "g h i j k l m n."]


def test_a_long_sentence_without_clauses_is_cut_at_max_words() -> None:
    config = SegmenterConfig(first_unit_max_words=2, max_unit_words=5)
    assert split_units("Okay. a b c d e f g h i j k l.", config) == [
        "Okay.",
        "a b c d e",
        "f g h i j",
        "k l.",
    ]


def test_a_line_break_after_the_last_allowed_word_wins_over_a_clause_cut() -> None:
    config = SegmenterConfig(first_unit_min_words=1, first_unit_max_words=3, max_unit_words=5)
    text = "a b c d e f so, g \nh"
    expected = ["a b c", "d e f so, g", "h"]
    assert split_units(text, config) == expected
    assert stream(list(text), config) == expected  # the space before "\n" must not decide it


# --- what is and is not a sentence end -------------------------------------------------------------


@pytest.mark.parametrize(
    "sentence",
    [
        "I met Dr. Smith and Mr. Jones at St. Mary's today.",
        "Mrs. Brown, e.g. the teacher, i.e. not the cook, stayed.",
        "It was cats vs. dogs, approx. ten of each.",
        "We sell apples, pears, etc. and plums.",
        "The U.S. economy grew by 3.5 percent in 2024.",
        "She loved J. R. R. Tolkien and his books.",
        "Pi is 3.14 and the rate is 1,234.5 per year.",
        "Visit example.com/a.b or www.test.org for more.",
        "Mail me at first.last@mail.example.io for details.",
        'He said "no." quietly.',
    ],
)
def test_these_dots_do_not_end_a_sentence(sentence: str) -> None:
    assert split_units("Okay. " + sentence) == ["Okay.", sentence]


def test_etc_and_acronyms_end_a_sentence_only_before_a_capital() -> None:
    segmenter = Segmenter()
    assert segmenter.push("Okay. We sell pears, etc. ") == ["Okay."]
    assert segmenter.push("T") == ["We sell pears, etc."]
    assert segmenter.push("hen at 5 p.m. we close. ") == ["Then at 5 p.m. we close."]


@pytest.mark.parametrize(
    ("text", "units"),
    [
        ("Okay. I counted to 3. Then I stopped.", ["Okay.", "I counted to 3.", "Then I stopped."]),
        ('Okay. He said "stop." Then he left.', ["Okay.", 'He said "stop."', "Then he left."]),
        ("Okay. Really?! Yes (I think). Fine…", ["Okay.", "Really?!", "Yes (I think).", "Fine…"]),
        ("Okay. Visit example.com. It works.", ["Okay.", "Visit example.com.", "It works."]),
        ("Okay. Wait... what?", ["Okay.", "Wait...", "what?"]),
        ("Title here\n\nSome body text\nand more", ["Title here", "Some body text", "and more"]),
    ],
)
def test_sentence_ends(text: str, units: list[str]) -> None:
    assert split_units(text) == units


def test_a_comma_between_numbers_is_not_a_clause() -> None:
    assert split_units("On March 3, 2024 we launched, at last.") == [
        "On March 3, 2024 we launched,",
        "at last.",
    ]
    assert split_units("Pick 1, 2, 3 or more, please.") == ["Pick 1, 2, 3 or more,", "please."]


# --- flush and pending -----------------------------------------------------------------------------


def test_flush_returns_the_whole_remainder_even_mid_word() -> None:
    segmenter = Segmenter()
    assert segmenter.push("Hello wor") == []
    assert segmenter.pending == "Hello wor"
    assert segmenter.flush() == ["Hello wor"]
    assert segmenter.pending == ""
    assert segmenter.flush() == []


def test_flush_decides_what_waited_for_more_text() -> None:
    segmenter = Segmenter()
    assert segmenter.push("Okay. We sell pears, etc. ") == ["Okay."]
    assert segmenter.flush() == ["We sell pears, etc."]


def test_units_are_stripped_and_never_empty() -> None:
    segmenter = Segmenter()
    assert segmenter.push("   \n\n  ") == []
    assert segmenter.push("  Hi!  \n\n  ") == ["Hi!"]
    assert segmenter.push(" — ") == []
    assert segmenter.flush() == ["—"]


# --- the load-test client's view -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("words", "end"),
    [
        (["Hello", "there,", "how", "are", "you?"], 1),
        (["Hi!", "How", "are", "you?"], 0),
        (["So", "I", "was", "thinking", "that", "maybe", "we", "could"], 5),
        (["Hello", "there"], None),  # only a flush completes it
        (["Hello", "there."], 1),
        (["Fruit", "etc.", "Then", "we", "close."], 2),  # waits to see how "Then" starts
        ([], None),
    ],
)
def test_first_unit_end(words: list[str], end: int | None) -> None:
    assert first_unit_end(words) == end


def test_first_unit_ready_at_matches_the_segmenter_on_any_chunks() -> None:
    chunks = ["Hel", "lo", " there", ",", " how", " are", " you?"]
    assert first_unit_ready_at(chunks) == 4
    assert first_unit_ready_at(["Hello there"]) is None


def test_config_rejects_impossible_settings() -> None:
    with pytest.raises(ValueError):
        SegmenterConfig(first_unit_min_words=5, first_unit_max_words=3)
    with pytest.raises(ValueError):
        SegmenterConfig(first_unit_max_words=10, max_unit_words=8)
    with pytest.raises(ValueError):
        SegmenterConfig(first_unit_min_words=0)


# --- properties: any split of a text gives the one-pass units --------------------------------------

_VOCABULARY = [
    "hello", "world", "Then", "we", "go", "I", "a", "3", "3.14", "1,234", "3,", "2024", "42.",
    "Dr.", "Mr.", "St.", "e.g.", "i.e.", "etc.", "U.S.", "J.", "vs.", "p.m.", "1.", "Inc.",
    "example.com", "a@b.io", "www.x.org/a.b", "done.", "why?", "yes!", "so,", "well;", "note:",
    "wait—", "—", "–", "-", "...", "…", '"quoted."', "(aside).", "'tis", "Hel", "lo", "ok.)",
]  # fmt: skip
_SPACES = [" ", " ", " ", "  ", "\n", "\n\n", " \n", "\t"]
_CONFIGS = [
    SegmenterConfig(),
    SegmenterConfig(first_unit_min_words=1, first_unit_max_words=3, max_unit_words=5),
    SegmenterConfig(first_unit_min_words=3, first_unit_max_words=8, max_unit_words=12,
                    min_unit_chars=5),
]  # fmt: skip


@st.composite
def texts(draw: st.DrawFn) -> str:
    words = draw(st.lists(st.sampled_from(_VOCABULARY), max_size=40))
    spaces = draw(st.lists(st.sampled_from(_SPACES), min_size=len(words), max_size=len(words)))
    lead = draw(st.sampled_from(["", " ", "\n"]))
    return lead + "".join(w + s for w, s in zip(words, spaces, strict=True)).rstrip(
        draw(st.sampled_from(["", " \n\t"]))
    )


@st.composite
def split_text(draw: st.DrawFn, text_strategy: st.SearchStrategy[str]) -> tuple[str, list[str]]:
    text = draw(text_strategy)
    cuts = sorted(draw(st.sets(st.integers(0, len(text)), max_size=len(text))))
    bounds = [0, *cuts, len(text)]
    return text, [text[a:b] for a, b in itertools.pairwise(bounds)]


_ANY_TEXT = st.text(alphabet="ab1 .,;:!?—-\n\"')eDrM", max_size=80)


@settings(max_examples=500, deadline=None)
@given(split_text(texts() | _ANY_TEXT), st.sampled_from(_CONFIGS))
def test_units_do_not_depend_on_how_the_text_was_split(
    case: tuple[str, list[str]], config: SegmenterConfig
) -> None:
    text, pieces = case
    assert stream(pieces, config) == split_units(text, config)


@settings(max_examples=150, deadline=None)
@given(texts() | _ANY_TEXT, st.sampled_from(_CONFIGS))
def test_character_by_character_streaming_gives_the_one_pass_units(
    text: str, config: SegmenterConfig
) -> None:
    assert stream(list(text), config) == split_units(text, config)


@settings(max_examples=300, deadline=None)
@given(texts() | _ANY_TEXT, st.sampled_from(_CONFIGS))
def test_units_keep_every_word_in_order_and_respect_the_size_limits(
    text: str, config: SegmenterConfig
) -> None:
    units = split_units(text, config)
    assert " ".join(units).split() == text.split()
    assert all(unit and unit == unit.strip() for unit in units)
    if units:
        assert word_count(units[0]) <= config.first_unit_max_words
    assert all(word_count(unit) <= config.max_unit_words for unit in units)
