"""A client's persistent session: its contexts, defaults and limits, whatever the transport.

Transports (native WebSocket, ElevenLabs-compatible, WebRTC, telephony) parse their wire format into
calls on a ``Session`` and serialise the ``ContextEvent``s it emits. The session lives on the event
loop; scheduler events reach it through ``loop.call_soon_threadsafe``.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field, replace

from inference.scheduler import Refusal, StreamEvent
from session.context import Context, ContextEvent, ContextFinished, ContextSettings, Emit
from session.errors import ServerBusy, TooManyContexts, UnknownContext
from session.segment import SegmenterConfig
from session.voices import ResolvedVoice, VoiceCatalog
from session.watermark import stamp


@dataclass(frozen=True)
class SessionConfig:
    max_contexts: int = 8
    """Contexts open at once per session."""
    max_context_chars: int = 5000
    inactivity_timeout_s: float = 180.0
    """A session with no active context and no client message for this long is closed."""
    output_buffer_bytes: int = 4 * 1024 * 1024
    """Audio and messages queued for a client that is not reading; beyond it: slow_consumer."""
    default_voice: str = "piper:joe"
    segmenter: SegmenterConfig = field(default_factory=SegmenterConfig)


@dataclass(frozen=True)
class SessionDefaults:
    voice: ResolvedVoice
    speed: float = 1.0
    pitch: float = 0.0
    """Semitones up (+) or down (-); see ``session.voicing``."""
    language: str | None = None
    """Already checked for ``voice`` (``session.languages.check_language``); None: the voice's own."""


class Session:
    def __init__(
        self,
        catalog: VoiceCatalog,
        config: SessionConfig,
        defaults: SessionDefaults,
        emit: Emit,
        loop: asyncio.AbstractEventLoop,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.session_id = "s_" + uuid.uuid4().hex[:16]
        self.catalog = catalog
        self.config = config
        self.defaults = defaults
        self._emit = emit
        self._loop = loop
        self._clock = clock
        self.contexts: dict[str, Context] = {}
        self.last_client_activity = clock()
        self.on_context_event: Callable[[Context, ContextEvent], None] | None = None
        self._watermark = stamp.current()
        """Who marks this session's audio, for which tenant (bound by the request that made it)."""

    # defaults

    def configure(self, voice: ResolvedVoice | None = None, speed: float | None = None,
                  pitch: float | None = None, language: str | None = None) -> None:
        """Change defaults for contexts started later (None leaves a default as it is)."""
        if voice is not None:
            self.defaults = replace(self.defaults, voice=voice)
        if speed is not None:
            self.defaults = replace(self.defaults, speed=speed)
        if pitch is not None:
            self.defaults = replace(self.defaults, pitch=pitch)
        if language is not None:
            self.defaults = replace(self.defaults, language=language)

    def touch(self) -> None:
        self.last_client_activity = self._clock()

    def idle_expired(self) -> bool:
        """True when no context is live and the client has been silent too long."""
        if any(not c.finished for c in self.contexts.values()):
            return False
        return self._clock() - self.last_client_activity > self.config.inactivity_timeout_s

    # contexts

    def context(self, context_id: str) -> Context:
        ctx = self.contexts.get(context_id)
        if ctx is None:
            raise UnknownContext(f"no context {context_id!r}", context_id=context_id)
        return ctx

    def start_context(
        self, context_id: str, voice: ResolvedVoice | None = None, speed: float | None = None,
        pitch: float | None = None, language: str | None = None,
    ) -> Context:
        """Admit a new context (``voice`` resolved and ``language`` checked by the caller; None:
        the session default). Raises TooManyContexts or ServerBusy."""
        resolved = voice if voice is not None else self.defaults.voice
        live = sum(1 for c in self.contexts.values() if not c.finished)
        if live >= self.config.max_contexts:
            raise TooManyContexts(
                f"at most {self.config.max_contexts} contexts may be open at once",
                context_id=context_id,
            )
        settings = ContextSettings(
            voice=resolved,
            speed=speed if speed is not None else self.defaults.speed,
            pitch=pitch if pitch is not None else self.defaults.pitch,
            language=language if language is not None else self.defaults.language,
            max_chars=self.config.max_context_chars,
            segmenter=self.config.segmenter,
        )
        holder: list[Context] = []

        def sink(event: StreamEvent) -> None:  # on the model thread
            self._loop.call_soon_threadsafe(self._on_stream_event, holder, event)

        admitted = resolved.scheduler.open_stream(sink)
        if isinstance(admitted, Refusal):
            raise ServerBusy(admitted.message, context_id=context_id)
        mark = self._watermark.stamper.mark(self._watermark.tenant, resolved.voice_id,
                                            resolved.scheduler.engine.sample_rate_hz)
        ctx = Context(context_id, settings, admitted, self._emit_for(context_id), self._clock,
                      mark)
        holder.append(ctx)
        self.contexts.pop(context_id, None)  # a finished context of the same id is replaced
        self.contexts[context_id] = ctx
        return ctx

    def _on_stream_event(self, holder: list[Context], event: StreamEvent) -> None:
        holder[0].on_stream_event(event)

    def _emit_for(self, context_id: str) -> Emit:
        def emit(event: ContextEvent) -> None:
            ctx = self.contexts.get(context_id)
            if ctx is not None and self.on_context_event is not None:
                self.on_context_event(ctx, event)
            self._emit(event)
            if isinstance(event, ContextFinished) and ctx is not None:
                self._forget_later(ctx)

        return emit

    def _forget_later(self, ctx: Context) -> None:
        # Keep finished contexts briefly so late client messages get context_closed, not
        # unknown_context; bound the memory by dropping the oldest finished ones.
        finished = [cid for cid, c in self.contexts.items() if c.finished]
        for cid in finished[: max(0, len(finished) - 64)]:
            del self.contexts[cid]

    def close(self) -> None:
        """The client went away: cancel every live context so no compute is orphaned."""
        for ctx in list(self.contexts.values()):
            ctx.cancel()
