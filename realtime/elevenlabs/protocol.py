"""ElevenLabs' text-to-speech WebSocket protocols, sans I/O: ``stream-input`` (one context per
socket) and ``multi-stream-input`` (many contexts, keyed by ``context_id``).

``ElevenLabsProtocol.receive`` takes one text frame and returns a typed ``ClientMessage`` (or raises
``ElevenLabsError``, which the transport sends as ElevenLabs' error object and then closes with its
code); ``serialize`` turns a ``ServerMessage`` into the JSON text ElevenLabs sends. The transport
(``realtime.elevenlabs.handler``) only moves frames and calls the session.

Wire shapes (client -> server)::

    {"text": " ", "voice_settings": {...}, "generation_config": {"chunk_length_schedule": [...]},
     "xi_api_key": "...", "authorization": "Bearer ...", "context_id": "..."}   # the first message
    {"text": "Hello ", "try_trigger_generation": false, "flush": false, "context_id": "..."}
    {"text": ""}                                  # stream-input: end of input; multi: keep-alive
    {"context_id": "a", "flush": true}            # multi: speak what is buffered (also with
                                                  # "text": "", as LiveKit sends it)
    {"context_id": "a", "close_context": true}    # multi: no more text for that context
    {"close_socket": true}                        # multi: finish every context, then close

and back::

    {"audio": "<base64>", "isFinal": null, "normalizedAlignment": {...}, "alignment":
     {"chars": [...], "charStartTimesMs": [...], "charDurationsMs": [...]}, "contextId": "a"}
    {"isFinal": true, "contextId": "a"}
    {"message": "...", "error": "invalid_input_message", "code": 1008}

``contextId`` only appears on ``multi-stream-input``. Times in an alignment are milliseconds from
the start of the audio chunk that carries it, as ElevenLabs documents.
"""

from __future__ import annotations

import base64
import enum
import json
import math
from dataclasses import dataclass, field
from typing import Any, Final, Literal

from realtime.elevenlabs.errors import POLICY_VIOLATION, invalid_message
from realtime.elevenlabs.errors import ElevenLabsError as ElevenLabsError  # noqa: PLC0414
from realtime.elevenlabs.query import bearer
from realtime.elevenlabs.query import parse_query as parse_query  # noqa: PLC0414
from session.errors import TimbreError

# The connect query (``realtime.elevenlabs.query``) and the error shape
# (``realtime.elevenlabs.errors``) live in their own modules; ``ElevenLabsError`` and
# ``parse_query`` stay importable from here, where the protocol's tests look for them.

SPEED_RANGE: Final = (0.7, 1.2)
"""ElevenLabs' ``voice_settings.speed`` range (the engine speaks it as is)."""
CHUNK_LENGTH_RANGE: Final = (50, 500)
DEFAULT_CONTEXT_ID: Final = "default"
"""The context of ``stream-input``, and of ``multi-stream-input`` messages that name none."""
MAX_CONTEXT_ID_CHARS: Final = 256
"""Longer ``context_id``s are refused: each is kept (and echoed) while its context lives."""


class InvalidProtocolState(RuntimeError):
    """A bug: the transport drove the protocol in a way its lifecycle does not allow."""


# -- client messages --------------------------------------------------------------------------------


@dataclass(frozen=True)
class VoiceSettings:
    stability: float | None = None
    similarity_boost: float | None = None
    style: float | None = None
    use_speaker_boost: bool | None = None
    speed: float | None = None
    """The only setting the engine honours (0.7-1.2); the others are accepted and ignored."""

    @classmethod
    def parse(cls, data: object) -> VoiceSettings:
        if not isinstance(data, dict):
            raise invalid_message("voice_settings must be an object")
        values: dict[str, Any] = {}
        for name in ("stability", "similarity_boost", "style", "speed"):
            value = data.get(name)
            if value is not None:
                values[name] = _number(value, f"voice_settings.{name}")
        boost = data.get("use_speaker_boost")
        if boost is not None and not isinstance(boost, bool):
            raise invalid_message("voice_settings.use_speaker_boost must be a boolean")
        speed = values.get("speed")
        if speed is not None and not SPEED_RANGE[0] <= speed <= SPEED_RANGE[1]:
            raise ElevenLabsError(
                f"voice_settings.speed must be between {SPEED_RANGE[0]} and {SPEED_RANGE[1]}",
                "invalid_voice_settings")
        return cls(use_speaker_boost=boost, **values)

    def to_json(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if v is not None}


