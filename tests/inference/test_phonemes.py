"""espeak-ng phonemes tied to the text's words."""

from __future__ import annotations

import pytest

from inference.phonemes import NO_WORD, Phonemes, is_phone, phonemize, text_words


def spoken(p: Phonemes) -> dict[str, str]:
    """Each word's phoneme characters, joined."""
    out: dict[str, str] = {}
    for ch, index in zip(p.ipa, p.word_index):
        if index != NO_WORD:
            out[p.words[index]] = out.get(p.words[index], "") + ch
    return out


def test_words_are_tokens_without_edge_punctuation() -> None:
    assert text_words("Hello, world! It's U.S.A. -- ok?") == ["Hello", "world", "It's", "U.S.A", "ok"]


def test_every_word_gets_phonemes_in_order() -> None:
    p = phonemize("It was the best of times, it was the worst of times.")
    assert len(p.word_index) == len(p.ipa)
    labels = [i for i in p.word_index if i != NO_WORD]
    assert labels == sorted(labels)
    assert set(labels) == set(range(len(p.words)))


def test_words_espeak_joins_are_split_again() -> None:
    p = phonemize("a test of the system")
    assert "ʌvðə" in p.ipa  # espeak speaks "of the" as one word
    assert spoken(p)["of"] == "ʌv" and spoken(p)["the"] == "ðə"
    assert spoken(p)["a"] == "ɐ"  # alone, "a" would be the letter name


def test_a_number_word_owns_all_its_spoken_words() -> None:
    assert phonemize("I paid 25 dollars").ipa.count(" ") == 4
    assert spoken(phonemize("I paid 25 dollars"))["25"] == "twˈɛntifˈaɪv"


def test_spaces_and_punctuation_belong_to_no_word() -> None:
    p = phonemize("Hello, world.")
    assert all((i == NO_WORD) == (not is_phone(ch)) for ch, i in zip(p.ipa, p.word_index))


@pytest.mark.parametrize("text", ["", "   ", "..."])
def test_empty_text_is_not_speakable(text: str) -> None:
    p = phonemize(text)
    assert not p.speakable and p.words == ()
