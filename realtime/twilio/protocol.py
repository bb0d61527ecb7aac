"""Sans-I/O core of Twilio Media Streams (bidirectional, ``<Connect><Stream>``).

Every message is a frozen dataclass with a ``type`` tag equal to Twilio's ``event``; ``to_dict`` /
``to_wire`` give Twilio's JSON shape and ``parse_inbound`` (Twilio -> us) / ``parse_outbound``
(us -> Twilio; the tests' fake Twilio uses it) turn a text frame back into a message. Twilio writes
``sequenceNumber``, ``chunk`` and ``timestamp`` as decimal strings; here they are ints. Media
payloads are raw bytes here and base64 on the wire (8-bit mu-law, 8 kHz, mono).

``TwilioStream`` is the per-connection state machine::

    AWAITING_START --start--> STREAMING --stop--> STOPPED

How malformed input is handled (Twilio's side never reads errors back, so none are sent; each is
counted in ``timbre_errors{code}`` by the handler):

* not JSON, not an object, or a known event with a missing or ill-typed field: ``BadJson`` /
  ``BadMessage``, not fatal: the frame is dropped and the call goes on;
* an unknown ``event``: ``UnknownType``, not fatal (Twilio adds events over time);
* a binary frame: ``BinaryNotSupported``, not fatal;
* an event the state forbids (``media`` before ``start``, a second ``start``, anything after
  ``stop``): ``StreamSequenceError``, fatal: the socket closes with 1008;
* a ``streamSid`` other than this stream's: ``BadMessage``, not fatal.
"""

from __future__ import annotations

import base64
import binascii
import enum
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar, Final, Literal

from session.errors import BadJson, BadMessage, BinaryNotSupported, TimbreError, UnknownType

MULAW_ENCODING: Final = "audio/x-mulaw"
SAMPLE_RATE_HZ: Final = 8000
FRAME_MS: Final = 20
FRAME_BYTES: Final = SAMPLE_RATE_HZ * FRAME_MS // 1000
"""One 20 ms frame of 8 kHz mu-law: 160 bytes."""

JsonObject = dict[str, Any]


class StreamSequenceError(TimbreError):
    """An event this stream's state forbids; names the state. Fatal (close 1008)."""

    code = "protocol_violation"
    http_status = 400
    close_code = 1008


# --- Twilio -> us -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Connected:
    type: ClassVar[Literal["connected"]] = "connected"
    protocol: str
    version: str

    def to_dict(self) -> JsonObject:
        return {"event": self.type, "protocol": self.protocol, "version": self.version}

    @classmethod
    def from_dict(cls, obj: JsonObject) -> Connected:
        return cls(_str(obj, "protocol"), _str(obj, "version"))


@dataclass(frozen=True)
class MediaFormat:
    encoding: str = MULAW_ENCODING
    sample_rate_hz: int = SAMPLE_RATE_HZ
    channels: int = 1

    def to_dict(self) -> JsonObject:
        return {"encoding": self.encoding, "sampleRate": self.sample_rate_hz,
                "channels": self.channels}

    @classmethod
    def from_dict(cls, obj: JsonObject) -> MediaFormat:
        return cls(_str(obj, "encoding"), _int(obj, "sampleRate"), _int(obj, "channels"))


@dataclass(frozen=True)
class Start:
    type: ClassVar[Literal["start"]] = "start"
    sequence_number: int
    stream_sid: str
    account_sid: str
    call_sid: str
    tracks: tuple[str, ...]
    media_format: MediaFormat
    custom_parameters: dict[str, str] = field(default_factory=dict)
    """From ``<Parameter name=... value=...>`` in the TwiML; Timbre reads ``voice``."""

    def to_dict(self) -> JsonObject:
        return {
            "event": self.type,
            "sequenceNumber": str(self.sequence_number),
            "start": {
                "accountSid": self.account_sid,
                "streamSid": self.stream_sid,
                "callSid": self.call_sid,
                "tracks": list(self.tracks),
                "customParameters": dict(self.custom_parameters),
                "mediaFormat": self.media_format.to_dict(),
            },
            "streamSid": self.stream_sid,
        }

    @classmethod
    def from_dict(cls, obj: JsonObject) -> Start:
        body = _object(obj, "start")
        tracks = body.get("tracks", [])
        if not isinstance(tracks, list) or not all(isinstance(t, str) for t in tracks):
            raise BadMessage("field 'start.tracks' must be a list of strings")
        params = body.get("customParameters") or {}
        if not isinstance(params, dict) or not all(isinstance(v, str) for v in params.values()):
            raise BadMessage("field 'start.customParameters' must map names to strings")
        return cls(_seq(obj), _str(body, "streamSid", "start."), _str(body, "accountSid", "start."),
                   _str(body, "callSid", "start."), tuple(tracks),
                   MediaFormat.from_dict(_object(body, "mediaFormat", "start.")), dict(params))


