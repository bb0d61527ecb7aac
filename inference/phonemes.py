"""English phonemes from the espeak-ng that ``piper-tts`` bundles, each tied to the word it speaks.

espeak-ng is a C library with one global state (current voice, output buffers), so every espeak-ng
call in the process must go through this module, which serialises them with one lock (engines on
different model threads share it; a call takes well under a millisecond per word).

Tying phonemes to words: espeak-ng separates words with spaces but sometimes joins short function
words ("of the" -> ``ʌvðə``, "in the" -> ``ɪnðɪʲ``), splits one token into several words ("25" ->
``twˈɛnti fˈaɪv``) and changes a word's sound in context. So each text word is also phonemised on
its own, and the whole-text phonemes are aligned to those with ``difflib`` (longest common
matching blocks, in order). A phoneme that finds no partner takes the word of its neighbours in
the same espeak word. This is an approximation: inside a joined word the boundary is where the
sounds match best, and a word espeak does not pronounce at all gets no phonemes.
"""

from __future__ import annotations

import difflib
import re
import threading
from dataclasses import dataclass

from piper import espeakbridge
from piper.phonemize_espeak import ESPEAK_DATA_DIR

ESPEAK_VOICE = "en-us"

PUNCTUATION = frozenset(",.?!:;")
"""Clause terminators espeak-ng reports; they stay in the phonemes (Piper reads them as pauses)."""

NO_WORD = -1
"""``Phonemes.word_index`` of spaces and punctuation."""

_EDGE_PUNCTUATION = re.compile(r"^[\W_]+|[\W_]+$")
_espeak_lock = threading.Lock()
_espeak_ready = False


@dataclass(frozen=True)
class Phonemes:
    """The phonemes of one text, each tied to the text word it speaks.

    ``ipa`` is espeak-ng's IPA for the whole text: words separated by spaces, each clause followed
    by its punctuation, clauses joined by a space. ``words`` are the text's whitespace-separated
    tokens that hold a letter or digit, with leading and trailing punctuation stripped.
    ``word_index[i]`` is the index in ``words`` of the word ``ipa[i]`` belongs to, or ``NO_WORD``
    for spaces and punctuation; it never decreases along the text.
    """

    ipa: str
    words: tuple[str, ...]
    word_index: tuple[int, ...]

    @property
    def speakable(self) -> bool:
        """Whether there is at least one phoneme to speak (not only spaces and punctuation)."""
        return any(is_phone(ch) for ch in self.ipa)


def phonemize(text: str, voice: str = ESPEAK_VOICE) -> Phonemes:
    """Phonemise already-normalised text with espeak-ng ``voice``. Never raises for odd text:
    empty or unspeakable text gives ``Phonemes`` whose ``speakable`` is False."""
    ipa = espeak_ipa(text, voice)
    words = text_words(text)
    word_ipas = [espeak_ipa(word, voice) for word in words]
    return Phonemes(ipa, tuple(words), tuple(_tie_to_words(ipa, word_ipas)))


def espeak_ipa(text: str, voice: str = ESPEAK_VOICE) -> str:
    """espeak-ng's IPA for ``text``: clauses with their punctuation, joined by a space."""
    with _espeak_lock:
        _ensure_espeak()
        espeakbridge.set_voice(voice)
        clauses = espeakbridge.get_phonemes(text)
    # espeak wraps foreign words in language-switch flags such as "(fr)"; Piper drops them too.
    parts = [re.sub(r"\([^)]+\)", "", phonemes) + terminator for phonemes, terminator, _ in clauses]
    return " ".join(part for part in parts if part)


def text_words(text: str) -> list[str]:
    """The words of ``text`` as ``Phonemes.words`` reports them."""
    stripped = (_EDGE_PUNCTUATION.sub("", token) for token in text.split())
    return [word for word in stripped if any(ch.isalnum() for ch in word)]


def is_phone(ch: str) -> bool:
    """Whether one IPA character is part of a word's sound (not a space or punctuation)."""
    return not ch.isspace() and ch not in PUNCTUATION


def _ensure_espeak() -> None:
    global _espeak_ready
    if not _espeak_ready:
        espeakbridge.initialize(str(ESPEAK_DATA_DIR))
        _espeak_ready = True


def _tie_to_words(ipa: str, word_ipas: list[str]) -> list[int]:
    """Per character of ``ipa``, the index of the word (in ``word_ipas``) it belongs to."""
    phone_pos = [i for i, ch in enumerate(ipa) if is_phone(ch)]
    reference = [(ch, word) for word, w_ipa in enumerate(word_ipas) for ch in w_ipa if is_phone(ch)]
    matcher = difflib.SequenceMatcher(
        None, [ipa[i] for i in phone_pos], [ch for ch, _ in reference], autojunk=False
    )
    labels = [NO_WORD] * len(ipa)
    for a, b, size in matcher.get_matching_blocks():
        for k in range(size):
            labels[phone_pos[a + k]] = reference[b + k][1]
    _fill_within_espeak_words(ipa, labels)
    _fill_across(ipa, labels, len(word_ipas))
    return labels


_ESPEAK_WORD = re.compile(r"[^\s" + re.escape("".join(sorted(PUNCTUATION))) + r"]+")


def _fill_within_espeak_words(ipa: str, labels: list[int]) -> None:
    """Unmatched characters take the word of the nearest matched one before them in the same
    espeak word (or, at its start, the first matched one after them)."""
    for span in _ESPEAK_WORD.finditer(ipa):
        known = [labels[i] for i in range(span.start(), span.end()) if labels[i] != NO_WORD]
        current = known[0] if known else NO_WORD
        for i in range(span.start(), span.end()):
            if labels[i] == NO_WORD:
                labels[i] = current
            current = labels[i]


def _fill_across(ipa: str, labels: list[int], n_words: int) -> None:
    """Give espeak words with no matched character at all a word: the text words left without
    phonemes between their neighbours, in order ("a" alone is the letter name ``ˈeɪ``, in a
    sentence ``ɐ``); when there is none, the word spoken before them (or after, at the start)."""
    spans = [(m.start(), m.end()) for m in _ESPEAK_WORD.finditer(ipa)]
    k = 0
    while k < len(spans):
        if labels[spans[k][0]] != NO_WORD:
            k += 1
            continue
        run_end = k
        while run_end < len(spans) and labels[spans[run_end][0]] == NO_WORD:
            run_end += 1
        before = labels[spans[k - 1][1] - 1] if k > 0 else NO_WORD
        after = labels[spans[run_end][0]] if run_end < len(spans) else n_words
        for offset, (start, end) in enumerate(spans[k:run_end]):
            labels[start:end] = [_gap_word(before, after, offset)] * (end - start)
        k = run_end


def _gap_word(before: int, after: int, offset: int) -> int:
    """The word for the ``offset``-th unmatched espeak word between words ``before`` and ``after``."""
    if after - before > 1:
        return min(before + 1 + offset, after - 1)
    return before if before != NO_WORD else after
