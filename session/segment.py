"""Streaming segmentation: text arriving in arbitrary pieces (LLM tokens) in, speakable units out.

A unit is what one engine request speaks. The first unit of an utterance is kept short so audio can
start early: it ends at the first sentence end, line break, or clause boundary
(``, ; : — – 、``) with at least ``first_unit_min_words`` words, or after ``first_unit_max_words``
complete words, whichever comes first. Later units are whole sentences or lines; one that reaches
``max_unit_words`` words is cut at its last clause boundary, or at that word count when it has
none.

Words are whitespace-separated tokens; a word is complete once whitespace follows it ("Hel" is not,
nor is "3" while ".14" may still come). Units are cut only between tokens, so the units hold every
non-space character of the text in order, and joining them with spaces gives back the words of any
text without the full-width marks below. Every cut is decided from the text alone, never from how it
was split into pieces: a decision that needs more text (is "etc." followed by a capital? is "3,"
followed by a digit, as in "March 3, 2024"?) waits for it. So ``push`` over any split of a text,
then ``flush``, returns the same units as ``split_units`` on the whole text.

Japanese has no spaces, so a whitespace token can be a whole reply. A token therefore also ends
after a full-width sentence end ``。！？`` or comma ``、`` together with the marks right after it
(``！？``, ``…``, closing brackets and quotes: ``。」``, ``？！``), once a character other than those
follows; the token is then a sentence end or a clause boundary like ``.`` and ``,`` before
whitespace. As a last resort, a run with none of those marks is cut after ``max_run_wide_chars``
wide (CJK) characters, mid-word. Wide characters are also what limits a unit's length
(``max_unit_wide_chars``): words do not measure unspaced text, and Kokoro fails on a Japanese unit
over about 200 characters (510 phonemes). Text with neither wide characters nor these marks is cut
by the word rules alone. Not handled: half-width ``!?`` and ``．，`` (also decimal and thousands
marks) end nothing without whitespace, and a quoted sentence (``「はい。」と言った。``) is cut after
its closing bracket.

A sentence ends at ``. ! ? …`` (possibly followed by closing quotes or brackets) followed by
whitespace, except after titles and Latin abbreviations (Mr., Dr., St., e.g., vs., ...), single
initials ("J."), and a list number at the start of a unit ("1."). After "etc.", "Inc." or a dotted
acronym ("U.S.", "p.m.") it ends only if the next word starts with a capital letter. Decimals, URLs
and e-mail addresses never end a sentence because no whitespace follows their inner dots.

Cost: a push reads only the text that is not settled yet (usually its own text and the last word
before it), so streaming a text costs time linear in its length.
"""

from __future__ import annotations

import enum
import re
import unicodedata
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class SegmenterConfig:
    first_unit_min_words: int = 2
    """A clause boundary ends the first unit only after at least this many words (a sentence end or
    a line break ends it at any length: "Sure!")."""
    first_unit_max_words: int = 6
    """The first unit ends once it holds this many complete words, punctuation or not."""
    max_unit_words: int = 30
    """A later unit (a sentence) that reaches this many words is cut (at a clause if it has one)."""
    min_unit_chars: int = 2
    """A boundary is not taken while the unit would be shorter than this (e.g. a stray "a,")."""
    max_unit_wide_chars: int = 120
    """A unit holds at most this many wide (CJK) characters, unless one token alone has more: the
    token that would take it past is left for the next unit, which is cut at the unit's last clause
    boundary if it has one. Spaced text is measured in words; this bounds Japanese."""
    max_run_wide_chars: int = 80
    """A token holds at most this many wide characters (plus the marks right after the last one):
    unspaced text with no ``。！？、`` is cut there, mid-word, rather than never."""

    def __post_init__(self) -> None:
        if not 1 <= self.first_unit_min_words <= self.first_unit_max_words:
            raise ValueError("need 1 <= first_unit_min_words <= first_unit_max_words")
        if self.first_unit_max_words > self.max_unit_words:
            raise ValueError("need first_unit_max_words <= max_unit_words")
        if self.min_unit_chars < 0:
            raise ValueError("min_unit_chars must be >= 0")
        if not 1 <= self.max_run_wide_chars <= self.max_unit_wide_chars:
            raise ValueError("need 1 <= max_run_wide_chars <= max_unit_wide_chars")


class _Kind(enum.Enum):
    NONE = "none"
    CLAUSE = "clause"
    SENTENCE = "sentence"
    UNDECIDED = "undecided"
    """The boundary depends on the next word, which has not arrived yet."""


