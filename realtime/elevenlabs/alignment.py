"""Character timings (ElevenLabs' ``alignment``) from the engine's word timings.

The engine times words of the normalised text; ElevenLabs clients want every character the client
sent, timed. ``CharAligner`` walks the client's text in order: the n-th word timing times the n-th
whitespace-separated token (with the whitespace after it, which lasts 0 ms at the word's end), the
token's characters sharing the word's span evenly. Whatever is left when the context ends (text the
normaliser merged into fewer words) is emitted at the end with 0 ms durations, so the chars of all
of a context's chunks always add up exactly to its text. Where normalisation splits one token into
several words ("$5" -> "five dollars"), timings drift later by a word until the next chunk; they
never go backwards.
"""

from __future__ import annotations

from collections.abc import Iterable

from inference.engine import WordTiming
from realtime.elevenlabs.protocol import CharAlignment


class CharAligner:
    def __init__(self) -> None:
        self._text = ""
        self._cursor = 0

    def add_text(self, text: str) -> None:
        self._text += text

    def align(self, words: Iterable[WordTiming], chunk_start_ms: float) -> CharAlignment | None:
        """Chars of the next ``words`` (context-relative ms), timed from ``chunk_start_ms``."""
        chars: list[str] = []
        starts: list[int] = []
        durations: list[int] = []
        for word in words:
            token = self._next_token()
            if not token:
                break
            start = max(0.0, word.start_ms - chunk_start_ms)
            end = max(start, word.end_ms - chunk_start_ms)
            letters = len(token.rstrip())
            step = (end - start) / max(1, letters)
            for i, char in enumerate(token):
                at = start + step * i if i < letters else end
                chars.append(char)
                starts.append(round(at))
                durations.append(round(step) if i < letters else 0)
        return CharAlignment(tuple(chars), tuple(starts), tuple(durations)) if chars else None

    def rest(self, at_ms: float) -> CharAlignment | None:
        """What no word timing covered, all at ``at_ms`` (call once the context has ended)."""
        tail = self._text[self._cursor:]
        self._cursor = len(self._text)
        if not tail:
            return None
        return CharAlignment(tuple(tail), (round(at_ms),) * len(tail), (0,) * len(tail))

    def _next_token(self) -> str:
        """Leading whitespace (only at the very start), a token, and the whitespace after it."""
        text, i = self._text, self._cursor
        if i == 0:
            while i < len(text) and text[i].isspace():
                i += 1
        while i < len(text) and not text[i].isspace():
            i += 1
        while i < len(text) and text[i].isspace():
            i += 1
        token, self._cursor = text[self._cursor:i], i
        return token


def merge(first: CharAlignment | None, second: CharAlignment | None) -> CharAlignment | None:
    if first is None:
        return second
    if second is None:
        return first
    return CharAlignment(first.chars + second.chars,
                         first.char_start_times_ms + second.char_start_times_ms,
                         first.char_durations_ms + second.char_durations_ms)


def fit(alignment: CharAlignment | None, span_ms: float) -> CharAlignment | None:
    """``alignment`` with its last character lasting to ``span_ms``, the length of the audio
    chunk it rides on, so that a message's alignment spans exactly its audio.

    Clients rebuild the time line from per-chunk alignments: Pipecat advances its word clock by
    each message's span (last start + duration), so a span shorter than the audio (the engine's
    chunks end mid-word, after the last word they time) would make later words ever earlier."""
    if alignment is None or not alignment.chars:
        return alignment
    last_start = alignment.char_start_times_ms[-1]
    durations = alignment.char_durations_ms[:-1] + (max(0, round(span_ms) - last_start),)
    return CharAlignment(alignment.chars, alignment.char_start_times_ms, durations)
