"""OpenAI-compatible ``POST /v1/audio/speech``: the official ``openai`` SDK works against Timbre with
only its ``base_url`` changed (``OpenAI(base_url="https://timbre.example/v1", api_key=KEY)``).

The request is OpenAI's JSON body; the answer is the audio, streamed as a chunked response while it
is synthesised (the first bytes leave once the first unit is spoken, not when the whole text is).
How each field is read:

``model``
    Required, any non-empty string (``tts-1``, ``tts-1-hd``, ``gpt-4o-mini-tts``, ...). It does not
    change the engine: every model name speaks with the voice's own engine.
``input``
    Required, 1 to 4096 characters (OpenAI's limit).
``voice``
    OpenAI's voice names (``OPENAI_VOICES``: alloy, ash, ballad, cedar, coral, echo, fable, marin,
    nova, onyx, sage, shimmer, verse) all map to the stock voice ``piper:joe`` until Timbre has more
    stock voices. Any Timbre voice id (``piper:joe``, ``joe``) or one of the caller's voice profiles
    (``v_...``) is accepted too, as a string or as OpenAI's ``{"id": ...}`` object.
``response_format``
    ``mp3`` (the default), ``opus`` (Ogg), ``aac`` (ADTS), ``flac``, ``wav`` or ``pcm``, mono,
    encoded as they stream by ``realtime.codecs``; ``pcm``, ``wav``, ``flac`` and ``aac`` are 24 kHz
    like OpenAI's (``pcm`` is raw signed 16-bit little-endian samples), ``mp3`` 44.1 kHz, ``opus``
    48 kHz. A streamed ``wav`` cannot know its length, so its header claims the largest size
    (readers take the data to the end). A format this server's FFmpeg cannot encode answers 400
    ``bad_format``.
``speed``
    OpenAI accepts 0.25 to 4.0; the engine speaks 0.5 to 2.0. Values outside 0.5-2.0 are refused
    with a 400 naming both ranges rather than silently clamped.
``language`` and ``pitch`` (Timbre extensions; OpenAI has neither)
    Optional. ``language`` is a code the voice speaks (``en``; Kokoro voices also ``es``, ``fr``,
    ``it``, ``pt-br``, ``hi``...): one the voice cannot speak answers 400 ``unsupported_language``
    naming the languages it does. ``pitch`` is in semitones, -6 to +6 (0: the voice's own). With
    the ``openai`` SDK pass them as ``extra_body={"language": "fr", "pitch": 2}``.
``instructions``
    Accepted and ignored (the engine has no style prompt). ``stream_format`` may be ``audio``; ``sse``
    is refused. Unknown fields are ignored, so newer SDKs keep working.

Errors have OpenAI's shape, ``{"error": {"message", "type", "param", "code"}}`` (``ERROR_TYPES``
maps the HTTP status to ``type``; ``code`` is Timbre's error code), and an ``x-should-retry`` header
the SDK obeys. An error after the audio has started (a voice revoked mid-sentence, a client that
stopped reading) can no longer change the status: the connection is closed without the final
chunk, so the client sees a truncated body rather than a complete-looking file. Credentials are the
usual ``Authorization: Bearer`` key (the SDK's ``api_key``), checked by the app's auth middleware,
and the ``tts`` scope.

The request parsing, voice mapping and error serialisation are pure; the handler at the bottom
only moves bytes between them, ``session.speech.Speech``, the encoder and the socket.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
from collections.abc import AsyncIterator, Callable
from contextlib import aclosing
from dataclasses import dataclass
from typing import Any, Final

from aiohttp import web

from inference.engine import FloatAudio
from realtime.appkeys import (
    CATALOG,
    CONFIG,
    LIMITER,
    LIVE,
    METRICS,
    PRINCIPAL,
    PROFILES,
    TENANTS,
    VOICE_SERVICE,
)
from realtime.codecs import OutputFormat, StreamEncoder, make_encoder, parse_output_format
from realtime.guards import is_valid_text, json_body_limit, read_body
from realtime.metrics import Metrics
from realtime.protocol_fields import is_language_code
from session.authn import Principal, Scope
from session.errors import BadFormat, TimbreError, UnknownVoice
from session.languages import UnsupportedLanguage
from session.pitch import MAX_PITCH, MIN_PITCH
from session.speech import Speech, SpeechRequest
from session.tenancy import StreamQuota
from session.voices import PROFILE_PREFIX, ResolvedVoice, VoiceUnavailable

log = logging.getLogger(__name__)

PATH: Final = "/v1/audio/speech"
MAX_INPUT_CHARS: Final = 4096
MAX_BODY_BYTES: Final = json_body_limit(MAX_INPUT_CHARS)
"""A body that could carry ``MAX_INPUT_CHARS`` (all escaped); larger is a 413 ``message_too_large``."""
OPENAI_SPEED_RANGE: Final = (0.25, 4.0)
ENGINE_SPEED_RANGE: Final = (0.5, 2.0)
OUTPUT_RATE_HZ: Final = 24000
"""OpenAI's speech is 24 kHz mono in every format."""
DEFAULT_FORMAT: Final = "mp3"
RESPONSE_FORMATS: Final = ("mp3", "opus", "aac", "flac", "wav", "pcm")
STOCK_VOICE: Final = "piper:joe"
OPENAI_VOICES: Final = {name: STOCK_VOICE for name in (
    "alloy", "ash", "ballad", "cedar", "coral", "echo", "fable", "marin", "nova", "onyx", "sage",
    "shimmer", "verse")}