_CHUNK = re.compile(r"\S+")
_FULL_STOPS = "。！？｡"
_FULL_COMMAS = "、､"
_FULL_BREAKS = frozenset(_FULL_STOPS + _FULL_COMMAS)
_TRAILER_CHARS = _FULL_STOPS + _FULL_COMMAS + "!?…‥」』）］｝】〕〗〙〉》”’\"')]}»*_"
_TRAILERS = frozenset(_TRAILER_CHARS)
"""What stays with a full-width break before the token ends: more breaks, ``!?``, ellipses,
closing brackets and quotes. ``．`` and ``，`` are left out: they are also full-width decimal and
thousands separators (``３．１４``)."""
_CLOSERS = "\"')]}»”’*_"
_OPENERS = "\"'([{«“‘*_"
_SENTENCE_END = ".!?…"
_CLAUSE_END = ",;:—–"
_DASHES = frozenset({"-", "--"})
_NEVER_END = frozenset(
    {"mr.", "mrs.", "ms.", "dr.", "prof.", "st.", "mt.", "sr.", "rev.", "gen.", "capt.",
     "vs.", "e.g.", "i.e.", "cf.", "approx.", "fig.", "no."}
)  # fmt: skip
_MAYBE_END = frozenset({"etc.", "inc.", "ltd.", "co.", "corp.", "jr."})
_ACRONYM = re.compile(r"(?:[a-z]\.){2,}")
_INITIAL = re.compile(r"[A-Z]\.")
_LIST_NUMBER = re.compile(r"\d{1,3}\.")


def _is_wide(ch: str) -> bool:
    return unicodedata.east_asian_width(ch) in ("W", "F")


def _tokens(text: str, pos: int, max_run: int) -> Iterator[tuple[int, int, int]]:
    """``(start, end, wide characters)`` of each token of ``text`` from ``pos`` (which must be a
    token boundary: the start, a token's end, or whitespace). A token ends at whitespace, after a
    full-width break and the trailers right after it, or after ``max_run`` wide characters and
    their trailers; where it ends depends only on the text up to its end and the character after
    it, so tokens never change as text is appended (except the one touching the end)."""
    for chunk in _CHUNK.finditer(text, pos):
        start, stop = chunk.span()
        if chunk.group().isascii():  # no full-width marks, no wide characters: the common case
            yield start, stop, 0
            continue
        wide, i = 0, start
        while i < stop:
            ch = text[i]
            i += 1
            wide += _is_wide(ch)
            if ch not in _FULL_BREAKS and wide < max_run:
                continue
            while i < stop and text[i] in _TRAILERS:
                wide += _is_wide(text[i])
                i += 1
            if i < stop:
                yield start, i, wide
                start, wide = i, 0
        yield start, stop, wide


def _full_width_kind(token: str) -> _Kind | None:
    """The boundary after a token that ends with full-width marks (``None``: it does not)."""
    marks = token[len(token.rstrip(_TRAILER_CHARS)) :]
    if any(ch in _FULL_STOPS for ch in marks):
        return _Kind.SENTENCE
    if any(ch in _FULL_COMMAS for ch in marks):
        return _Kind.CLAUSE
    return None


def _is_word(token: str) -> bool:
    return any(ch.isalnum() for ch in token)


def _first_letter(token: str) -> str | None:
    """The first character of a word past any opening quotes; ``None`` while only those arrived."""
    return token.lstrip(_OPENERS)[:1] or None


def _sentence_kind(word: str, next_char: str | None, first_in_unit: bool) -> _Kind:
    """``word`` ends with sentence punctuation; is it really the end of a sentence?"""
    if not word.endswith("."):
        return _Kind.SENTENCE
    lower = word.lower()
    if lower in _NEVER_END or _INITIAL.fullmatch(word):
        return _Kind.NONE
    if first_in_unit and _LIST_NUMBER.fullmatch(word):
        return _Kind.NONE
    if lower in _MAYBE_END or _ACRONYM.fullmatch(lower):
        if next_char is None:
            return _Kind.UNDECIDED
        return _Kind.SENTENCE if next_char.isupper() else _Kind.NONE
    return _Kind.SENTENCE


def _classify(token: str, next_char: str | None, first_in_unit: bool) -> _Kind:
    """The boundary after the complete ``token``; ``next_char`` starts the next word (``None``:
    not arrived yet, or end of text)."""
    full_width = _full_width_kind(token)
    if full_width is not None:
        return full_width
    core = token.rstrip(_CLOSERS)
    if not core:
        return _Kind.NONE
    last = core[-1]
    if last in _SENTENCE_END:
        return _sentence_kind(core.lstrip(_OPENERS), next_char, first_in_unit)
    if last == "," and core[:-1][-1:].isdigit():
        if next_char is None:
            return _Kind.UNDECIDED
        return _Kind.NONE if next_char.isdigit() else _Kind.CLAUSE  # "March 3, 2024", "1, 2, 3"
    if last in _CLAUSE_END or core in _DASHES:
        return _Kind.CLAUSE
    return _Kind.NONE


@dataclass
class _Scan:
    """How far the unit at the start of the buffer has been read: the tokens before ``resume`` are
    settled as no place to cut, whatever text comes later. Lets each push read only new text."""

    resume: int = 0
    words: int = 0
    wide: int = 0
    last_clause: int | None = None


