"""The connect query of ``GET /v1/stream`` (docs/protocol.md, "Connecting"): the session's
default voice, output format and voice options, checked before the session exists.

Values arrive as strings; every refusal is a ``BadRequest``-family error, which the handler sends
as an ``error`` message before closing with 4400. Whether the voice speaks ``language`` is checked
by the handler once the voice is resolved (``session.languages.check_language``).
"""

from __future__ import annotations

from dataclasses import dataclass

from realtime.audio import SUPPORTED_FORMATS, SUPPORTED_SAMPLE_RATES
from realtime.codecs import OutputFormat, parse_output_format
from realtime.protocol_fields import MAX_SPEED, MIN_SPEED, is_language_code
from session.errors import BadFormat, BadRequest, BadSampleRate, with_close
from session.pitch import MAX_PITCH, MIN_PITCH


@dataclass(frozen=True)
class StreamParams:
    voice: str
    format: str
    sample_rate: int
    speed: float
    pitch: float = 0.0
    """Semitones."""
    language: str | None = None
    """As asked; ``stream_handler`` checks it against the voice (``check_language``)."""


def parse_query(query: dict[str, str], default_voice: str) -> StreamParams:
    """Validate the connect query. Raises BadRequest-family errors (fatal, close 4400). Whether
    the voice speaks ``language`` is checked once the voice is resolved."""
    try:
        rate = int(query.get("sample_rate", "24000"))
    except ValueError:
        raise with_close(BadSampleRate("sample_rate must be an integer"), 4400) from None
    if rate not in SUPPORTED_SAMPLE_RATES:
        raise with_close(BadSampleRate(
            f"sample_rate {rate} is not one of {SUPPORTED_SAMPLE_RATES}"), 4400)
    fmt = query.get("format", "pcm_s16le")
    if fmt not in SUPPORTED_FORMATS:
        raise with_close(BadFormat(f"format {fmt!r} is not one of {SUPPORTED_FORMATS}"), 4400)
    rate = native_format(fmt, rate).sample_rate_hz
    speed = _query_number(query, "speed", 1.0, MIN_SPEED, MAX_SPEED)
    pitch = _query_number(query, "pitch", 0.0, MIN_PITCH, MAX_PITCH, " semitones")
    language = query.get("language")
    if language is not None and not is_language_code(language):
        raise BadRequest("language must be a language code such as 'en' or 'pt-br'")
    return StreamParams(query.get("voice", default_voice), fmt, rate, speed, pitch, language)


def _query_number(query: dict[str, str], name: str, default: float, low: float, high: float,
                  unit: str = "") -> float:
    """A numeric query value in ``[low, high]`` (NaN and infinities are refused)."""
    try:
        value = float(query.get(name, default))
    except ValueError:
        raise BadRequest(f"{name} must be a number") from None
    if not low <= value <= high:
        raise BadRequest(f"{name} must be between {low:g} and {high:g}{unit}")
    return value


def native_format(name: str, sample_rate: int) -> OutputFormat:
    """The output format of a native stream: ``pcm_s16le`` at the rate asked for, the others at
    the rate their name fixes (``ulaw_8000``: 8 kHz; ``mp3``: 44.1 kHz; ``opus``: 48 kHz)."""
    return parse_output_format(name, sample_rate if name == "pcm_s16le" else None)
