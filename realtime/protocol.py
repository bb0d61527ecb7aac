"""Sans-I/O core of Timbre's native streaming protocol (docs/protocol.md, v1).

Messages are frozen dataclasses with a ``type`` tag; ``to_wire()`` serializes one (a JSON text frame,
or bytes for ``AudioFrame``) and ``parse_client_message`` / ``parse_server_message`` turn a frame back
into a message, raising the ``session.errors`` class the spec names for each bad input.

``NativeProtocol`` is the per-connection state machine on top: it checks client messages against the
contexts of the connection and numbers each context's audio frames. It does no I/O; the WebSocket
handler feeds it frames and writes what it returns.

Context lifecycle (one ``ContextState`` per context id)::

    first text -> OPEN --close_context--> CLOSING --context_done sent--> DONE
                   |                         |
                   +------cancel-------> CANCELLED --context_done sent--> DONE

A context is *open* (counts toward ``max_contexts``) from its first ``text`` until its
``context_done`` is sent: until then the server still owes the client audio or a ``context_done``.
"""

from __future__ import annotations

import enum
import json
import math
import re
import struct
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from typing import Any, ClassVar, Final, Literal, Self, TypeVar, cast, get_args

from realtime.audio import SUPPORTED_FORMATS, SUPPORTED_SAMPLE_RATES
from session.errors import (
    BadFormat,
    BadJson,
    BadMessage,
    BadSampleRate,
    BinaryNotSupported,
    ContextClosed,
    MessageTooLarge,
    TextTooLong,
    TimbreError,
    TooManyContexts,
    UnknownContext,
    UnknownType,
)

PROTOCOL_VERSION: Final = 1
MAX_MESSAGE_BYTES: Final = 65_536
MAX_CONTEXTS: Final = 8
MAX_CONTEXT_CHARS: Final = 5_000
DEFAULT_CONTEXT_ID: Final = "default"
MIN_SPEED: Final = 0.5
MAX_SPEED: Final = 2.0

AUDIO_FRAME_KIND: Final = 0x01
_AUDIO_HEADER: Final = struct.Struct(">BBI")  # frame kind, context id length, sequence number
_CONTEXT_ID: Final = re.compile(r"[A-Za-z0-9_.:\-]{1,64}")

DoneReason = Literal["completed", "cancelled"]
JsonObject = dict[str, Any]
_T = TypeVar("_T")


class _JsonMessage:
    """Shared ``to_wire`` of the JSON messages: ``type`` first, fields that are None left out."""

    type: ClassVar[str]
    __dataclass_fields__: ClassVar[dict[str, Any]]

    def to_wire(self) -> str:
        body = {k: v for k, v in asdict(self).items() if v is not None}
        return json.dumps({"type": self.type, **body}, ensure_ascii=False, separators=(",", ":"))


# --- client -> server ------------------------------------------------------------------------------


@dataclass(frozen=True)
class TextMessage(_JsonMessage):
    """Append text to a context; the first text of an unknown id starts it (with voice/speed)."""

    type: ClassVar[Literal["text"]] = "text"
    context_id: str
    text: str
    voice: str | None = None
    speed: float | None = None

    @classmethod
    def from_dict(cls, obj: JsonObject) -> Self:
        return cls(
            _client_context_id(obj),
            _str(obj, "text"),
            _optional(_name, obj, "voice"),
            _optional(_speed, obj, "speed"),
        )


@dataclass(frozen=True)
class FlushMessage(_JsonMessage):
    type: ClassVar[Literal["flush"]] = "flush"
    context_id: str

    @classmethod
    def from_dict(cls, obj: JsonObject) -> Self:
        return cls(_client_context_id(obj))


@dataclass(frozen=True)
class CloseContextMessage(_JsonMessage):
    type: ClassVar[Literal["close_context"]] = "close_context"
    context_id: str

    @classmethod
    def from_dict(cls, obj: JsonObject) -> Self:
        return cls(_client_context_id(obj))


@dataclass(frozen=True)
class CancelMessage(_JsonMessage):
    type: ClassVar[Literal["cancel"]] = "cancel"
    context_id: str

    @classmethod
    def from_dict(cls, obj: JsonObject) -> Self:
        return cls(_client_context_id(obj))


@dataclass(frozen=True)
class ConfigMessage(_JsonMessage):
    """New session defaults for contexts started after it; None leaves a default as it is."""

    type: ClassVar[Literal["config"]] = "config"
    voice: str | None = None
    speed: float | None = None
    format: str | None = None
    sample_rate: int | None = None

    @classmethod
    def from_dict(cls, obj: JsonObject) -> Self:
        return cls(
            _optional(_name, obj, "voice"),
            _optional(_speed, obj, "speed"),
            _optional(_format, obj, "format"),
            _optional(_sample_rate, obj, "sample_rate"),
        )