"""OpenAI's built-in voice names and the Timbre voice each speaks with."""

ERROR_TYPES: Final = {400: "invalid_request_error", 401: "authentication_error",
                      402: "insufficient_quota", 403: "permission_error",
                      404: "invalid_request_error", 409: "invalid_request_error",
                      413: "invalid_request_error", 422: "invalid_request_error",
                      429: "rate_limit_error"}
"""OpenAI's error ``type`` by HTTP status; anything else (5xx) is ``server_error``."""


# -- the request --------------------------------------------------------------------------------------


class InvalidSpeechRequest(TimbreError):
    """A request field OpenAI's API would refuse (or this server cannot honour), with the field's
    name in ``param``."""

    code = "invalid_value"
    http_status = 400
    close_code = None

    def __init__(self, message: str, *, param: str | None, code: str | None = None) -> None:
        super().__init__(message)
        self.param = param
        if code is not None:
            self.code = code


@dataclass(frozen=True)
class OpenAISpeechRequest:
    model: str
    input: str
    voice: str
    """A Timbre voice id or profile id (OpenAI names already mapped)."""
    response_format: str = DEFAULT_FORMAT
    speed: float = 1.0
    pitch: float = 0.0
    """Semitones (a Timbre extension)."""
    language: str | None = None
    """As asked (a Timbre extension); ``Speech`` checks that the voice speaks it."""


def parse_speech_request(body: bytes) -> OpenAISpeechRequest:
    """Check an ``/v1/audio/speech`` body. Raises InvalidSpeechRequest naming the bad field."""
    try:
        data = json.loads(body)
    except (ValueError, UnicodeDecodeError, RecursionError):  # Recursion: nested too deeply
        raise InvalidSpeechRequest("the body must be a JSON object", param=None,
                                   code="invalid_json") from None
    if not isinstance(data, dict):
        raise InvalidSpeechRequest("the body must be a JSON object", param=None,
                                   code="invalid_json")
    model = _required_string(data, "model")
    text = _required_string(data, "input")
    if len(text) > MAX_INPUT_CHARS:
        raise InvalidSpeechRequest(
            f"input is {len(text)} characters; the maximum is {MAX_INPUT_CHARS}",
            param="input", code="string_above_max_length")
    if not text.strip():
        raise InvalidSpeechRequest("input must contain text to speak", param="input",
                                   code="empty_string")
    if not is_valid_text(text):
        raise InvalidSpeechRequest("input is not valid Unicode (a lone surrogate)",
                                   param="input", code="invalid_value")
    return OpenAISpeechRequest(model, text, _voice(data.get("voice")), _format(data),
                               _speed(data.get("speed", 1.0)), _pitch(data.get("pitch")),
                               _language(data.get("language")))


def timbre_voice(openai_voice: str) -> str:
    """The Timbre voice id an OpenAI voice name speaks with; other ids pass through unchanged."""
    return OPENAI_VOICES.get(openai_voice.lower(), openai_voice)


def _required_string(data: dict[str, Any], name: str) -> str:
    value = data.get(name)
    if value is None:
        raise InvalidSpeechRequest(f"'{name}' is required", param=name,
                                   code="missing_required_parameter")
    if not isinstance(value, str):
        raise InvalidSpeechRequest(f"'{name}' must be a string", param=name, code="invalid_type")
    if not value:
        raise InvalidSpeechRequest(f"'{name}' must not be empty", param=name,
                                   code="empty_string")
    return value


