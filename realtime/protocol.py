"""Sans-I/O core of Timbre's native streaming protocol (docs/protocol.md, v1).

Messages are frozen dataclasses with a ``type`` tag; ``to_wire()`` serializes one (a JSON text frame,
or bytes for ``AudioFrame``) and ``parse_client_message`` / ``parse_server_message`` turn a frame back
into a message, raising the ``session.errors`` class the spec names for each bad input (the
per-field checks are ``realtime.protocol_fields``).

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

import json
import struct
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any, ClassVar, Final, Literal, Self, cast, get_args

from realtime import protocol_fields as fields
from realtime.protocol_fields import JsonObject
from session.errors import (
    BadJson,
    BadMessage,
    BinaryNotSupported,
    MessageTooLarge,
    TimbreError,
    UnknownType,
)

PROTOCOL_VERSION: Final = 1
MAX_MESSAGE_BYTES: Final = 65_536
MAX_CONTEXTS: Final = 8
MAX_CONTEXT_CHARS: Final = 5_000

AUDIO_FRAME_KIND: Final = 0x01
_AUDIO_HEADER: Final = struct.Struct(">BBI")  # frame kind, context id length, sequence number

DoneReason = Literal["completed", "cancelled"]


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
    """Append text to a context; the first text of an unknown id starts it (with its voice, speed,
    pitch and language; None: the session's). ``pitch`` is in semitones; ``language`` is checked
    against the context's voice when the context starts."""

    type: ClassVar[Literal["text"]] = "text"
    context_id: str
    text: str
    voice: str | None = None
    speed: float | None = None
    pitch: float | None = None
    language: str | None = None

    @classmethod
    def from_dict(cls, obj: JsonObject) -> Self:
        return cls(
            fields.client_context_id(obj),
            fields.string(obj, "text"),
            fields.optional(fields.non_empty, obj, "voice"),
            fields.optional(fields.speed, obj, "speed"),
            fields.optional(fields.pitch, obj, "pitch"),
            fields.optional(fields.language, obj, "language"),
        )


@dataclass(frozen=True)
class FlushMessage(_JsonMessage):
    type: ClassVar[Literal["flush"]] = "flush"
    context_id: str

    @classmethod
    def from_dict(cls, obj: JsonObject) -> Self:
        return cls(fields.client_context_id(obj))


@dataclass(frozen=True)
class CloseContextMessage(_JsonMessage):
    type: ClassVar[Literal["close_context"]] = "close_context"
    context_id: str

    @classmethod
    def from_dict(cls, obj: JsonObject) -> Self:
        return cls(fields.client_context_id(obj))


@dataclass(frozen=True)
class CancelMessage(_JsonMessage):
    type: ClassVar[Literal["cancel"]] = "cancel"
    context_id: str

    @classmethod
    def from_dict(cls, obj: JsonObject) -> Self:
        return cls(fields.client_context_id(obj))


@dataclass(frozen=True)
class ConfigMessage(_JsonMessage):
    """New session defaults for contexts started after it; None leaves a default as it is."""

    type: ClassVar[Literal["config"]] = "config"
    voice: str | None = None
    speed: float | None = None
    format: str | None = None
    sample_rate: int | None = None
    pitch: float | None = None
    language: str | None = None

    @classmethod
    def from_dict(cls, obj: JsonObject) -> Self:
        return cls(
            fields.optional(fields.non_empty, obj, "voice"),
            fields.optional(fields.speed, obj, "speed"),
            fields.optional(fields.audio_format, obj, "format"),
            fields.optional(fields.sample_rate, obj, "sample_rate"),
            fields.optional(fields.pitch, obj, "pitch"),
            fields.optional(fields.language, obj, "language"),
        )


@dataclass(frozen=True)
class ReportMessage(_JsonMessage):
    """Client playout statistics: underruns since the last report, audio buffered now."""

    type: ClassVar[Literal["report"]] = "report"
    underruns: int
    buffered_ms: float | None = None

    @classmethod
    def from_dict(cls, obj: JsonObject) -> Self:
        return cls(fields.count(obj, "underruns"), fields.optional(fields.ms, obj, "buffered_ms"))


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
            fields.non_empty(obj, "session_id"),
            fields.count(obj, "protocol"),
            fields.non_empty(obj, "voice"),
            fields.audio_format(obj, "format"),
            fields.sample_rate(obj, "sample_rate"),
        )


@dataclass(frozen=True)
class ContextStarted(_JsonMessage):
    """A context was admitted, with the settings it speaks with (the message's, else the
    session's): ``language`` is the normalised code (``pt_BR`` -> ``pt-br``), absent when the
    voice speaks its own default."""

    type: ClassVar[Literal["context_started"]] = "context_started"
    context_id: str
    voice: str
    format: str
    sample_rate: int
    speed: float | None = None
    pitch: float | None = None
    language: str | None = None

    @classmethod
    def from_dict(cls, obj: JsonObject) -> Self:
        return cls(
            fields.context_id(obj, "context_id"),
            fields.non_empty(obj, "voice"),
            fields.audio_format(obj, "format"),
            fields.sample_rate(obj, "sample_rate"),
            fields.optional(fields.number, obj, "speed"),
            fields.optional(fields.number, obj, "pitch"),
            fields.optional(fields.string, obj, "language"),
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
        return cls(fields.valid_context_id(context_id), sequence, bytes(data[end:]))


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
        word = cls(
            fields.string(value, "word"), fields.ms(value, "start_ms"), fields.ms(value, "end_ms")
        )
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
        words = fields.required(obj, "words")
        if not isinstance(words, list):
            raise BadMessage("field 'words' must be a list")
        return cls(
            fields.context_id(obj, "context_id"), tuple(WordTime.from_value(w) for w in words)
        )


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
        reason = fields.string(obj, "reason")
        if reason not in get_args(DoneReason):
            raise BadMessage(f"field 'reason' must be one of {get_args(DoneReason)}")
        return cls(
            fields.context_id(obj, "context_id"),
            fields.count(obj, "samples"),
            fields.count(obj, "characters"),
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
            fields.non_empty(obj, "code"),
            fields.string(obj, "message"),
            fields.optional(fields.context_id, obj, "context_id"),
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
        err.context_id = err.context_id or fields.context_id_or_none(obj)
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
    except RecursionError:  # "[[[[..." past the parser's depth: hostile, never a real message
        raise BadJson("not valid JSON: nested too deeply") from None
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