@dataclass(frozen=True)
class ReportMessage(_JsonMessage):
    """Client playout statistics: underruns since the last report, audio buffered now."""

    type: ClassVar[Literal["report"]] = "report"
    underruns: int
    buffered_ms: float | None = None

    @classmethod
    def from_dict(cls, obj: JsonObject) -> Self:
        return cls(_count(obj, "underruns"), _optional(_ms, obj, "buffered_ms"))


ClientMessage = (
    TextMessage | FlushMessage | CloseContextMessage | CancelMessage | ConfigMessage | ReportMessage
)
_CLIENT_TYPES: Final[dict[str, Callable[[JsonObject], ClientMessage]]] = {
    cls.type: cls.from_dict
    for cls in (
        TextMessage,
        FlushMessage,
        CloseContextMessage,
        CancelMessage,
        ConfigMessage,
        ReportMessage,
    )
}


# --- server -> client ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Ready(_JsonMessage):
    type: ClassVar[Literal["ready"]] = "ready"
    session_id: str
    protocol: int
    voice: str
    format: str
    sample_rate: int

    @classmethod
    def from_dict(cls, obj: JsonObject) -> Self:
        return cls(
            _name(obj, "session_id"),
            _count(obj, "protocol"),
            _name(obj, "voice"),
            _format(obj, "format"),
            _sample_rate(obj, "sample_rate"),
        )


@dataclass(frozen=True)
class ContextStarted(_JsonMessage):
    type: ClassVar[Literal["context_started"]] = "context_started"
    context_id: str
    voice: str
    format: str
    sample_rate: int

    @classmethod
    def from_dict(cls, obj: JsonObject) -> Self:
        return cls(
            _context_id(obj, "context_id"),
            _name(obj, "voice"),
            _format(obj, "format"),
            _sample_rate(obj, "sample_rate"),
        )


@dataclass(frozen=True)
class AudioFrame:
    """A binary frame: ``payload`` is audio of one context in that context's format.

    Layout: kind ``0x01`` (1 byte), context id length L (1 byte), sequence number (uint32 big
    endian), the context id (L bytes, UTF-8), then the payload.
    """

    type: ClassVar[Literal["audio"]] = "audio"
    context_id: str
    sequence: int
    payload: bytes

    def to_wire(self) -> bytes:
        context_id = self.context_id.encode()
        return _AUDIO_HEADER.pack(AUDIO_FRAME_KIND, len(context_id), self.sequence) + (
            context_id + self.payload
        )

    @classmethod
    def parse(cls, data: bytes) -> Self:
        """Raises ``BadMessage`` when ``data`` is not a well-formed audio frame."""
        if len(data) < _AUDIO_HEADER.size:
            raise BadMessage(f"binary frame of {len(data)} bytes is shorter than its header")
        kind, id_length, sequence = _AUDIO_HEADER.unpack_from(data)
        if kind != AUDIO_FRAME_KIND:
            raise BadMessage(f"unknown binary frame kind {kind:#04x}")
        end = _AUDIO_HEADER.size + id_length
        if not 1 <= id_length <= 64 or len(data) < end:
            raise BadMessage(f"bad context id length {id_length} in a {len(data)}-byte frame")
        try:
            context_id = data[_AUDIO_HEADER.size : end].decode()
        except UnicodeDecodeError:
            raise BadMessage("context id in binary frame is not UTF-8") from None
        return cls(_valid_context_id(context_id), sequence, bytes(data[end:]))


@dataclass(frozen=True)
class WordTime:
    """One word's place in a context's audio, in ms from the context's first sample."""

    word: str
    start_ms: float
    end_ms: float

    @classmethod
    def from_value(cls, value: object) -> Self:
        if not isinstance(value, dict):
            raise BadMessage("each entry of 'words' must be an object")
        word = cls(_str(value, "word"), _ms(value, "start_ms"), _ms(value, "end_ms"))
        if word.end_ms < word.start_ms:
            raise BadMessage(f"word {word.word!r} ends before it starts")
        return word


@dataclass(frozen=True)
class Alignment(_JsonMessage):
    type: ClassVar[Literal["alignment"]] = "alignment"
    context_id: str
    words: tuple[WordTime, ...]

    @classmethod
    def from_dict(cls, obj: JsonObject) -> Self:
        words = _required(obj, "words")
        if not isinstance(words, list):
            raise BadMessage("field 'words' must be a list")
        return cls(_context_id(obj, "context_id"), tuple(WordTime.from_value(w) for w in words))