@dataclass(frozen=True)
class Media:
    """Call audio from Twilio: one chunk of ``track`` (``inbound``/``outbound``)."""

    type: ClassVar[Literal["media"]] = "media"
    sequence_number: int
    stream_sid: str
    track: str
    chunk: int
    timestamp_ms: int
    payload: bytes

    def to_dict(self) -> JsonObject:
        return {
            "event": self.type,
            "sequenceNumber": str(self.sequence_number),
            "media": {"track": self.track, "chunk": str(self.chunk),
                      "timestamp": str(self.timestamp_ms), "payload": _b64(self.payload)},
            "streamSid": self.stream_sid,
        }

    @classmethod
    def from_dict(cls, obj: JsonObject) -> Media:
        body = _object(obj, "media")
        return cls(_seq(obj), _str(obj, "streamSid"), _str(body, "track", "media."),
                   _int(body, "chunk", "media."), _int(body, "timestamp", "media."),
                   _payload(body))


@dataclass(frozen=True)
class Dtmf:
    type: ClassVar[Literal["dtmf"]] = "dtmf"
    sequence_number: int
    stream_sid: str
    track: str
    digit: str

    def to_dict(self) -> JsonObject:
        return {"event": self.type, "streamSid": self.stream_sid,
                "sequenceNumber": str(self.sequence_number),
                "dtmf": {"track": self.track, "digit": self.digit}}

    @classmethod
    def from_dict(cls, obj: JsonObject) -> Dtmf:
        body = _object(obj, "dtmf")
        return cls(_seq(obj), _str(obj, "streamSid"), _str(body, "track", "dtmf."),
                   _str(body, "digit", "dtmf."))


@dataclass(frozen=True)
class Mark:
    """Twilio's echo of a mark we sent: the audio queued before it has played (or was cleared)."""

    type: ClassVar[Literal["mark"]] = "mark"
    sequence_number: int
    stream_sid: str
    name: str

    def to_dict(self) -> JsonObject:
        return {"event": self.type, "sequenceNumber": str(self.sequence_number),
                "streamSid": self.stream_sid, "mark": {"name": self.name}}

    @classmethod
    def from_dict(cls, obj: JsonObject) -> Mark:
        return cls(_seq(obj), _str(obj, "streamSid"), _str(_object(obj, "mark"), "name", "mark."))


@dataclass(frozen=True)
class Stop:
    type: ClassVar[Literal["stop"]] = "stop"
    sequence_number: int
    stream_sid: str
    account_sid: str
    call_sid: str

    def to_dict(self) -> JsonObject:
        return {"event": self.type, "sequenceNumber": str(self.sequence_number),
                "stop": {"accountSid": self.account_sid, "callSid": self.call_sid},
                "streamSid": self.stream_sid}

    @classmethod
    def from_dict(cls, obj: JsonObject) -> Stop:
        body = _object(obj, "stop")
        return cls(_seq(obj), _str(obj, "streamSid"), _str(body, "accountSid", "stop."),
                   _str(body, "callSid", "stop."))


InboundMessage = Connected | Start | Media | Dtmf | Mark | Stop


# --- us -> Twilio -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class OutboundMedia:
    """Audio for Twilio to play: raw 8 kHz mu-law (base64 on the wire)."""

    type: ClassVar[Literal["media"]] = "media"
    stream_sid: str
    payload: bytes

    def to_dict(self) -> JsonObject:
        return {"event": self.type, "streamSid": self.stream_sid,
                "media": {"payload": _b64(self.payload)}}

    @classmethod
    def from_dict(cls, obj: JsonObject) -> OutboundMedia:
        return cls(_str(obj, "streamSid"), _payload(_object(obj, "media")))


@dataclass(frozen=True)
class OutboundMark:
    """Asks Twilio to echo ``name`` back once the audio sent before it has played."""

    type: ClassVar[Literal["mark"]] = "mark"
    stream_sid: str
    name: str

    def to_dict(self) -> JsonObject:
        return {"event": self.type, "streamSid": self.stream_sid, "mark": {"name": self.name}}

    @classmethod
    def from_dict(cls, obj: JsonObject) -> OutboundMark:
        return cls(_str(obj, "streamSid"), _str(_object(obj, "mark"), "name", "mark."))


@dataclass(frozen=True)
class Clear:
    """Asks Twilio to drop the audio it has buffered (marks pending are echoed back)."""

    type: ClassVar[Literal["clear"]] = "clear"
    stream_sid: str

    def to_dict(self) -> JsonObject:
        return {"event": self.type, "streamSid": self.stream_sid}

    @classmethod
    def from_dict(cls, obj: JsonObject) -> Clear:
        return cls(_str(obj, "streamSid"))


OutboundMessage = OutboundMedia | OutboundMark | Clear

_INBOUND: Final[dict[str, Callable[[JsonObject], InboundMessage]]] = {
    cls.type: cls.from_dict for cls in (Connected, Start, Media, Dtmf, Mark, Stop)}
_OUTBOUND: Final[dict[str, Callable[[JsonObject], OutboundMessage]]] = {
    cls.type: cls.from_dict for cls in (OutboundMedia, OutboundMark, Clear)}


