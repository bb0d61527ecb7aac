"""The query string of ElevenLabs' text-to-speech routes, sans I/O: the WebSockets' connect
parameters and the HTTP routes' ``output_format``, plus the voice options every route shares.

``language_code`` is ElevenLabs' own field (ISO 639-1; a query value on the WebSockets, a body field
on HTTP, read by ``realtime.elevenlabs.http``). ``pitch`` (semitones) is a Timbre extension:
ElevenLabs has no such setting, and their clients never send it, so it changes nothing for them.
Both are checked here for their shape; whether the voice speaks the language is checked when the
voice is known (``session.languages.check_language``, error ``unsupported_language``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from realtime.elevenlabs.errors import ElevenLabsError
from realtime.protocol_fields import is_language_code
from session.pitch import MAX_PITCH, MIN_PITCH

DEFAULT_OUTPUT_FORMAT: Final = "mp3_44100_128"
DEFAULT_INACTIVITY_TIMEOUT_S: Final = 20
MAX_INACTIVITY_TIMEOUT_S: Final = 180


@dataclass(frozen=True)
class StreamQuery:
    """The query string of either WebSocket (and the HTTP endpoints' ``output_format``)."""

    output_format: str = DEFAULT_OUTPUT_FORMAT
    inactivity_timeout_s: int = DEFAULT_INACTIVITY_TIMEOUT_S
    sync_alignment: bool = False
    """Accepted; alignment always rides on the audio chunk it describes."""
    auto_mode: bool = False
    """Accepted; Timbre always speaks a unit as soon as the segmenter completes one."""
    model_id: str | None = None
    """Accepted and ignored: the voice decides the engine."""
    authorization: str | None = None
    language_code: str | None = None
    """As asked; the handler checks that the voice speaks it."""
    pitch: float = 0.0
    """Semitones (a Timbre extension)."""


def parse_query(query: dict[str, str]) -> StreamQuery:
    """Raises ElevenLabsError (``invalid_request``) for a value ElevenLabs would refuse, or a
    ``language_code`` / ``pitch`` of the wrong shape."""
    try:
        timeout = int(query.get("inactivity_timeout", DEFAULT_INACTIVITY_TIMEOUT_S))
    except ValueError:
        raise ElevenLabsError("inactivity_timeout must be an integer", "invalid_request") from None
    if not 1 <= timeout <= MAX_INACTIVITY_TIMEOUT_S:
        raise ElevenLabsError(
            f"inactivity_timeout must be between 1 and {MAX_INACTIVITY_TIMEOUT_S} seconds",
            "invalid_request")
    return StreamQuery(
        output_format=query.get("output_format", DEFAULT_OUTPUT_FORMAT),
        inactivity_timeout_s=timeout,
        sync_alignment=_flag(query, "sync_alignment"),
        auto_mode=_flag(query, "auto_mode"),
        model_id=query.get("model_id"),
        authorization=query.get("authorization") or query.get("xi_api_key"),
        language_code=language_code(query.get("language_code")),
        pitch=pitch(query.get("pitch")),
    )


def language_code(value: object) -> str | None:
    """``language_code`` (a query value or a body field; None: the voice's own language), checked
    for its shape only. Raises ElevenLabsError (``invalid_request``)."""
    if value is None:
        return None
    if not isinstance(value, str) or not is_language_code(value):
        raise ElevenLabsError("language_code must be a language code such as 'en' or 'fr'",
                              "invalid_request")
    return value


def pitch(value: str | None) -> float:
    """The ``pitch`` query value (None: 0), in semitones. Raises ElevenLabsError
    (``invalid_request``)."""
    if value is None:
        return 0.0
    try:
        semitones = float(value)
    except ValueError:
        raise ElevenLabsError("pitch must be a number of semitones", "invalid_request") from None
    if not MIN_PITCH <= semitones <= MAX_PITCH:  # NaN fails too
        raise ElevenLabsError(f"pitch must be between {MIN_PITCH:g} and {MAX_PITCH:g} semitones",
                              "invalid_request")
    return semitones


def _flag(query: dict[str, str], name: str) -> bool:
    value = query.get(name, "false").lower()
    if value not in ("true", "false"):
        raise ElevenLabsError(f"{name} must be true or false", "invalid_request")
    return value == "true"


def bearer(value: str | None) -> str | None:
    """The key in an ``authorization`` value, with or without its ``Bearer`` scheme."""
    if not value:
        return None
    scheme, _, rest = value.strip().partition(" ")
    return rest.strip() if scheme.lower() == "bearer" and rest.strip() else value.strip()