@dataclass(frozen=True)
class ContextDone(_JsonMessage):
    """The context's last message: ``samples`` sent at its rate, ``characters`` synthesised."""

    type: ClassVar[Literal["context_done"]] = "context_done"
    context_id: str
    samples: int
    characters: int
    reason: DoneReason

    @classmethod
    def from_dict(cls, obj: JsonObject) -> Self:
        reason = _str(obj, "reason")
        if reason not in get_args(DoneReason):
            raise BadMessage(f"field 'reason' must be one of {get_args(DoneReason)}")
        return cls(
            _context_id(obj, "context_id"),
            _count(obj, "samples"),
            _count(obj, "characters"),
            cast(DoneReason, reason),
        )


@dataclass(frozen=True)
class ErrorMessage(_JsonMessage):
    type: ClassVar[Literal["error"]] = "error"
    code: str
    message: str
    context_id: str | None = None

    @classmethod
    def from_dict(cls, obj: JsonObject) -> Self:
        return cls(
            _name(obj, "code"), _str(obj, "message"), _optional(_context_id, obj, "context_id")
        )


ServerJsonMessage = Ready | ContextStarted | Alignment | ContextDone | ErrorMessage
ServerMessage = ServerJsonMessage | AudioFrame
_SERVER_TYPES: Final[dict[str, Callable[[JsonObject], ServerJsonMessage]]] = {
    cls.type: cls.from_dict for cls in (Ready, ContextStarted, Alignment, ContextDone, ErrorMessage)
}


def error_message(err: TimbreError) -> ErrorMessage:
    """The ``error`` message a client sees for ``err`` (its code and message, never a traceback)."""
    return ErrorMessage(err.code, err.message, err.context_id)


# --- parsing ---------------------------------------------------------------------------------------


def parse_client_message(
    data: str | bytes, *, max_message_bytes: int = MAX_MESSAGE_BYTES
) -> ClientMessage:
    """Parse one client frame: ``str`` for a text frame, ``bytes`` for a binary one.

    Raises ``MessageTooLarge`` (fatal, close 1009) over ``max_message_bytes``; otherwise, with the
    session going on: ``BinaryNotSupported`` for any binary frame, ``BadJson`` unless the text is a
    JSON object, ``UnknownType`` for a missing or unknown ``type``, and ``BadMessage`` /
    ``BadFormat`` / ``BadSampleRate`` for a bad field (carrying the message's ``context_id`` when
    that one is valid). Unknown extra fields are ignored; a null field counts as left out; a
    ``context_id`` left out of text/flush/close_context/cancel is ``"default"``.
    """
    if _size_exceeds(data, max_message_bytes):
        raise MessageTooLarge(f"message over {max_message_bytes} bytes")
    if not isinstance(data, str):
        raise BinaryNotSupported("clients send JSON text frames only")
    obj = _json_object(data)
    parse = _CLIENT_TYPES.get(_type(obj))
    if parse is None:
        raise _unknown_type(obj)
    try:
        return parse(obj)
    except TimbreError as err:
        err.context_id = err.context_id or _context_id_or_none(obj)
        raise


def parse_server_message(data: str | bytes) -> ServerMessage:
    """Parse one server frame (our own client and the tests use this); validates like the server.

    Raises ``BadJson`` / ``UnknownType`` / ``BadMessage`` / ``BadFormat`` / ``BadSampleRate``.
    """
    if not isinstance(data, str):
        return AudioFrame.parse(data)
    obj = _json_object(data)
    parse = _SERVER_TYPES.get(_type(obj))
    if parse is None:
        raise _unknown_type(obj)
    return parse(obj)


def _size_exceeds(data: str | bytes, limit: int) -> bool:
    if isinstance(data, bytes) or len(data) > limit:
        return len(data) > limit
    return len(data) * 4 > limit and len(data.encode("utf-8", "surrogatepass")) > limit


def _json_object(text: str) -> JsonObject:
    try:
        obj = json.loads(text, parse_constant=_reject_constant)
    except ValueError as err:  # JSONDecodeError, and NaN/Infinity (not JSON)
        raise BadJson(f"not valid JSON: {err}") from None
    if not isinstance(obj, dict):
        raise BadJson(f"expected a JSON object, got {type(obj).__name__}")
    return obj


def _reject_constant(name: str) -> None:
    raise ValueError(f"{name} is not valid JSON")


def _type(obj: JsonObject) -> str:
    kind = obj.get("type")
    return kind if isinstance(kind, str) else ""


def _unknown_type(obj: JsonObject) -> UnknownType:
    if "type" not in obj:
        return UnknownType("message has no 'type'")
    return UnknownType(f"unknown message type {obj['type']!r}")


def _context_id_or_none(obj: JsonObject) -> str | None:
    value = obj.get("context_id")
    return value if isinstance(value, str) and _CONTEXT_ID.fullmatch(value) else None