@dataclass(frozen=True)
class InitializeConnection:
    """The first message of a socket (or of a ``multi-stream-input`` context): settings and, if the
    handshake carried none, the credential. Its ``text`` is normally a single space."""

    text: str = " "
    voice_settings: VoiceSettings | None = None
    chunk_length_schedule: tuple[float, ...] | None = None
    """Accepted and checked; Timbre's segmenter decides when a unit is spoken."""
    xi_api_key: str | None = None
    authorization: str | None = None
    context_id: str | None = None
    type: Literal["initialize"] = "initialize"

    @property
    def credential(self) -> str | None:
        return self.xi_api_key or bearer(self.authorization)

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"text": self.text}
        if self.voice_settings is not None:
            out["voice_settings"] = self.voice_settings.to_json()
        if self.chunk_length_schedule is not None:
            out["generation_config"] = {"chunk_length_schedule": list(self.chunk_length_schedule)}
        for name in ("xi_api_key", "authorization", "context_id"):
            if getattr(self, name) is not None:
                out[name] = getattr(self, name)
        return out


@dataclass(frozen=True)
class SendText:
    text: str
    try_trigger_generation: bool = False
    """Deprecated by ElevenLabs; accepted and ignored."""
    flush: bool = False
    context_id: str | None = None
    type: Literal["text"] = "text"

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"text": self.text}
        if self.try_trigger_generation:
            out["try_trigger_generation"] = True
        if self.flush:
            out["flush"] = True
        if self.context_id is not None:
            out["context_id"] = self.context_id
        return out


@dataclass(frozen=True)
class EndOfInput:
    """``stream-input``'s ``{"text": ""}``: speak the rest, send ``isFinal``, close."""

    type: Literal["end_of_input"] = "end_of_input"

    def to_json(self) -> dict[str, Any]:
        return {"text": ""}


@dataclass(frozen=True)
class KeepContextAlive:
    """``multi-stream-input``'s ``{"text": "", "context_id": ...}``: resets the inactivity clock."""

    context_id: str
    type: Literal["keep_alive"] = "keep_alive"

    def to_json(self) -> dict[str, Any]:
        return {"text": "", "context_id": self.context_id}


@dataclass(frozen=True)
class FlushContext:
    context_id: str
    type: Literal["flush"] = "flush"

    def to_json(self) -> dict[str, Any]:
        return {"context_id": self.context_id, "flush": True}


@dataclass(frozen=True)
class CloseContext:
    """No more text for this context; ``isFinal`` follows. Right after a flush (nothing sent since)
    the flushed text is still spoken first: Pipecat and LiveKit end every turn with flush then
    ``close_context`` and wait for the audio. With text sent since the last flush it is a barge-in:
    what is not yet sent is dropped (the transport decides, see ``ElevenLabsBridge``)."""

    context_id: str
    type: Literal["close_context"] = "close_context"

    def to_json(self) -> dict[str, Any]:
        return {"context_id": self.context_id, "close_context": True}


@dataclass(frozen=True)
class CloseSocket:
    """Speak what every context holds, send each ``isFinal``, then close the socket."""

    type: Literal["close_socket"] = "close_socket"

    def to_json(self) -> dict[str, Any]:
        return {"close_socket": True}


ClientMessage = (InitializeConnection | SendText | EndOfInput | KeepContextAlive | FlushContext
                 | CloseContext | CloseSocket)


def parse_client_message(data: str | bytes, *, multi: bool, first: bool) -> ClientMessage:
    """One client frame in ElevenLabs' shapes. ``first``: the socket's first message, read as the
    initialisation. Raises ElevenLabsError (``invalid_input_message``)."""
    obj = _json_object(data)
    context_id = _optional_string(obj, "context_id") if multi else None
    if context_id is not None and len(context_id) > MAX_CONTEXT_ID_CHARS:
        raise invalid_message(f"'context_id' must be at most {MAX_CONTEXT_ID_CHARS} characters")
    _check_unicode(obj, "text", "context_id")
    if multi and obj.get("close_socket") is True:
        return CloseSocket()
    if multi and obj.get("close_context") is True:
        return CloseContext(_required_context(context_id, "close_context"))
    text = obj.get("text")
    if first or "voice_settings" in obj or "generation_config" in obj:
        if not isinstance(text, str):
            raise invalid_message("the first message must carry 'text' (a single space)")
        return _initialize(obj, text, context_id)
    if text is None and multi and obj.get("flush") is True:
        return FlushContext(_required_context(context_id, "flush"))
    if not isinstance(text, str):
        raise invalid_message("'text' must be a string")
    if text == "":
        if multi and _bool(obj, "flush"):  # LiveKit ends every context's input this way
            return FlushContext(context_id or DEFAULT_CONTEXT_ID)
        if multi:
            return KeepContextAlive(context_id or DEFAULT_CONTEXT_ID)
        return EndOfInput()
    return SendText(text, _bool(obj, "try_trigger_generation"), _bool(obj, "flush"), context_id)


