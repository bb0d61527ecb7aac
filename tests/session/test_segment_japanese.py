"""The segmenter on Japanese: no spaces, so ``。！？`` end a sentence and ``、`` is a clause boundary
with no whitespace after them, units stay short enough for Kokoro (about 200 Japanese characters at
most), and every streaming invariant of ``session.segment`` still holds."""

from __future__ import annotations

import unicodedata

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from inference.kokoro_ja import phonemize_japanese
from session.segment import Segmenter, SegmenterConfig, _tokens, first_unit_ready_at, split_units
from tests.session.test_segment import split_text, stream

REPLY = "はい。今日は良い天気です。明日も晴れるでしょう。"


def wide(text: str) -> int:
    return sum(unicodedata.east_asian_width(ch) in ("W", "F") for ch in text)


def non_space(text: str) -> str:
    return "".join(text.split())


# --- sentence ends and clauses without whitespace ---------------------------------------------------


def test_the_first_unit_ends_at_the_first_full_stop() -> None:
    assert split_units(REPLY) == ["はい。", "今日は良い天気です。", "明日も晴れるでしょう。"]
    segmenter = Segmenter()
    assert segmenter.push("はい") == []
    assert segmenter.push("。") == []  # "。」" may still come: wait for the next character
    assert segmenter.push("今") == ["はい。"]
    assert first_unit_ready_at(["は", "い。", "今日", "は"]) == 2


def test_marks_after_a_full_stop_stay_with_its_sentence() -> None:
    text = "「はい。」本当ですか！？そうですね…。（笑）。最後です"
    assert split_units(text) == ["「はい。」", "本当ですか！？", "そうですね…。", "（笑）。", "最後です"]


def test_a_comma_is_a_clause_boundary_for_the_first_unit_only_after_enough_words() -> None:
    # "words" in unspaced text are the pieces between marks: the first needs two of them
    assert split_units("ええと、それは、難しい質問ですね。はい。") == [
        "ええと、それは、", "難しい質問ですね。", "はい。"]
    assert split_units("こんにちは、ご用件は何でしょうか。") == ["こんにちは、ご用件は何でしょうか。"]


def test_half_width_marks_and_full_width_decimals_are_not_boundaries_without_space() -> None:
    assert split_units("円周率は３．１４、です。次は1,000円!そうです。") == [
        "円周率は３．１４、です。", "次は1,000円!そうです。"]


def test_mixed_japanese_and_english_keep_the_english_rules() -> None:
    assert split_units("Hello there, how are you? 元気です。Dr. Smith も元気。") == [
        "Hello there,", "how are you?", "元気です。", "Dr. Smith も元気。"]


# --- length ----------------------------------------------------------------------------------------

_LONG_SENTENCE = ("昨日は朝から雨が降っていたので、駅まで歩くのをやめて、バスに乗ることにしましたが、"
                  "バスはとても混んでいて、座ることもできず、結局いつもより三十分も遅れて会社に着き、"
                  "上司に事情を説明して、午前中の会議の資料を急いで準備しなければなりませんでした。")


def test_a_long_reply_with_commas_never_gives_a_unit_over_120_characters() -> None:
    text = "はい、わかりました。" + _LONG_SENTENCE * 2 + "でも、午後には晴れて、気持ちの良い夕方になりました。" * 2
    assert len(text) >= 300
    units = split_units(text)
    assert "".join(units) == text
    assert max(len(unit) for unit in units) <= 120
    assert all(unit.endswith(("、", "。")) for unit in units)  # cut at marks, never mid-word
    assert stream([text[i : i + 3] for i in range(0, len(text), 3)]) == units


def test_text_with_no_marks_at_all_is_cut_after_80_characters_as_a_last_resort() -> None:
    text = "あいうえお" * 60
    assert [len(unit) for unit in split_units(text)] == [80, 80, 80, 60]
    marked = "か" * 79 + "。」" + "き" * 10  # the marks after the 80th character stay with it
    assert split_units(marked) == ["か" * 79 + "。」", "き" * 10]