# --- field readers: each raises BadMessage (or BadFormat/BadSampleRate) naming the field ----------


def _required(obj: JsonObject, name: str) -> object:
    value = obj.get(name)
    if value is None:
        raise BadMessage(f"missing field '{name}'")
    return value


def _optional(read: Callable[[JsonObject, str], _T], obj: JsonObject, name: str) -> _T | None:
    """``read`` the field, or None when it is absent or null."""
    return None if obj.get(name) is None else read(obj, name)


def _str(obj: JsonObject, name: str) -> str:
    value = _required(obj, name)
    if not isinstance(value, str):
        raise BadMessage(f"field '{name}' must be a string")
    try:
        value.encode()
    except UnicodeEncodeError:  # a lone surrogate smuggled in as "\ud800"
        raise BadMessage(f"field '{name}' is not valid Unicode") from None
    return value


def _name(obj: JsonObject, name: str) -> str:
    value = _str(obj, name)
    if not value:
        raise BadMessage(f"field '{name}' must not be empty")
    return value


def _context_id(obj: JsonObject, name: str) -> str:
    value = _required(obj, name)
    if not isinstance(value, str):
        raise BadMessage(f"field '{name}' must be a string")
    return _valid_context_id(value)


def _client_context_id(obj: JsonObject) -> str:
    return _optional(_context_id, obj, "context_id") or DEFAULT_CONTEXT_ID


def _valid_context_id(value: str) -> str:
    if not _CONTEXT_ID.fullmatch(value):
        raise BadMessage("context_id must be 1 to 64 characters from A-Z a-z 0-9 _ . : -")
    return value


def _count(obj: JsonObject, name: str) -> int:
    value = _required(obj, name)
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise BadMessage(f"field '{name}' must be a non-negative integer")
    return value


def _number(obj: JsonObject, name: str) -> float:
    value = _required(obj, name)
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise BadMessage(f"field '{name}' must be a number")
    return float(value)


def _ms(obj: JsonObject, name: str) -> float:
    value = _number(obj, name)
    if not 0 <= value < math.inf:
        raise BadMessage(f"field '{name}' must be a non-negative number of milliseconds")
    return value


def _speed(obj: JsonObject, name: str) -> float:
    value = _number(obj, name)
    if not MIN_SPEED <= value <= MAX_SPEED:
        raise BadMessage(f"field '{name}' must be between {MIN_SPEED} and {MAX_SPEED}")
    return value


def _sample_rate(obj: JsonObject, name: str) -> int:
    value = _required(obj, name)
    if isinstance(value, bool) or not isinstance(value, int):
        raise BadMessage(f"field '{name}' must be an integer")
    if value not in SUPPORTED_SAMPLE_RATES:
        raise BadSampleRate(f"sample_rate {value} is not one of {SUPPORTED_SAMPLE_RATES}")
    return value


def _format(obj: JsonObject, name: str) -> str:
    value = _str(obj, name)
    if value not in SUPPORTED_FORMATS:
        raise BadFormat(f"format {value!r} is not one of {SUPPORTED_FORMATS}")
    return value


# --- per-connection state --------------------------------------------------------------------------


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
    for them is ``context_closed`` rather than a new context.
    """

    max_contexts: int = MAX_CONTEXTS
    max_context_chars: int = MAX_CONTEXT_CHARS
    max_message_bytes: int = MAX_MESSAGE_BYTES
    remember_finished: int = 4096
    _live: dict[str, _Context] = field(default_factory=dict, init=False, repr=False)
    _finished: dict[str, None] = field(default_factory=dict, init=False, repr=False)

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
        cancelled or done context; ``UnknownContext`` for flush/close_context/cancel of a context
        that never started; ``TooManyContexts`` for a new context while ``max_contexts`` are open;
        ``TextTooLong`` when a context's text would pass ``max_context_chars`` (the context is not
        extended, or not started). A ``close_context`` or ``cancel`` for a context already past that
        point changes nothing and is returned as is (it races ``context_done``): treat it as a no-op.
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
        context = self._live.get(context_id)
        if context is None and context_id not in self._finished:
            self._check_text_budget(context_id, 0, size)
            if len(self._live) >= self.max_contexts:
                raise TooManyContexts(
                    f"{self.max_contexts} contexts are open already", context_id=context_id
                )
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

    def _taking_text(self, context_id: str, kind: str) -> _Context:
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

    def refuse(self, context_id: str) -> None:
        """Forget a context the session would not start (e.g. ``server_busy``) before its
        ``context_started``: its slot is freed and a later text may try again."""
        context = self._live_context(context_id, "refuse")
        if context.announced:
            raise InvalidContextState(context_id, context.state, "refuse a started context")
        del self._live[context_id]

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
