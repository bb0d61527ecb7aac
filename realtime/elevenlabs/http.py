"""ElevenLabs' ``POST /v1/text-to-speech/{voice_id}`` and ``.../stream``: the JSON body
``{"text", "model_id", "voice_settings"}`` in, the audio out, streamed while it is synthesised, in
the ``output_format`` query value (default ``mp3_44100_128``). Refusals before the audio starts have
ElevenLabs' shape, ``{"detail": {"status": <code>, "message": ...}}``.

Both paths stream (a whole-file answer is the same bytes); ``voice_settings.speed`` is honoured,
the other settings, ``model_id``, ``language_code`` and ``seed`` are accepted and ignored.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Final

from aiohttp import web

from realtime.appkeys import AUTHENTICATOR, LIMITER, METRICS, PROFILES, TENANTS
from realtime.codecs import OutputFormat, parse_output_format
from realtime.elevenlabs.protocol import (
    DEFAULT_OUTPUT_FORMAT,
    ElevenLabsError,
    VoiceSettings,
    bearer,
)
from realtime.guards import is_valid_text, json_body_limit, read_body
from realtime.openai_speech import OpenAISpeechRequest, stream_speech
from session.authn import Principal, Scope
from session.errors import TimbreError
from session.tenancy import StreamQuota
from session.voices import ResolvedVoice
from session.watermark import stamp

MAX_TEXT_CHARS: Final = 5000
MAX_BODY_BYTES: Final = json_body_limit(MAX_TEXT_CHARS)


def parse_body(body: bytes) -> tuple[str, float]:
    """The text and engine speed of a request body. Raises ElevenLabsError (HTTP 400)."""
    try:
        data: Any = json.loads(body)
    except (ValueError, UnicodeDecodeError, RecursionError):  # Recursion: nested too deeply
        raise ElevenLabsError("the body must be a JSON object", "invalid_request") from None
    if not isinstance(data, dict):
        raise ElevenLabsError("the body must be a JSON object", "invalid_request")
    text = data.get("text")
    if not isinstance(text, str) or not text.strip():
        raise ElevenLabsError("'text' is required and must not be empty", "invalid_request")
    if len(text) > MAX_TEXT_CHARS:
        raise ElevenLabsError(f"'text' is longer than {MAX_TEXT_CHARS} characters",
                              "text_too_long")
    if not is_valid_text(text):
        raise ElevenLabsError("'text' is not valid Unicode (a lone surrogate)", "invalid_request")
    settings = data.get("voice_settings")
    speed = VoiceSettings.parse(settings).speed if settings is not None else None
    return text, speed if speed is not None else 1.0


def error_response(err: TimbreError) -> web.Response:
    status = 400 if isinstance(err, ElevenLabsError) else err.http_status
    return web.json_response({"detail": {"status": err.code, "message": err.message}},
                             status=status)


@dataclass(frozen=True)
class TtsRequest:
    """An admitted HTTP text-to-speech request; the caller closes ``quota``."""

    principal: Principal
    text: str
    speed: float
    voice_id: str
    voice: ResolvedVoice
    format: OutputFormat
    quota: StreamQuota


async def open_request(request: web.Request) -> TtsRequest:
    """Authenticate, parse and admit one request (shared with ``.../with-timestamps``). Raises
    TimbreError, answered with ``error_response``."""
    app = request.app
    credential = (request.headers.get("xi-api-key")
                  or bearer(request.headers.get("Authorization")))
    principal = await app[AUTHENTICATOR].authenticate(credential)
    principal.require(Scope.TTS)
    stamp.claim(principal.tenant)  # this route authenticates itself: its streams' provenance
    text, speed = parse_body(await read_body(request, MAX_BODY_BYTES))
    voice_id = request.match_info["voice_id"]
    voice = await app[PROFILES].resolve(principal.tenant, voice_id)
    fmt = parse_output_format(request.query.get("output_format", DEFAULT_OUTPUT_FORMAT))
    quota = await StreamQuota.open(app[TENANTS], app[LIMITER], principal.tenant, fmt.codec)
    return TtsRequest(principal, text, speed, voice_id, voice, fmt, quota)


async def tts_handler(request: web.Request) -> web.StreamResponse:
    try:
        tts = await open_request(request)
    except TimbreError as err:
        request.app[METRICS].errors.labels(err.code).inc()
        return error_response(err)
    params = OpenAISpeechRequest("elevenlabs", tts.text, tts.voice_id, tts.format.codec, tts.speed)
    try:
        return await stream_speech(request, tts.principal, params, tts.voice, tts.format,
                                   tts.quota)
    finally:
        await tts.quota.close()
