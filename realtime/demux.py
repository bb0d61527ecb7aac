"""Files the server messages of one native-protocol session under their context, with the times
they arrived, next to what the client sent: each context's whole timeline (``ContextRecord``).
Pure: the caller (``realtime.client.StreamClient``, tests) passes parsed messages and times.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from realtime.protocol import (
    Alignment,
    AudioFrame,
    ContextDone,
    ContextStarted,
    ErrorMessage,
    Ready,
    ServerMessage,
    WordTime,
)

PCM_S16LE = "pcm_s16le"
_BYTES_PER_SAMPLE = {PCM_S16LE: 2}
REFUSING_CODES = frozenset({
    "server_busy", "too_many_contexts", "unknown_voice", "text_too_long", "unsupported_language",
    "voice_unavailable", "bad_message", "invalid_value", "quota_exceeded", "forbidden"})
"""Codes that, for a context not yet started, mean the server will never start it: the text that
would have started it was refused (its voice, language, options or quota), so no
``context_done`` will come and a client waiting for one would wait for ever."""


# -- records --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class TextSent:
    """A ``text`` message left the client at ``at_s``; ``words_total`` counts the context's words
    sent so far, this message included."""

    at_s: float
    text: str
    words_total: int


@dataclass(frozen=True)
class ControlSent:
    """A ``flush``, ``close_context`` or ``cancel`` message left the client at ``at_s``."""

    at_s: float
    kind: str


@dataclass(frozen=True)
class FrameArrived:
    """An audio frame of ``n_bytes`` payload bytes arrived at ``at_s``."""

    at_s: float
    sequence: int
    n_bytes: int


@dataclass(frozen=True)
class ErrorEvent:
    """An error at ``at_s``: from the server (its ``code``) or seen by the client
    (``sequence_gap``, ``audio_after_done``, ``bad_server_message``)."""

    at_s: float
    code: str
    message: str


@dataclass
class ContextRecord:
    """Everything one context's timeline holds, on the client's monotonic clock (seconds)."""

    context_id: str
    sample_rate_hz: int
    audio_format: str = PCM_S16LE
    texts: list[TextSent] = field(default_factory=list)
    controls: list[ControlSent] = field(default_factory=list)
    frames: list[FrameArrived] = field(default_factory=list)
    audio: bytearray = field(default_factory=bytearray)
    words: list[WordTime] = field(default_factory=list)
    errors: list[ErrorEvent] = field(default_factory=list)
    started: ContextStarted | None = None
    done: ContextDone | None = None
    done_at_s: float | None = None
    refused: bool = False
    """The server rejected the context before starting it (e.g. ``server_busy``): no
    ``context_done`` will follow."""

    @property
    def finished(self) -> bool:
        """True once nothing more will come for this context."""
        return self.done is not None or self.refused

    @property
    def word_count(self) -> int:
        return self.texts[-1].words_total if self.texts else 0

    @property
    def first_audio_s(self) -> float | None:
        return self.frames[0].at_s if self.frames else None

    @property
    def bytes_per_sample(self) -> int | None:
        return _BYTES_PER_SAMPLE.get(self.audio_format)

    def frame_duration_s(self, frame: FrameArrived) -> float:
        """How long ``frame`` plays; raises ``ValueError`` for a format without a fixed sample size."""
        width = self.bytes_per_sample
        if width is None:
            raise ValueError(f"no fixed frame duration for format {self.audio_format!r}")
        return frame.n_bytes / width / self.sample_rate_hz

    @property
    def samples(self) -> int:
        width = self.bytes_per_sample
        return len(self.audio) // width if width else 0

    @property
    def audio_s(self) -> float:
        return self.samples / self.sample_rate_hz


# -- the pure demultiplexer -----------------------------------------------------------------------


class Demux:
    """Files parsed server messages under their context; pure (the caller passes the times).

    ``sample_rate_hz`` / ``audio_format`` are the session defaults until ``ready`` says otherwise; a
    ``context_started`` sets its context's own. Messages for contexts the client never named still
    get a record, so nothing is dropped.
    """

    def __init__(self, sample_rate_hz: int = 24000, audio_format: str = PCM_S16LE) -> None:
        self.sample_rate_hz = sample_rate_hz
        self.audio_format = audio_format
        self.ready: Ready | None = None
        self.records: dict[str, ContextRecord] = {}
        self.session_errors: list[ErrorEvent] = []
        self.close_code: int | None = None
        self.closed_at_s: float | None = None

    def record(self, context_id: str) -> ContextRecord:
        """The record of ``context_id``, created on first use."""
        record = self.records.get(context_id)
        if record is None:
            record = ContextRecord(context_id, self.sample_rate_hz, self.audio_format)
            self.records[context_id] = record
        return record

    def note_text(self, context_id: str, text: str, at_s: float) -> None:
        record = self.record(context_id)
        words = record.word_count + len(text.split())
        record.texts.append(TextSent(at_s=at_s, text=text, words_total=words))

    def note_control(self, context_id: str, kind: str, at_s: float) -> None:
        self.record(context_id).controls.append(ControlSent(at_s=at_s, kind=kind))

    def feed(self, message: ServerMessage, at_s: float) -> ContextRecord | None:
        """Apply one server message; returns the record it touched (``None`` for session-level)."""
        if isinstance(message, AudioFrame):
            return self._audio(message, at_s)
        if isinstance(message, Ready):
            self.ready = message
            self.sample_rate_hz = message.sample_rate
            self.audio_format = message.format
            return None
        if isinstance(message, ContextStarted):
            record = self.record(message.context_id)
            record.started = message
            record.sample_rate_hz = message.sample_rate
            record.audio_format = message.format
            return record
        if isinstance(message, Alignment):
            record = self.record(message.context_id)
            record.words.extend(message.words)
            return record
        if isinstance(message, ContextDone):
            record = self.record(message.context_id)
            record.done = message
            record.done_at_s = at_s
            return record
        if isinstance(message, ErrorMessage):
            return self._error(message, at_s)
        raise TypeError(f"unexpected server message {message!r}")

    def connection_lost(self, close_code: int | None, at_s: float) -> None:
        self.close_code = close_code
        self.closed_at_s = at_s

    def _audio(self, frame: AudioFrame, at_s: float) -> ContextRecord:
        record = self.record(frame.context_id)
        expected = len(record.frames)
        if frame.sequence != expected:
            record.errors.append(
                ErrorEvent(at_s, "sequence_gap", f"frame {frame.sequence} where {expected} was due")
            )
        if record.done is not None:
            record.errors.append(ErrorEvent(at_s, "audio_after_done", "audio after context_done"))
        record.frames.append(FrameArrived(at_s, frame.sequence, len(frame.payload)))
        record.audio += frame.payload
        return record

    def _error(self, error: ErrorMessage, at_s: float) -> ContextRecord | None:
        event = ErrorEvent(at_s, error.code, error.message)
        if not error.context_id:
            self.session_errors.append(event)
            return None
        record = self.record(error.context_id)
        record.errors.append(event)
        if error.code in REFUSING_CODES and record.started is None and record.done is None:
            record.refused = True
        return record

    def errors_by_code(self) -> dict[str, int]:
        """How many errors of each code this session has seen, session-level and per context."""
        counts: dict[str, int] = {}
        events = list(self.session_errors)
        for record in self.records.values():
            events.extend(record.errors)
        for event in events:
            counts[event.code] = counts.get(event.code, 0) + 1
        return counts