def _find_cut(
    text: str, *, first: bool, config: SegmenterConfig, final: bool, scan: _Scan
) -> int | None:
    """Where the unit at the start of ``text`` (no leading whitespace) ends, or ``None`` while that
    cannot be decided yet; advances ``scan`` past the tokens it settles.

    ``first``: the unit is the first of its utterance. ``final``: no more text will come. A result
    never changes when more text is appended (that is what makes segmentation split-independent).
    """
    tokens = _tokens(text, scan.resume, config.max_run_wide_chars)
    token = next(tokens, None)
    while token is not None:
        start, end, token_wide = token
        if end == len(text) and not final:
            return None  # the word may still grow
        following = next(tokens, None)
        word = text[start:end]
        words = scan.words + _is_word(word)
        wide = scan.wide + token_wide
        if wide > config.max_unit_wide_chars and scan.words:  # leave this token to the next unit
            return scan.last_clause if scan.last_clause is not None else scan.resume
        last_clause = scan.last_clause
        if words and end >= config.min_unit_chars:
            next_word = text[following[0] : following[1]] if following else None
            next_char = _first_letter(next_word) if next_word else None
            kind = _classify(word, next_char, start == 0)
            if first and (
                words >= config.first_unit_max_words
                or (kind is _Kind.CLAUSE and words >= config.first_unit_min_words)
            ):
                return end
            gap = text[end : following[0] if following else len(text)]
            if kind is _Kind.SENTENCE or "\n" in gap:
                return end
            if kind is _Kind.UNDECIDED or (following is None and not final):
                return None  # waiting for the next word, or a line break before it
            if not first:
                last_clause = end if kind is _Kind.CLAUSE else last_clause
                if words >= config.max_unit_words:
                    return last_clause if last_clause is not None else end
        scan.resume, scan.words, scan.wide, scan.last_clause = end, words, wide, last_clause
        token = following
    return None


class Segmenter:
    """Turns one utterance stream's text pieces into speakable units. Not thread-safe; no I/O.

    ``push`` returns the units its text completed; ``flush`` returns the rest and starts a new
    utterance (whose first unit is again cut early). Units are stripped and never empty.
    """

    def __init__(self, config: SegmenterConfig | None = None) -> None:
        self.config = config if config is not None else SegmenterConfig()
        self._buffer = ""
        """Text not yet returned in a unit; never starts with whitespace."""
        self._first = True
        self._scan = _Scan()

    @property
    def pending(self) -> str:
        """Text received but not yet returned in a unit."""
        return self._buffer

    @property
    def awaiting_first_unit(self) -> bool:
        """True until the first unit of the current utterance has been returned."""
        return self._first

    def push(self, text: str) -> list[str]:
        """Add ``text`` (any piece: a token, a word, many sentences); returns completed units."""
        self._buffer += text if self._buffer else text.lstrip()
        return self._cut(final=False)

    def flush(self) -> list[str]:
        """Return everything buffered (the last unit may end mid-word) and end the utterance."""
        units = self._cut(final=True)
        rest = self._buffer.strip()
        if rest:
            units.append(rest)
        self._buffer = ""
        self._first = True
        self._scan = _Scan()
        return units

    def _cut(self, *, final: bool) -> list[str]:
        units: list[str] = []
        while True:
            end = _find_cut(
                self._buffer, first=self._first, config=self.config, final=final, scan=self._scan
            )
            if end is None:
                break
            units.append(self._buffer[:end].strip())
            self._buffer = self._buffer[end:].lstrip()
            self._first = False
            self._scan = _Scan()
        return units


def split_units(text: str, config: SegmenterConfig | None = None) -> list[str]:
    """The units of ``text`` as one utterance: what any streaming split of it yields in total."""
    segmenter = Segmenter(config)
    return segmenter.push(text) + segmenter.flush()


def first_unit_ready_at(chunks: Iterable[str], config: SegmenterConfig | None = None) -> int | None:
    """Index of the chunk whose arrival lets the server start speaking: the first push of these
    chunks, in order, that completes the first unit. ``None`` when only a flush would.

    For load-test clients, to measure time to first audio from the moment the server could start.
    """
    segmenter = Segmenter(config)
    for index, chunk in enumerate(chunks):
        if segmenter.push(chunk):
            return index
    return None


def first_unit_end(words: Sequence[str], config: SegmenterConfig | None = None) -> int | None:
    """``first_unit_ready_at`` for words sent one by one, each with the whitespace after it (as
    ``realtime.client.split_words`` sends them): the index of the word whose arrival completes the
    first unit, or ``None`` when only a flush (or the end of the context) would.

    This is usually the unit's last word; it is the next word when the cut depended on how that word
    starts ("... etc. Then", "March 3, 2024").
    """
    return first_unit_ready_at((word + " " for word in words), config)
