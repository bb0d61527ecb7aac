"""One utterance stream of a session: text in, scheduler units out, audio events back.

A context turns text arriving in pieces into speakable units (``session.segment``), normalises each
unit (``session.normalize``), submits them to the scheduler stream of its voice, and turns the
scheduler's events (delivered on the event loop) into session events with context-relative timings.
"""

from __future__ import annotations

import enum
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import numpy as np

from inference.engine import FloatAudio, SynthesisUnit, WordTiming
from inference.scheduler import (
    Scheduler,
    StreamEvent,
    StreamFinished,
    StreamId,
    UnitAudio,
    UnitFailed,
)
from session.errors import ContextClosed, SynthesisFailed, TextTooLong, TimbreError
from session.normalize import normalize
from session.segment import Segmenter, SegmenterConfig
from session.voices import ResolvedVoice
from session.voicing import UnitStage, engine_f0, engine_speed, needs_stage
from session.watermark.stamp import StreamMark


class ContextState(enum.Enum):
    ACTIVE = "active"
    """Accepting text."""
    CLOSING = "closing"
    """No more text; the rest is being spoken."""
    DONE = "done"
    CANCELLED = "cancelled"


_TRANSITIONS = {
    ContextState.ACTIVE: {ContextState.CLOSING, ContextState.CANCELLED, ContextState.DONE},
    ContextState.CLOSING: {ContextState.DONE, ContextState.CANCELLED},
    ContextState.DONE: set(),
    ContextState.CANCELLED: set(),
}


class InvalidContextState(RuntimeError):
    """A bug: a transition the lifecycle does not allow."""


# --- events a context emits (consumed by the transport) ----------------------------------------------


@dataclass(frozen=True)
class ContextAudio:
    context_id: str
    audio: FloatAudio
    sample_rate_hz: int


@dataclass(frozen=True)
class ContextWords:
    context_id: str
    words: tuple[WordTiming, ...]
    """Times in ms from the context's first sample."""


@dataclass(frozen=True)
class ContextError:
    context_id: str
    error: TimbreError


@dataclass(frozen=True)
class ContextFinished:
    context_id: str
    samples: int
    """Samples at the engine's rate."""
    characters: int
    """Characters the client sent."""
    reason: Literal["completed", "cancelled"]
    spoken_characters: int = 0
    """Characters of the units whose audio was fully synthesised (what is metered)."""


ContextEvent = ContextAudio | ContextWords | ContextError | ContextFinished
Emit = Callable[[ContextEvent], None]


@dataclass(frozen=True)
class ContextSettings:
    voice: ResolvedVoice
    speed: float
    max_chars: int
    segmenter: SegmenterConfig
    pitch: float = 0.0
    """Semitones up (+) or down (-), applied by ``session.voicing``."""
    language: str | None = None