def _initialize(obj: dict[str, Any], text: str, context_id: str | None) -> InitializeConnection:
    settings = obj.get("voice_settings")
    schedule = None
    config = obj.get("generation_config")
    if config is not None:
        if not isinstance(config, dict):
            raise invalid_message("generation_config must be an object")
        raw = config.get("chunk_length_schedule")
        if raw is not None:
            schedule = _schedule(raw)
    return InitializeConnection(
        text=text,
        voice_settings=None if settings is None else VoiceSettings.parse(settings),
        chunk_length_schedule=schedule,
        xi_api_key=_optional_string(obj, "xi_api_key"),
        authorization=_optional_string(obj, "authorization"),
        context_id=context_id,
    )


def _schedule(raw: object) -> tuple[float, ...]:
    if not isinstance(raw, list) or not raw:
        raise invalid_message("generation_config.chunk_length_schedule must be a list of numbers")
    values = tuple(_number(v, "chunk_length_schedule") for v in raw)
    low, high = CHUNK_LENGTH_RANGE
    if any(not low <= v <= high for v in values):
        raise ElevenLabsError(
            f"chunk_length_schedule values must be between {low} and {high}", "invalid_request")
    return values


def _json_object(data: str | bytes) -> dict[str, Any]:
    try:
        obj = json.loads(data)
    except (ValueError, UnicodeDecodeError, RecursionError):  # Recursion: nested too deeply
        raise invalid_message("not JSON") from None
    if not isinstance(obj, dict):
        raise invalid_message("a message must be a JSON object")
    return obj


def _check_unicode(obj: dict[str, Any], *names: str) -> None:
    """Refuse a string field holding a lone surrogate (``"\\ud800"``): it could not be spoken,
    nor echoed back in an alignment."""
    for name in names:
        value = obj.get(name)
        if isinstance(value, str):
            try:
                value.encode("utf-8")
            except UnicodeEncodeError:
                raise invalid_message(f"'{name}' is not valid Unicode") from None


def _optional_string(obj: dict[str, Any], name: str) -> str | None:
    value = obj.get(name)
    if value is not None and (not isinstance(value, str) or not value):
        raise invalid_message(f"'{name}' must be a non-empty string")
    return value


def _required_context(context_id: str | None, what: str) -> str:
    if context_id is None:
        raise invalid_message(f"'{what}' needs a 'context_id'")
    return context_id


def _bool(obj: dict[str, Any], name: str) -> bool:
    value = obj.get(name, False)
    if not isinstance(value, bool):
        raise invalid_message(f"'{name}' must be a boolean")
    return value


def _number(value: object, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise invalid_message(f"{name} must be a number")
    return float(value)


# -- server messages --------------------------------------------------------------------------------


@dataclass(frozen=True)
class CharAlignment:
    chars: tuple[str, ...]
    char_start_times_ms: tuple[int, ...]
    char_durations_ms: tuple[int, ...]

    def to_json(self) -> dict[str, Any]:
        return {"chars": list(self.chars), "charStartTimesMs": list(self.char_start_times_ms),
                "charDurationsMs": list(self.char_durations_ms)}

    @classmethod
    def parse(cls, obj: dict[str, Any]) -> CharAlignment:
        return cls(tuple(obj["chars"]), tuple(obj["charStartTimesMs"]),
                   tuple(obj["charDurationsMs"]))


@dataclass(frozen=True)
class AudioOutput:
    audio: bytes
    alignment: CharAlignment | None = None
    normalized_alignment: CharAlignment | None = None
    context_id: str | None = None
    type: Literal["audio"] = "audio"

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "audio": base64.b64encode(self.audio).decode("ascii"),
            "isFinal": None,
            "normalizedAlignment": _alignment_json(self.normalized_alignment),
            "alignment": _alignment_json(self.alignment),
        }
        if self.context_id is not None:
            out["contextId"] = self.context_id
        return out


@dataclass(frozen=True)
class FinalOutput:
    context_id: str | None = None
    type: Literal["final"] = "final"

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"isFinal": True}
        if self.context_id is not None:
            out["contextId"] = self.context_id
        return out


