"""One whole text spoken as a stream of audio, for request/response transports.

HTTP APIs that take the whole text in one request and stream the audio back (OpenAI's
``/v1/audio/speech``, ElevenLabs' ``/v1/text-to-speech/{voice}/stream``, a telephony ``speak``
call) all need the same thing: one context on a session of its own, the text submitted at once (the
segmenter still cuts a short first unit, then sentences, so the first audio comes fast), and the
audio handed out chunk by chunk as the scheduler makes it::

    async with Speech(SpeechRequest(text, voice, speed), catalog, session_config, quota) as speech:
        async for chunk in speech:      # float32 mono at speech.sample_rate_hz
            await send(encode(chunk))

Entering admits the context (and may refuse); leaving -- normally, by an exception, or because the
consumer stopped iterating when its client went away -- cancels whatever is still being synthesised,
so no compute is orphaned. What the context spoke is metered on the caller's ``StreamQuota`` once
it ends, completed or cancelled. The transport owns the quota (``open`` / ``close``) and turns the
``TimbreError``s raised here into its wire shape.

Backpressure: the scheduler paces a stream at real time once it is ``max_lead_s`` ahead, so a
healthy consumer holds little; one that stops reading while its connection stays open would make
the queue grow, so past ``SessionConfig.output_buffer_bytes`` of queued samples the speech is
cancelled and iterating raises ``SlowConsumer``.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import AsyncGenerator, AsyncIterator
from dataclasses import dataclass
from types import TracebackType
from typing import Self

from inference.engine import FloatAudio
from session.context import (
    Context,
    ContextAudio,
    ContextError,
    ContextEvent,
    ContextFinished,
)
from session.errors import SlowConsumer, SynthesisFailed, TimbreError
from session.languages import check_language
from session.session import Session, SessionConfig, SessionDefaults
from session.tenancy import StreamQuota
from session.voices import ResolvedVoice, VoiceCatalog

log = logging.getLogger(__name__)

CONTEXT_ID = "speech"
"""The id of the one context a ``Speech`` speaks on (its session is its own)."""


@dataclass(frozen=True)
class SpeechRequest:
    text: str
    """The whole text; at most ``SessionConfig.max_context_chars`` characters."""
    voice: ResolvedVoice
    speed: float = 1.0
    """Engine speaking rate; the caller checks its range (transports differ in what they accept)."""
    pitch: float = 0.0
    """Semitones up (+) or down (-); the caller checks it against ``session.voicing``'s range."""
    language: str | None = None
    """As the client asked (``pt_BR``); ``start`` checks that the voice speaks it. None: the
    voice's own language."""


class Speech:
    """One ``SpeechRequest`` being spoken. Use as an async context manager, then iterate once.

    Lives on the event loop. Raises (all ``TimbreError``s): on entering, ``UnsupportedLanguage``
    when the voice cannot speak ``request.language``, ``QuotaExceeded`` when the text would pass
    the month's characters, ``ServerBusy`` when the scheduler refuses the context,
    ``TextTooLong``; while iterating, ``SlowConsumer``, ``SynthesisFailed`` when the text gave no
    audio at all, or the error ``cancel`` was given (e.g. the voice was revoked).

    A unit that fails after others spoke is skipped (the rest still plays, as on the WebSocket
    path); its error is kept in ``failures`` for the transport to count.
    """

    def __init__(self, request: SpeechRequest, catalog: VoiceCatalog, config: SessionConfig,
                 quota: StreamQuota) -> None:
        self.request = request
        self._config = config
        self._quota = quota
        defaults = SessionDefaults(request.voice, request.speed, request.pitch)
        self._session = Session(catalog, config, defaults, self._on_event,
                                asyncio.get_running_loop())
        self._chunks: deque[FloatAudio] = deque()
        self._queued_bytes = 0
        self._wake = asyncio.Event()
        self._context: Context | None = None
        self._error: TimbreError | None = None
        self.failures: list[TimbreError] = []
        self.finished: ContextFinished | None = None
        """Set once the context has ended (completed or cancelled)."""
        self.samples = 0
        """Samples handed to the consumer so far."""

    @property
    def sample_rate_hz(self) -> int:
        """The rate of every chunk: the voice's engine rate."""
        return self.request.voice.scheduler.engine.sample_rate_hz

    @property
    def context(self) -> Context | None:
        """The context once admitted (for its timings: ``first_unit_at``, ``first_audio_at``)."""
        return self._context

    async def __aenter__(self) -> Self:
        self.start()
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None,
                        exc: BaseException | None, tb: TracebackType | None) -> None:
        self.cancel()

    def start(self) -> None:
        """Check the allowance, admit the context and submit the whole text. Raises as above."""
        if self._context is not None:
            raise RuntimeError("this speech has already started")
        request = self.request
        language = check_language(request.voice, request.language)  # before any allowance is used
        self._quota.allow_text(len(request.text))
        ctx = self._session.start_context(CONTEXT_ID, request.voice, request.speed, request.pitch,
                                          language)
        self._context = ctx
        try:
            ctx.add_text(request.text)
            ctx.close()
        except BaseException:
            ctx.cancel()
            raise

    def cancel(self, error: TimbreError | None = None) -> None:
        """Stop synthesising now (idempotent; nothing happens once finished). With ``error``,
        iterating raises it after the chunks already queued are dropped."""
        if error is not None and self._error is None and self.finished is None:
            self._error = error
            self._drop_queued()
        self._session.close()
        self._wake.set()

    def __aiter__(self) -> AsyncIterator[FloatAudio]:
        return self.chunks()

    async def chunks(self) -> AsyncGenerator[FloatAudio, None]:
        """The audio as it is synthesised; iterate once. Closing the generator early (``aclosing``,
        or a ``break`` inside ``async with``) cancels the rest of the synthesis."""
        if self._context is None:
            raise RuntimeError("enter the speech (or call start) before iterating")
        try:
            while True:
                if self._error is not None:
                    raise self._error
                if self._chunks:
                    chunk = self._chunks.popleft()
                    self._queued_bytes -= chunk.nbytes
                    self.samples += len(chunk)
                    yield chunk
                    continue
                if self.finished is not None:
                    self._check_spoke(self.finished)
                    return
                self._wake.clear()
                await self._wake.wait()
        finally:
            self.cancel()  # the consumer stopped early (client gone): release the compute

    def _check_spoke(self, finished: ContextFinished) -> None:
        if self.samples or finished.reason != "completed":
            return
        if self.failures:
            raise self.failures[0]
        raise SynthesisFailed("the input has nothing to speak")

    # session events, on the event loop

    def _on_event(self, event: ContextEvent) -> None:
        if isinstance(event, ContextAudio):
            self._queue(event.audio)
        elif isinstance(event, ContextError):
            log.warning("speech unit failed: %s", event.error.message)
            self.failures.append(event.error)
        elif isinstance(event, ContextFinished):
            self.finished = event
            self._quota.meter(event.spoken_characters, event.samples / self.sample_rate_hz)
        self._wake.set()

    def _queue(self, audio: FloatAudio) -> None:
        if self._error is not None:
            return
        if self._queued_bytes + audio.nbytes > self._config.output_buffer_bytes:
            self.cancel(SlowConsumer(
                f"client is not reading: {self._queued_bytes} bytes of audio already waiting "
                f"(limit {self._config.output_buffer_bytes})"))
            return
        self._chunks.append(audio)
        self._queued_bytes += audio.nbytes

    def _drop_queued(self) -> None:
        self._chunks.clear()
        self._queued_bytes = 0