def _voice(value: object) -> str:
    if isinstance(value, dict):  # OpenAI's custom voice object: {"id": "voice_1234"}
        value = value.get("id")
    if value is None:
        raise InvalidSpeechRequest("'voice' is required", param="voice",
                                   code="missing_required_parameter")
    if not isinstance(value, str) or not value:
        raise InvalidSpeechRequest("'voice' must be a voice name or id", param="voice",
                                   code="invalid_type")
    return timbre_voice(value)


def _format(data: dict[str, Any]) -> str:
    stream_format = data.get("stream_format", "audio")
    if stream_format != "audio":
        raise InvalidSpeechRequest(
            f"stream_format {stream_format!r} is not supported; this server streams raw audio "
            "('audio')", param="stream_format", code="unsupported_value")
    fmt = data.get("response_format", DEFAULT_FORMAT)
    if fmt not in RESPONSE_FORMATS:
        raise InvalidSpeechRequest(
            f"response_format {fmt!r} is not one of {', '.join(RESPONSE_FORMATS)}",
            param="response_format")
    return str(fmt)


def _speed(value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise InvalidSpeechRequest("speed must be a number", param="speed", code="invalid_type")
    speed = float(value)
    low, high = ENGINE_SPEED_RANGE
    if not math.isfinite(speed) or not low <= speed <= high:
        openai_low, openai_high = OPENAI_SPEED_RANGE
        raise InvalidSpeechRequest(
            f"speed {value} is out of range: this server speaks at {low} to {high} "
            f"(OpenAI's API allows {openai_low} to {openai_high})", param="speed")
    return speed


def _pitch(value: object) -> float:
    if value is None:
        return 0.0
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise InvalidSpeechRequest("pitch must be a number of semitones", param="pitch",
                                   code="invalid_type")
    if not MIN_PITCH <= value <= MAX_PITCH:  # NaN fails too
        raise InvalidSpeechRequest(
            f"pitch {value} is out of range: {MIN_PITCH:g} to {MAX_PITCH:g} semitones",
            param="pitch")
    return float(value)


def _language(value: object) -> str | None:
    """The code's shape only: whether the voice speaks it is checked when the speech starts."""
    if value is None:
        return None
    if not isinstance(value, str):
        raise InvalidSpeechRequest("language must be a string", param="language",
                                   code="invalid_type")
    if not is_language_code(value):
        raise InvalidSpeechRequest("language must be a language code such as 'en' or 'pt-br'",
                                   param="language")
    return value


# -- errors -------------------------------------------------------------------------------------------


def error_body(err: TimbreError) -> dict[str, Any]:
    """``err`` in OpenAI's error shape."""
    return {"error": {
        "message": err.message,
        "type": ERROR_TYPES.get(err.http_status, "server_error"),
        "param": _param_of(err),
        "code": err.code,
    }}


def _param_of(err: TimbreError) -> str | None:
    if isinstance(err, InvalidSpeechRequest):
        return err.param
    if isinstance(err, UnknownVoice | VoiceUnavailable):
        return "voice"
    if isinstance(err, BadFormat):
        return "response_format"
    if isinstance(err, UnsupportedLanguage):
        return "language"
    return None


def as_openai_error(err: TimbreError) -> TimbreError:
    """OpenAI answers an unknown voice with 400, not Timbre's 404."""
    if isinstance(err, UnknownVoice):
        return InvalidSpeechRequest(err.message, param="voice", code=err.code)
    return err


def error_response(err: TimbreError) -> web.Response:
    return web.json_response(error_body(err), status=err.http_status,
                             headers={"x-should-retry": "true" if err.retryable else "false"})


# -- the handler ----------------------------------------------------------------------------------------


def add_openai_routes(app: web.Application) -> None:
    """Register ``POST /v1/audio/speech`` (call from the app factory, before the app starts)."""
    app.router.add_post(PATH, speech_handler)


async def speech_handler(request: web.Request) -> web.StreamResponse:
    app = request.app
    principal = request[PRINCIPAL]
    try:
        principal.require(Scope.TTS)
        params = parse_speech_request(await read_body(request, MAX_BODY_BYTES))
        voice = await app[PROFILES].resolve(principal.tenant, params.voice)
        fmt = parse_output_format(params.response_format)  # BadFormat: no encoder in this build
        quota = await StreamQuota.open(app[TENANTS], app[LIMITER], principal.tenant, fmt.codec)
    except TimbreError as err:
        return _refuse(app[METRICS], as_openai_error(err))
    try:
        return await stream_speech(request, principal, params, voice, fmt, quota)
    finally:
        await quota.close()


async def stream_speech(request: web.Request, principal: Principal,
                        params: OpenAISpeechRequest, voice: ResolvedVoice, fmt: OutputFormat,
                        quota: StreamQuota) -> web.StreamResponse:
    """Speak one whole text and stream it encoded as ``fmt`` (shared by the OpenAI- and
    ElevenLabs-compatible HTTP endpoints). A refusal before the first audio is answered as an
    HTTP error in OpenAI's shape; a later one ends the response early (truncated body)."""
    app = request.app
    metrics = app[METRICS]
    speech = Speech(SpeechRequest(params.input, voice, params.speed, params.pitch,
                                  params.language), app[CATALOG], app[CONFIG].session, quota)
    encoder = make_encoder(fmt, speech.sample_rate_hz)
    response: web.StreamResponse | None = None
    try:
        async with speech, aclosing(speech.chunks()) as chunks:
            metrics.active_contexts.inc()
            unregister = _watch_profile(request, principal, speech)
            try:
                first = await anext(chunks, None)  # refusals until here are still HTTP errors
                _observe_ttfa(metrics, speech)
                response = web.StreamResponse(headers={"Content-Type": encoder.media_type})
                response.enable_chunked_encoding()
                await response.prepare(request)
                await _stream(response, encoder, first, chunks)
            finally:
                unregister()
                metrics.active_contexts.dec()
                _count(metrics, speech)
    except TimbreError as err:
        if response is None:
            return _refuse(metrics, err)
        metrics.errors.labels(err.code).inc()
        _abort(request)  # the status is sent: a truncated body is the only signal left
    except ConnectionError:
        pass  # the client left mid-stream; leaving the ``async with`` cancelled its context
    finally:
        encoder.close()  # frees the codec of a stream that did not finish
    if response is None:  # the client left before the first audio: nobody reads an answer
        return web.Response(status=499, reason="Client Closed Request")
    return response


async def _stream(response: web.StreamResponse, encoder: StreamEncoder, first: FloatAudio | None,
                  chunks: AsyncIterator[FloatAudio]) -> None:
    if first is not None:
        await _write(response, encoder.encode(first))
        async for chunk in chunks:
            await _write(response, encoder.encode(chunk))
    await _write(response, encoder.finish())
    await response.write_eof()


async def _write(response: web.StreamResponse, data: bytes) -> None:
    if data:
        await response.write(data)


_background: set[asyncio.Task[None]] = set()
"""Audit writes in flight (held so they are not collected before they finish)."""


def _watch_profile(request: web.Request, principal: Principal,
                   speech: Speech) -> Callable[[], None]:
    """Audit a voice profile's use and end the speech if its consent is revoked meanwhile."""
    voice_id = speech.request.voice.voice_id
    if not voice_id.startswith(PROFILE_PREFIX):
        return lambda: None
    app = request.app
    if VOICE_SERVICE in app:
        task = asyncio.get_running_loop().create_task(app[VOICE_SERVICE].record_use(
            principal.tenant, voice_id, principal.key_id, {"via": "openai_speech"}))
        _background.add(task)
        task.add_done_callback(_background.discard)

    def end(reason: str) -> None:
        speech.cancel(VoiceUnavailable(reason))

    return app[LIVE].add(principal.tenant, voice_id, end)


def _observe_ttfa(metrics: Metrics, speech: Speech) -> None:
    ctx = speech.context
    if ctx is not None and ctx.first_unit_at is not None and ctx.first_audio_at is not None:
        metrics.ttfa.observe(ctx.first_audio_at - ctx.first_unit_at)


def _count(metrics: Metrics, speech: Speech) -> None:
    for failure in speech.failures:
        metrics.errors.labels(failure.code).inc()
    if speech.finished is not None:
        metrics.characters.inc(speech.finished.spoken_characters)
    metrics.audio_seconds.inc(speech.samples / speech.sample_rate_hz)


def _refuse(metrics: Metrics, err: TimbreError) -> web.Response:
    metrics.errors.labels(err.code).inc()
    return error_response(err)


def _abort(request: web.Request) -> None:
    transport = request.transport
    if transport is not None:
        transport.close()