@dataclass(frozen=True)
class ErrorOutput:
    message: str
    error: str
    code: int = POLICY_VIOLATION
    type: Literal["error"] = "error"

    def to_json(self) -> dict[str, Any]:
        return {"message": self.message, "error": self.error, "code": self.code}

    @classmethod
    def of(cls, err: TimbreError) -> ErrorOutput:
        return cls(err.message, err.code, POLICY_VIOLATION)


ServerMessage = AudioOutput | FinalOutput | ErrorOutput


def _alignment_json(alignment: CharAlignment | None) -> dict[str, Any] | None:
    return None if alignment is None else alignment.to_json()


def serialize(message: ServerMessage) -> str:
    return json.dumps(message.to_json(), separators=(",", ":"), ensure_ascii=False)


def parse_server_message(data: str | bytes) -> ServerMessage:
    """The inverse of ``serialize`` (for clients and tests)."""
    obj = json.loads(data)
    context_id = obj.get("contextId")
    if "error" in obj and "audio" not in obj:
        return ErrorOutput(obj["message"], obj["error"], obj.get("code", POLICY_VIOLATION))
    if obj.get("isFinal") is True:
        return FinalOutput(context_id)
    align, norm = obj.get("alignment"), obj.get("normalizedAlignment")
    return AudioOutput(base64.b64decode(obj.get("audio") or ""),
                       None if align is None else CharAlignment.parse(align),
                       None if norm is None else CharAlignment.parse(norm), context_id)


# -- the session state machine ----------------------------------------------------------------------


class SocketState(enum.Enum):
    AWAITING_INIT = "awaiting_init"
    """Nothing received yet: the first message must initialise."""
    OPEN = "open"
    ENDING = "ending"
    """End of input (or close_socket): the contexts finish, then the socket closes."""
    CLOSED = "closed"


_SOCKET_TRANSITIONS: Final = {
    SocketState.AWAITING_INIT: {SocketState.OPEN, SocketState.CLOSED},
    SocketState.OPEN: {SocketState.ENDING, SocketState.CLOSED},
    SocketState.ENDING: {SocketState.CLOSED},
    SocketState.CLOSED: set(),
}


@dataclass
class ElevenLabsProtocol:
    """One socket's lifecycle. ``receive`` checks a frame against the state; ``open_contexts`` is the
    set of contexts that will still send ``isFinal``."""

    multi: bool
    max_message_bytes: int = 1 << 20
    state: SocketState = SocketState.AWAITING_INIT
    open_contexts: set[str] = field(default_factory=set)

    def _move(self, new: SocketState) -> None:
        if new not in _SOCKET_TRANSITIONS[self.state]:
            raise InvalidProtocolState(
                f"socket cannot go from {self.state.value} to {new.value}")
        self.state = new

    def receive(self, data: str | bytes) -> ClientMessage:
        """Raises ElevenLabsError for a frame ElevenLabs would refuse (the socket then closes)."""
        if self.state is SocketState.CLOSED:
            raise InvalidProtocolState("socket is closed")
        size = len(data.encode("utf-8", "surrogatepass") if isinstance(data, str) else data)
        if size > self.max_message_bytes:
            raise ElevenLabsError(f"message larger than {self.max_message_bytes} bytes",
                                  "message_too_large")
        first = self.state is SocketState.AWAITING_INIT
        message = parse_client_message(data, multi=self.multi, first=first)
        if first:
            self._move(SocketState.OPEN)
        if isinstance(message, EndOfInput | CloseSocket) and self.state is SocketState.OPEN:
            self._move(SocketState.ENDING)
        return message

    def context_of(self, message: ClientMessage) -> str:
        """The context a message is for (``DEFAULT_CONTEXT_ID`` when it names none)."""
        return getattr(message, "context_id", None) or DEFAULT_CONTEXT_ID

    def context_started(self, context_id: str) -> None:
        self.open_contexts.add(context_id)

    def context_finished(self, context_id: str) -> FinalOutput:
        """The context ended: its ``isFinal`` message."""
        self.open_contexts.discard(context_id)
        return FinalOutput(context_id if self.multi else None)

    def audio(self, context_id: str, audio: bytes, alignment: CharAlignment | None) -> AudioOutput:
        return AudioOutput(audio, alignment, alignment, context_id if self.multi else None)

    @property
    def done(self) -> bool:
        """Ending and every context has sent its ``isFinal``: close the socket now."""
        return self.state is SocketState.ENDING and not self.open_contexts

    def close(self) -> None:
        if self.state is not SocketState.CLOSED:
            self._move(SocketState.CLOSED)
