"""Latency figures of one context, from its client-side timeline (``realtime.client.ContextRecord``).

Time to first audio (TTFA) is measured from the moment the server *could* start speaking, not from
the first word: text streams in word by word, and the server's segmenter (``session.segment``) waits
for its first speakable unit (a clause or a few words) before it synthesises anything. So:

* ``ttfa_ms``: from the send of the text that completed the first speakable unit, by the segmenter's
  own rule, to the arrival of the first audio frame. When the text never completes a unit by itself,
  the first ``flush`` or ``close_context`` does (it makes the server speak what it has).
* ``ttfa_from_first_text_ms``: from the send of the first text to the first audio frame (what a
  user of an LLM-paced agent waits, including the time the text took to arrive).
* ``ttfs_ms`` (time to first speech): from the same moment as ``ttfa_ms`` until the first audible
  sample (``SPEECH_DBFS``) can play: no sooner than its frame arrives, nor than the audio before
  it has played from the first frame's arrival on. A voice that opens with silence is heard that
  much later than its first frame; Kokoro's units open with 0.3-0.4 s of it.

Inter-chunk gaps are the times between consecutive audio frames of the context.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from realtime.client import ContextRecord
from realtime.demux import PCM_S16LE
from session.segment import SegmenterConfig, first_unit_ready_at

SPEECH_DBFS = -40.0
"""A 10 ms stretch of audio louder than this (RMS, dB of full scale) is speech, not silence."""

FirstUnitRule = Callable[[Sequence[str]], int | None]
"""Given the text pieces of a context in the order they were sent, the index of the piece whose
arrival completes the first speakable unit, or ``None`` when only a flush would."""


def segmenter_rule(config: SegmenterConfig | None = None) -> FirstUnitRule:
    """The server segmenter's first-unit rule under ``config`` (the server default when ``None``;
    pass the server's own when it is configured otherwise)."""

    def rule(pieces: Sequence[str]) -> int | None:
        return first_unit_ready_at(pieces, config)

    return rule


@dataclass(frozen=True)
class UtteranceTiming:
    """Latency of one context; ``None`` fields where the context got no audio."""

    ttfa_ms: float | None
    ttfa_from_first_text_ms: float | None
    gaps_ms: tuple[float, ...]
    ttfs_ms: float | None
    """Time to first speech (``None`` also where the audio never rises above silence or is not
    16-bit PCM)."""
    first_unit_words: int | None
    """Words sent when the first unit became complete (``None``: a flush or close completed it)."""


def first_unit_sent_at(
    record: ContextRecord, rule: FirstUnitRule
) -> tuple[float | None, int | None]:
    """When the client's text completed the first speakable unit: ``(send time, words sent by
    then)``. Falls back to the first ``flush``/``close_context`` when the text alone never completes
    one (words is then ``None``); ``(None, None)`` when neither happened.
    """
    index = rule([sent.text for sent in record.texts])
    if index is not None:
        sent = record.texts[index]
        return sent.at_s, sent.words_total
    for control in record.controls:
        if control.kind in ("flush", "close_context"):
            return control.at_s, None
    return None, None


def utterance_timing(record: ContextRecord, rule: FirstUnitRule) -> UtteranceTiming:
    """TTFA (both variants) and inter-chunk gaps of ``record``."""
    arrivals = [frame.at_s for frame in record.frames]
    gaps = tuple((b - a) * 1000.0 for a, b in itertools.pairwise(arrivals))
    first_audio = record.first_audio_s
    ready_at, unit_words = first_unit_sent_at(record, rule)
    ttfa = None
    if first_audio is not None and ready_at is not None:
        ttfa = (first_audio - ready_at) * 1000.0
    from_first_text = None
    if first_audio is not None and record.texts:
        from_first_text = (first_audio - record.texts[0].at_s) * 1000.0
    heard = first_speech_s(record)
    ttfs = None if heard is None or ready_at is None else (heard - ready_at) * 1000.0
    return UtteranceTiming(ttfa, from_first_text, gaps, ttfs, unit_words)


def first_speech_s(record: ContextRecord) -> float | None:
    """When the context's first audible sample can play (client clock): the later of its frame's
    arrival and the first frame's arrival plus the audio before it. ``None`` when no 10 ms of
    the audio is louder than ``SPEECH_DBFS`` or the audio is not 16-bit PCM."""
    if record.audio_format != PCM_S16LE or not record.frames:
        return None
    samples = np.frombuffer(bytes(record.audio[: len(record.audio) // 2 * 2]), dtype="<i2")
    step = max(1, record.sample_rate_hz // 100)
    count = len(samples) // step
    if count == 0:
        return None
    blocks = samples[: count * step].astype(np.float64).reshape(count, step) / 32768.0
    loud = np.flatnonzero(np.sqrt((blocks ** 2).mean(axis=1)) > 10 ** (SPEECH_DBFS / 20))
    if loud.size == 0:
        return None
    onset_byte = int(loud[0]) * step * 2
    received = 0
    for frame in record.frames:
        received += frame.n_bytes
        if received > onset_byte:
            return max(frame.at_s, record.frames[0].at_s + onset_byte / 2 / record.sample_rate_hz)
    return None
