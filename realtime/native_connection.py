"""The native protocol's per-connection state machine (sans-I/O): which contexts a connection has,
in which state, and their audio sequence numbers. The messages and their parsing are
``realtime.protocol``.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field, replace
from typing import Final

from realtime.protocol import (
    MAX_CONTEXT_CHARS,
    MAX_CONTEXTS,
    MAX_MESSAGE_BYTES,
    Alignment,
    AudioFrame,
    CancelMessage,
    ClientMessage,
    CloseContextMessage,
    ContextDone,
    ContextStarted,
    FlushMessage,
    ServerJsonMessage,
    TextMessage,
    parse_client_message,
)
from session.errors import ContextClosed, TextTooLong, TooManyContexts, UnknownContext


class ContextState(enum.Enum):
    OPEN = "open"  # taking text
    CLOSING = "closing"  # close_context received: no more text; audio still flows
    CANCELLED = "cancelled"  # cancel received: no more audio; context_done still owed
    DONE = "done"  # context_done sent; the slot is free


_TRANSITIONS: Final[dict[ContextState, frozenset[ContextState]]] = {
    ContextState.OPEN: frozenset({ContextState.CLOSING, ContextState.CANCELLED, ContextState.DONE}),
    ContextState.CLOSING: frozenset({ContextState.CANCELLED, ContextState.DONE}),
    ContextState.CANCELLED: frozenset({ContextState.DONE}),
    ContextState.DONE: frozenset(),
}


class InvalidContextState(RuntimeError):
    """The server tried something its context's state forbids (a bug on our side, not the client's)."""

    def __init__(self, context_id: str, state: ContextState | None, action: str) -> None:
        self.context_id = context_id
        self.state = state
        where = state.value if state else "not started"
        super().__init__(f"cannot {action}: context {context_id!r} is {where}")


@dataclass
class _Context:
    id: str
    state: ContextState = ContextState.OPEN
    characters: int = 0
    next_sequence: int = 0
    announced: bool = False  # context_started sent

    def advance(self, to: ContextState) -> None:
        if to not in _TRANSITIONS[self.state]:
            raise InvalidContextState(self.id, self.state, f"become {to.value}")
        self.state = to


@dataclass
class NativeProtocol:
    """The native protocol of one connection: client frames in, checked messages out; server
    messages in, frames out (``send`` for JSON, ``send_audio`` for audio, numbered per context).

    Client mistakes raise ``session.errors`` (see ``receive``); the session goes on unless the error
    is ``fatal``. Server mistakes (audio before ``context_started`` or after ``context_done``, a
    second ``context_done``...) raise ``InvalidContextState``, which names the state. Races with
    the client are not mistakes: audio after a ``cancel`` is refused with None, see ``send_audio``.

    Finished context ids are remembered (the most recent ``remember_finished`` of them) so that text
    for them is ``context_closed`` rather than a new context. So are refused ones (``refuse``): a
    context whose first text was refused never starts, since later text would make it speak a
    sentence without its beginning; a client retries under a new ``context_id``.
    """

    max_contexts: int = MAX_CONTEXTS
    max_context_chars: int = MAX_CONTEXT_CHARS
    max_message_bytes: int = MAX_MESSAGE_BYTES
    remember_finished: int = 4096
    _live: dict[str, _Context] = field(default_factory=dict, init=False, repr=False)
    _finished: dict[str, None] = field(default_factory=dict, init=False, repr=False)
    _refused: dict[str, str] = field(default_factory=dict, init=False, repr=False)
    """Refused context ids and the code each was refused with (bounded like ``_finished``)."""

    @property
    def open_contexts(self) -> int:
        """Contexts from their first text until their ``context_done`` was sent."""
        return len(self._live)

    def context_state(self, context_id: str) -> ContextState | None:
        """The context's state; None for one that never started (or was ``refuse``d)."""
        if context_id in self._live:
            return self._live[context_id].state
        return ContextState.DONE if context_id in self._finished else None

    # client -> server

    def receive(self, data: str | bytes) -> ClientMessage:
        """Parse and check one client frame against the connection's contexts.

        Beyond ``parse_client_message``'s errors: ``ContextClosed`` for text/flush on a closing,
        cancelled, done or refused context; ``UnknownContext`` for flush/close_context/cancel of a
        context that never started; ``TooManyContexts`` for a new context while ``max_contexts``
        are open; ``TextTooLong`` when a context's text would pass ``max_context_chars`` (the
        context is not extended, or not started). A new context refused by those two is refused
        for good, as by ``refuse``. A ``close_context`` or ``cancel`` for a context already past
        that point, or refused, changes nothing and is returned as is (it races ``context_done``
        or the refusal): treat it as a no-op.
        """
        message = parse_client_message(data, max_message_bytes=self.max_message_bytes)
        match message:
            case TextMessage():
                self._append_text(message)
            case FlushMessage():
                self._taking_text(message.context_id, "flush")
            case CloseContextMessage():
                self._end(message.context_id, ContextState.CLOSING)
            case CancelMessage():
                self._end(message.context_id, ContextState.CANCELLED)
        return message

    def _append_text(self, message: TextMessage) -> None:
        context_id, size = message.context_id, len(message.text)
        self._check_not_refused(context_id, "text")
        context = self._live.get(context_id)
        if context is None and context_id not in self._finished:
            try:
                self._check_text_budget(context_id, 0, size)
                if len(self._live) >= self.max_contexts:
                    raise TooManyContexts(
                        f"{self.max_contexts} contexts are open already", context_id=context_id
                    )
            except (TextTooLong, TooManyContexts) as refusal:
                self._remember_refused(context_id, refusal.code)
                raise
            context = self._live[context_id] = _Context(context_id)
        else:
            context = self._taking_text(context_id, "text")
            self._check_text_budget(context_id, context.characters, size)
        context.characters += size

    def _check_text_budget(self, context_id: str, used: int, size: int) -> None:
        if used + size > self.max_context_chars:
            raise TextTooLong(
                f"context text would pass {self.max_context_chars} characters",
                context_id=context_id,
            )

    def _check_not_refused(self, context_id: str, kind: str) -> None:
        code = self._refused.get(context_id)
        if code is not None:
            raise ContextClosed(
                f"{kind} for context {context_id!r}, which was refused ({code}); send its text "
                f"again under a new context_id", context_id=context_id,
            )

    def _taking_text(self, context_id: str, kind: str) -> _Context:
        self._check_not_refused(context_id, kind)
        state = self.context_state(context_id)
        if state is None:
            raise UnknownContext(
                f"{kind} for context {context_id!r}, which never started", context_id=context_id
            )
        if state is not ContextState.OPEN:
            raise ContextClosed(
                f"{kind} for context {context_id!r}, which is {state.value}", context_id=context_id
            )
        return self._live[context_id]

    def _end(self, context_id: str, to: ContextState) -> None:
        state = self.context_state(context_id)
        if state is None and context_id in self._refused:
            return  # the client's close/cancel crossed the refusal: nothing to end
        if state is None:
            raise UnknownContext(f"context {context_id!r} never started", context_id=context_id)
        if to in _TRANSITIONS[state]:  # else already closing/cancelled/done: nothing to do
            self._live[context_id].advance(to)

    # server -> client

    def send(self, message: ServerJsonMessage) -> str:
        """Serialize a JSON message, checking it against the context's state.

        ``context_started`` must come once, before the context's audio; ``alignment`` needs a live
        context; ``context_done`` finishes the context and frees its slot (on a cancelled context
        it goes out with reason ``cancelled`` whatever the caller passed, so a completion racing
        the cancel keeps the spec's promise). ``ready`` and ``error`` carry no context state.
        Raises ``InvalidContextState`` for a context that is not live (never started, or done).
        """
        match message:
            case ContextStarted():
                context = self._live_context(message.context_id, "send context_started")
                if context.announced:
                    raise InvalidContextState(
                        context.id, context.state, "send context_started twice"
                    )
                context.announced = True
            case Alignment():
                self._live_context(message.context_id, "send alignment")
            case ContextDone():
                return self._finish(message).to_wire()
        return message.to_wire()

    def send_audio(self, context_id: str, payload: bytes) -> bytes | None:
        """The binary frame for the context's next audio chunk (sequence 0, 1, 2, ... per context).

        Returns None once the client has cancelled the context: audio already on its way from the
        engine when the cancel arrived must not be sent (the caller drops it and counts the drop).
        Raises ``InvalidContextState`` for a context that was never announced with
        ``context_started``, or that is done.
        """
        context = self._live_context(context_id, "send audio")
        if context.state is ContextState.CANCELLED:
            return None
        if not context.announced:
            raise InvalidContextState(
                context_id, context.state, "send audio before context_started"
            )
        frame = AudioFrame(context_id, context.next_sequence, payload)
        context.next_sequence += 1
        return frame.to_wire()

    def cancel(self, context_id: str) -> None:
        """The server ends a live context itself (e.g. its voice was revoked): from now on it takes
        no text and sends no audio, and it must finish with ``context_done`` reason
        ``cancelled``. A context already past that point is left as it is."""
        self._end(context_id, ContextState.CANCELLED)

    def refuse(self, context_id: str, code: str) -> None:
        """End a context the session would not start (e.g. ``server_busy``) before its
        ``context_started``: its slot is freed, and later text, flush or close for it does not
        start it (text and flush are ``context_closed``, close and cancel change nothing)."""
        context = self._live_context(context_id, "refuse")
        if context.announced:
            raise InvalidContextState(context_id, context.state, "refuse a started context")
        del self._live[context_id]
        self._remember_refused(context_id, code)

    def _remember_refused(self, context_id: str, code: str) -> None:
        self._refused[context_id] = code
        if len(self._refused) > self.remember_finished:
            del self._refused[next(iter(self._refused))]

    def _finish(self, message: ContextDone) -> ContextDone:
        context = self._live_context(message.context_id, "send context_done")
        if context.state is ContextState.CANCELLED:
            # A completion that crossed the client's cancel still ends as the spec promises.
            message = replace(message, reason="cancelled")
        context.advance(ContextState.DONE)
        del self._live[context.id]
        self._finished[context.id] = None
        if len(self._finished) > self.remember_finished:
            del self._finished[next(iter(self._finished))]
        return message

    def _live_context(self, context_id: str, action: str) -> _Context:
        context = self._live.get(context_id)
        if context is None:
            raise InvalidContextState(context_id, self.context_state(context_id), action)
        return context