def test_the_unit_limit_cuts_before_the_piece_that_would_pass_it() -> None:
    config = SegmenterConfig(max_unit_wide_chars=10, max_run_wide_chars=10)
    assert split_units("あ。いいい、ううう、えええ。おおお、かかかか。", config) == [
        "あ。", "いいい、ううう、", "えええ。", "おおお、かかかか。"]


def test_spaced_text_is_cut_as_before() -> None:
    text = "Okay. One, two and three are here, and four too. Then, finally, five!"
    assert split_units(text, SegmenterConfig(max_unit_wide_chars=1, max_run_wide_chars=1)) == [
        "Okay.", "One, two and three are here, and four too.", "Then, finally, five!"]


def test_config_rejects_a_run_longer_than_a_unit() -> None:
    with pytest.raises(ValueError):
        SegmenterConfig(max_unit_wide_chars=50, max_run_wide_chars=60)
    with pytest.raises(ValueError):
        SegmenterConfig(max_run_wide_chars=0)


# --- what the Japanese front end makes of such units ------------------------------------------------


def test_units_starting_and_ending_at_marks_are_read_as_their_words() -> None:
    text = "「はい。」今日は、良い天気ですね！？3時に会いましょう。それでは、また（後で）。"
    units = split_units(text)
    assert units == ["「はい。」", "今日は、良い天気ですね！？", "3時に会いましょう。",
                     "それでは、また（後で）。"]
    assert [phonemize_japanese(unit).words for unit in units] == [
        ("はい",), ("今日", "は", "良い", "天気", "です", "ね"), ("さん時", "に", "会い", "ましょう"),
        ("それでは", "また", "後", "で")]


# --- properties: any split of a text gives the one-pass units --------------------------------------

_VOCABULARY = [
    "今日は", "良い", "天気", "です", "はい", "明日", "3時", "ですか", "あいうえおかきくけこ",
    "。", "、", "！", "？", "」", "「", "』", "（", "）", "…", "！？", "。」", "３．１４", "ｱｲｳ",
    "hello", "etc.", "Dr.", "3,", "2024", "why?", ".", ",", "!", '"', "*",
]  # fmt: skip
_SEPARATORS = ["", "", "", "", "", " ", "\n", " \n"]
_CONFIGS = [
    SegmenterConfig(),
    SegmenterConfig(first_unit_min_words=1, first_unit_max_words=3, max_unit_words=5,
                    max_unit_wide_chars=12, max_run_wide_chars=5),
    SegmenterConfig(first_unit_min_words=3, first_unit_max_words=8, max_unit_words=12,
                    min_unit_chars=5, max_unit_wide_chars=9, max_run_wide_chars=9),
]  # fmt: skip


@st.composite
def texts(draw: st.DrawFn) -> str:
    words = draw(st.lists(st.sampled_from(_VOCABULARY), max_size=50))
    gaps = draw(st.lists(st.sampled_from(_SEPARATORS), min_size=len(words), max_size=len(words)))
    return "".join(w + s for w, s in zip(words, gaps, strict=True))


_ANY_TEXT = st.text(alphabet="あ今。、！？」…a. ,\n", max_size=80)


@settings(max_examples=400, deadline=None)
@given(split_text(texts() | _ANY_TEXT), st.sampled_from(_CONFIGS))
def test_units_do_not_depend_on_how_japanese_text_was_split(
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
def test_units_keep_every_character_in_order_and_respect_the_wide_limit(
    text: str, config: SegmenterConfig
) -> None:
    units = split_units(text, config)
    assert non_space(" ".join(units)) == non_space(text)
    assert all(unit and unit == unit.strip() for unit in units)
    for unit in units:  # over the limit only with one word token (a run and its marks) in it
        tokens = [unit[a:b] for a, b, _ in _tokens(unit, 0, config.max_run_wide_chars)]
        assert (wide(unit) <= config.max_unit_wide_chars
                or sum(any(ch.isalnum() for ch in token) for token in tokens) == 1)
