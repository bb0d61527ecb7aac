"""ElevenLabs' ``POST /v1/text-to-speech/{voice_id}`` and ``.../stream``: the JSON body
``{"text", "model_id", "voice_settings"}`` in, the audio out, streamed while it is synthesised, in
the ``output_format`` query value (default ``mp3_44100_128``). Refusals before the audio starts have
ElevenLabs' shape, ``{"detail": {"status": <code>, "message": ...}}``.

Both paths stream (a whole-file answer is the same bytes); ``voice_settings.speed`` and
``language_code`` (ISO 639-1 or a regional code such as ``pt-br``; one the voice cannot speak is a
400 ``unsupported_language``) are honoured, as is the ``pitch`` query value (semitones, -6 to +6; a
Timbre extension). The other settings, ``model_id`` and ``seed`` are accepted and ignored.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Final

from aiohttp import web

from realtime.appkeys import AUTHENTICATOR, LIMITER, METRICS, PROFILES, TENANTS
from realtime.codecs import OutputFormat, parse_output_format
from realtime.elevenlabs.errors import ElevenLabsError
from realtime.elevenlabs.protocol import VoiceSettings
from realtime.elevenlabs.query import DEFAULT_OUTPUT_FORMAT, bearer, language_code, pitch
from realtime.guards import is_valid_text, json_body_limit, read_body
from realtime.openai_speech import OpenAISpeechRequest, stream_speech
from session.authn import Principal, Scope
from session.errors import TimbreError
from session.languages import check_language
from session.speech import SpeechRequest
from session.tenancy import StreamQuota
from session.voices import ResolvedVoice
from session.watermark import stamp

MAX_TEXT_CHARS: Final = 5000
MAX_BODY_BYTES: Final = json_body_limit(MAX_TEXT_CHARS)


@dataclass(frozen=True)
class TtsBody:
    text: str
    speed: float = 1.0
    language_code: str | None = None
    """As asked; ``Speech`` checks that the voice speaks it."""


def parse_body(body: bytes) -> tuple[str, float]:
    """The text and engine speed of a request body (see ``parse_tts_body``)."""
    parsed = parse_tts_body(body)
    return parsed.text, parsed.speed


def parse_tts_body(body: bytes) -> TtsBody:
    """A request body's fields that change the speech. Raises ElevenLabsError (HTTP 400)."""
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
    return TtsBody(text, speed if speed is not None else 1.0,
                   language_code(data.get("language_code")))


def error_response(err: TimbreError) -> web.Response:
    status = 400 if isinstance(err, ElevenLabsError) else err.http_status
    return web.json_response({"detail": {"status": err.code, "message": err.message}},
                             status=status)


@dataclass(frozen=True)
class TtsRequest:
    """An admitted HTTP text-to-speech request; the caller closes ``quota``."""

    principal: Principal
    body: TtsBody
    pitch: float
    voice_id: str
    voice: ResolvedVoice
    format: OutputFormat
    quota: StreamQuota

    def speech_request(self) -> SpeechRequest:
        body = self.body
        return SpeechRequest(body.text, self.voice, body.speed, self.pitch, body.language_code)


async def open_request(request: web.Request) -> TtsRequest:
    """Authenticate, parse and admit one request (shared with ``.../with-timestamps``). Raises
    TimbreError, answered with ``error_response``."""
    app = request.app
    credential = (request.headers.get("xi-api-key")
                  or bearer(request.headers.get("Authorization")))
    principal = await app[AUTHENTICATOR].authenticate(credential)
    principal.require(Scope.TTS)
    stamp.claim(principal.tenant)  # this route authenticates itself: its streams' provenance
    body = parse_tts_body(await read_body(request, MAX_BODY_BYTES))
    semitones = pitch(request.query.get("pitch"))
    voice_id = request.match_info["voice_id"]
    voice = await app[PROFILES].resolve(principal.tenant, voice_id)
    check_language(voice, body.language_code)  # refused before the quota is held
    fmt = parse_output_format(request.query.get("output_format", DEFAULT_OUTPUT_FORMAT))
    quota = await StreamQuota.open(app[TENANTS], app[LIMITER], principal.tenant, fmt.codec)
    return TtsRequest(principal, body, semitones, voice_id, voice, fmt, quota)


async def tts_handler(request: web.Request) -> web.StreamResponse:
    try:
        tts = await open_request(request)
    except TimbreError as err:
        request.app[METRICS].errors.labels(err.code).inc()
        return error_response(err)
    body = tts.body
    params = OpenAISpeechRequest("elevenlabs", body.text, tts.voice_id, tts.format.codec,
                                 body.speed, tts.pitch, body.language_code)
    try:
        return await stream_speech(request, tts.principal, params, tts.voice, tts.format,
                                   tts.quota)
    finally:
        await tts.quota.close()