class Context:
    """Lives on the event loop. ``stream_id`` is the scheduler stream already admitted for it."""

    def __init__(
        self,
        context_id: str,
        settings: ContextSettings,
        stream_id: StreamId,
        emit: Emit,
        clock: Callable[[], float] = time.monotonic,
        mark: StreamMark | None = None,
    ) -> None:
        self.context_id = context_id
        self.mark = mark
        """Watermarks every chunk before it leaves (see session/watermark); None: unmarked."""
        self.settings = settings
        self.stream_id = stream_id
        self._emit = emit
        self._clock = clock
        self._segmenter = Segmenter(settings.segmenter)
        self.state = ContextState.ACTIVE
        self.characters = 0
        self.samples = 0
        """Samples emitted so far (after the voicing stage)."""
        voice = settings.voice
        self._staged = needs_stage(voice.conversion, settings.pitch)
        self._stage: UnitStage | None = None
        """The current unit's conversion/pitch stage (units arrive one after another)."""
        self._engine_speed = engine_speed(settings.speed, settings.pitch, voice.conversion)
        self._engine_f0 = engine_f0(voice.conversion, voice.scheduler.engine)
        self._unit_offsets: dict[int, int] = {}
        self._unit_chars: list[int] = []
        self.spoken_characters = 0
        self.first_unit_at: float | None = None
        """Monotonic time the first unit was submitted (the start of time-to-first-audio)."""
        self.first_audio_at: float | None = None

    @property
    def scheduler(self) -> Scheduler:
        return self.settings.voice.scheduler

    @property
    def finished(self) -> bool:
        return self.state in (ContextState.DONE, ContextState.CANCELLED)

    def _move(self, new: ContextState) -> None:
        if new not in _TRANSITIONS[self.state]:
            raise InvalidContextState(
                f"context {self.context_id!r} cannot go from {self.state.value} to {new.value}"
            )
        self.state = new

    # client-side operations

    def add_text(self, text: str) -> None:
        """Raises ContextClosed after close/cancel/done, TextTooLong past the character budget."""
        self._require_active()
        if self.characters + len(text) > self.settings.max_chars:
            raise TextTooLong(
                f"context {self.context_id!r} would exceed {self.settings.max_chars} characters",
                context_id=self.context_id,
            )
        self.characters += len(text)
        self._submit(self._segmenter.push(text))

    def flush(self) -> None:
        self._require_active()
        self._submit(self._segmenter.flush())

    def close(self) -> None:
        """No more text: speak the rest, then finish."""
        self._require_active()
        self._submit(self._segmenter.flush())
        self._move(ContextState.CLOSING)
        self.scheduler.end_stream(self.stream_id)

    def cancel(self) -> None:
        """Stop at once; emits ContextFinished(reason=cancelled). Later scheduler output is ignored."""
        if self.finished:
            return
        self._move(ContextState.CANCELLED)
        self.scheduler.cancel(self.stream_id)
        self._emit(ContextFinished(self.context_id, self.samples, self.characters, "cancelled",
                                   self.spoken_characters))

    def _require_active(self) -> None:
        if self.state is not ContextState.ACTIVE:
            raise ContextClosed(
                f"context {self.context_id!r} is {self.state.value}", context_id=self.context_id
            )

    def _submit(self, units: list[str]) -> None:
        # digits are read per language: only English is rewritten ("3" -> "three"); None is the
        # voice's own language, English for every voice today
        language = self.settings.language or "en"
        for text in units:
            spoken = normalize(text, language)
            if not spoken.strip():
                continue
            if self.first_unit_at is None:
                self.first_unit_at = self._clock()
            self.scheduler.submit(
                self.stream_id,
                SynthesisUnit(spoken, self.settings.voice.engine_voice, self._engine_speed,
                              language=self.settings.language, f0=self._engine_f0),
            )
            self._unit_chars.append(len(text))

    # scheduler-side events (on the event loop)

    def on_stream_event(self, event: StreamEvent) -> None:
        if self.finished:
            return  # output of a tick that was in flight when we cancelled
        if isinstance(event, UnitAudio):
            self._on_audio(event)
        elif isinstance(event, UnitFailed):
            self._stage = None  # the failed unit's held-back tail is dropped with it
            error = SynthesisFailed(
                f"could not speak part of the text ({event.code}): {event.message}",
                context_id=self.context_id,
            )
            self._emit(ContextError(self.context_id, error))
        elif isinstance(event, StreamFinished):
            self._move(ContextState.DONE)
            self._emit(ContextFinished(self.context_id, self.samples, self.characters,
                                       "completed", self.spoken_characters))

    def _on_audio(self, event: UnitAudio) -> None:
        offset = self._unit_offsets.setdefault(event.unit_index, self.samples)
        rate = self.scheduler.engine.sample_rate_hz
        audio, time_ratio = event.audio, 1.0
        if self._staged:
            if self._stage is None:
                self._stage = UnitStage(self.settings.voice.conversion, self.settings.pitch, rate)
            time_ratio = self._stage.time_ratio
            audio = self._stage.feed(event.audio)
            if event.unit_finished:
                audio = np.concatenate([audio, self._stage.flush()])
                self._stage = None
        if len(audio):
            if self.first_audio_at is None:
                self.first_audio_at = self._clock()
            self.samples += len(audio)
            if self.mark is not None:
                audio = self.mark.process(audio)
            self._emit(ContextAudio(self.context_id, audio, rate))
        if event.words:
            shift_ms = 1000.0 * offset / rate
            words = tuple(
                WordTiming(w.word, w.start_ms / time_ratio + shift_ms,
                           w.end_ms / time_ratio + shift_ms)
                for w in event.words
            )
            self._emit(ContextWords(self.context_id, words))
        if event.unit_finished:
            self._unit_offsets.pop(event.unit_index, None)
            self.spoken_characters += self._unit_chars[event.unit_index]