def to_wire(message: InboundMessage | OutboundMessage) -> str:
    """One message as the JSON text frame Twilio sends or expects."""
    return json.dumps(message.to_dict(), separators=(",", ":"))


def parse_inbound(data: str | bytes) -> InboundMessage:
    """Parse a frame from Twilio. Raises (none fatal) ``BinaryNotSupported``, ``BadJson``,
    ``UnknownType`` or ``BadMessage`` naming the field. Unknown extra fields are ignored."""
    obj = _frame(data)
    parse = _INBOUND.get(_event(obj))
    if parse is None:
        raise UnknownType(f"unknown event {obj.get('event')!r}")
    return parse(obj)


def parse_outbound(data: str | bytes) -> OutboundMessage:
    """Parse a frame we send to Twilio (for tests and tools); raises like ``parse_inbound``."""
    obj = _frame(data)
    parse = _OUTBOUND.get(_event(obj))
    if parse is None:
        raise UnknownType(f"unknown event {obj.get('event')!r}")
    return parse(obj)


# --- the stream's state -----------------------------------------------------------------------------


class StreamState(enum.Enum):
    AWAITING_START = "awaiting_start"
    STREAMING = "streaming"
    STOPPED = "stopped"


class TwilioStream:
    """One Media Stream: frames from Twilio in (``receive``), frames to Twilio out (``media``,
    ``mark``, ``clear``; only while ``STREAMING``, else ``StreamSequenceError``). No I/O."""

    def __init__(self) -> None:
        self.state = StreamState.AWAITING_START
        self.start: Start | None = None

    @property
    def stream_sid(self) -> str:
        if self.start is None:
            raise StreamSequenceError(f"no streamSid yet: the stream is {self.state.value}")
        return self.start.stream_sid

    def receive(self, data: str | bytes) -> InboundMessage:
        """Check one frame from Twilio against the stream; raises as the module doc says."""
        message = parse_inbound(data)
        if isinstance(message, Connected):
            self._require(StreamState.AWAITING_START, message)
        elif isinstance(message, Start):
            self._require(StreamState.AWAITING_START, message)
            self.start, self.state = message, StreamState.STREAMING
        else:
            self._require(StreamState.STREAMING, message)
            if message.stream_sid != self.stream_sid:
                raise BadMessage(f"streamSid {message.stream_sid!r} is not this stream's")
            if isinstance(message, Stop):
                self.state = StreamState.STOPPED
        return message

    def media(self, payload: bytes) -> str:
        return to_wire(OutboundMedia(self._sending(), payload))

    def mark(self, name: str) -> str:
        return to_wire(OutboundMark(self._sending(), name))

    def clear(self) -> str:
        return to_wire(Clear(self._sending()))

    def _sending(self) -> str:
        if self.state is not StreamState.STREAMING:
            raise StreamSequenceError(f"cannot send: the stream is {self.state.value}")
        return self.stream_sid

    def _require(self, state: StreamState, message: InboundMessage) -> None:
        if self.state is not state:
            raise StreamSequenceError(
                f"unexpected '{message.type}' event: the stream is {self.state.value}")


# --- field readers: each raises BadMessage naming the field ----------------------------------------


def _frame(data: str | bytes) -> JsonObject:
    if not isinstance(data, str):
        raise BinaryNotSupported("Media Streams frames are JSON text")
    try:
        obj = json.loads(data)
    except ValueError as err:
        raise BadJson(f"not valid JSON: {err}") from None
    except RecursionError:  # nested past the parser's depth
        raise BadJson("not valid JSON: nested too deeply") from None
    if not isinstance(obj, dict):
        raise BadJson(f"expected a JSON object, got {type(obj).__name__}")
    return obj


def _event(obj: JsonObject) -> str:
    event = obj.get("event")
    return event if isinstance(event, str) else ""


def _object(obj: JsonObject, name: str, where: str = "") -> JsonObject:
    value = obj.get(name)
    if not isinstance(value, dict):
        raise BadMessage(f"field '{where}{name}' must be an object")
    return value


def _str(obj: JsonObject, name: str, where: str = "") -> str:
    value = obj.get(name)
    if not isinstance(value, str):
        raise BadMessage(f"field '{where}{name}' must be a string")
    return value


def _int(obj: JsonObject, name: str, where: str = "") -> int:
    """Twilio writes counters as decimal strings (``"chunk": "1"``) and rates as numbers."""
    value = obj.get(name)
    if isinstance(value, str) and value.isascii() and value.isdigit():
        return int(value)
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return value
    raise BadMessage(f"field '{where}{name}' must be a non-negative integer")


def _seq(obj: JsonObject) -> int:
    return _int(obj, "sequenceNumber")


def _payload(body: JsonObject) -> bytes:
    text = _str(body, "payload", "media.")
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise BadMessage("field 'media.payload' is not base64") from None


def _b64(payload: bytes) -> str:
    return base64.b64encode(payload).decode("ascii")
