"""The OpenAPI 3.1 description of Timbre's HTTP API, served at ``/openapi.json``, and the page that
renders it at ``/docs`` (``web/docs.html`` + ``web/docs.js``: plain JavaScript, no external
resources, so it works on a machine without network access).

The document is written by hand, next to the handlers it describes (``realtime.rest``,
``realtime.rest_tokens``, ``realtime.ws_native``, ``realtime.app``); ``tests/realtime/test_rest.py``
checks that every route the app registers under ``/v1`` appears here with its methods, and that every
``$ref`` resolves. ``x-scope`` names the credential scope an operation needs. The 429
``rate_limited`` (with ``Retry-After``) and the 408 ``body_timeout`` are added to the operations
they concern by ``realtime.openapi_schemas.operation``.
"""

from __future__ import annotations

import copy
import functools
from pathlib import Path

from realtime.openapi_schemas import (
    JOB_ID,
    RETRY_AFTER,
    SCHEMAS,
    VOICE_ID,
    Schema,
    errors,
    json_content,
    operation,
    path_param,
    ref,
)

WEB_DIR = Path(__file__).resolve().parent.parent / "web"

def _voices_paths() -> dict[str, Schema]:
    return {
        "/v1/voices": {
            "get": operation(
                "List voices", "The server's stock voices (read-only) followed by the tenant's "
                "profiles, newest first.", "Voices", scope="voices:read",
                responses={"200": {"description": "The voices.", "content": json_content({
                    "type": "object", "properties": {"voices": {"type": "array", "items": {
                        "oneOf": [ref("StockVoice"), ref("Voice")]}}}})}}),
            "post": operation(
                "Create voice", "Upload reference audio and the voice owner's consent. Every "
                "check runs before anything is stored: a refusal leaves no consent, profile, job "
                "or file. The profile starts `pending`; poll the returned job until it is "
                "`succeeded` and the profile `ready`. The upload size is checked while it "
                "streams in.", "Voices", scope="voices:write",
                body={"required": True, "content": {"multipart/form-data": {
                    "schema": ref("VoiceUpload"),
                    "encoding": {"file": {"contentType": "audio/*"}}}}},
                responses={
                    "202": {"description": "Accepted: the profile and its clone job.",
                            "headers": {"Location": {"schema": {"type": "string"},
                                                     "description": "The job's URL."}},
                            "content": json_content({"type": "object", "properties": {
                                "voice": ref("Voice"), "job": ref("Job")}})},
                    **errors(400, 402, 403, 413, 422)}),
        },
        "/v1/voices/{voice_id}": {
            "get": operation("Get voice", "One of the tenant's profiles, with its consent record and "
                       "latest clone job.", "Voices", scope="voices:read",
                       parameters=[VOICE_ID],
                       responses={"200": {"description": "The profile.",
                                          "content": json_content(ref("VoiceDetail"))},
                                  **errors(403, 404)}),
            "delete": operation("Delete voice", "Delete the profile, its reference audio and data "
                          "derived from it; its consent is revoked and live streams using it "
                          "end.", "Voices", scope="voices:write", parameters=[VOICE_ID],
                          responses={"204": {"description": "Deleted."}, **errors(403, 404)}),
        },
        "/v1/voices/{voice_id}/revoke": {
            "post": operation("Revoke voice", "Withdraw the consent: the profile (and any other built "
                        "on the same consent) is revoked at once, its jobs stop and live streams "
                        "using it end with an error. Idempotent.", "Voices",
                        scope="voices:write", parameters=[VOICE_ID],
                        responses={"200": {"description": "The revoked profile.",
                                           "content": json_content(ref("Voice"))},
                                   **errors(403, 404)}),
        },
        "/v1/voices/mix": {
            "post": operation("Mix voices", "Blend 2 to 8 voices (stock voices and the tenant's ready "
                        "profiles, all on one engine) by weight into a new profile, ready at "
                        "once. Kokoro style vectors blend; each profile's conversion stage keeps "
                        "its share. The mix is revoked when any source's consent is.", "Voices",
                        scope="voices:write",
                        body={"required": True, "content": json_content({
                            "type": "object", "required": ["name", "voices"],
                            "properties": {
                                "name": {"type": "string", "example": "Blend"},
                                "voices": {"type": "array", "minItems": 2, "maxItems": 8,
                                           "items": {"type": "object", "required": ["voice_id"],
                                                     "properties": {
                                                         "voice_id": {"type": "string"},
                                                         "weight": {"type": "number",
                                                                    "exclusiveMinimum": 0,
                                                                    "maximum": 100}}}}}})},
                        responses={"201": {"description": "The mixed profile.",
                                           "content": json_content(ref("Voice"))},
                                   **errors(400, 402, 403, 404, 409)}),
        },
    }


def _jobs_paths() -> dict[str, Schema]:
    return {
        "/v1/jobs": {
            "get": operation("List jobs", "The tenant's recent jobs, newest first (at most 100).",
                       "Jobs", scope="voices:read",
                       responses={"200": {"description": "The jobs.", "content": json_content({
                           "type": "object", "properties": {"jobs": {
                               "type": "array", "items": ref("Job")}}})},
                           **errors(403)}),
        },
        "/v1/jobs/{job_id}": {
            "get": operation("Get job", "Status, progress (0..1), error and result of a job. Needs "
                       "`voices:read` for clone jobs and `tts` for synthesis jobs.", "Jobs",
                       parameters=[JOB_ID],
                       responses={"200": {"description": "The job.",
                                          "content": json_content(ref("Job"))},
                                  **errors(403, 404)}),
        },
        "/v1/jobs/{job_id}/audio": {
            "get": operation("Download job audio", "The audio of a succeeded synthesis job, as a file "
                       "download in the format it was requested in.", "Jobs", scope="tts",
                       parameters=[JOB_ID],
                       responses={"200": {"description": "The audio file.", "content": {
                           t: {"schema": {"type": "string", "format": "binary"}} for t in
                           ("audio/wav", "audio/flac", "audio/mpeg", "audio/ogg")}},
                           **errors(403, 404, 409)}),
        },
        "/v1/synthesize": {
            "post": operation("Synthesize", "Long text (audiobook length) as an asynchronous job. The "
                        "month's characters are checked against the whole text before the job "
                        "starts and metered as it is spoken. The job runs at lower priority than "
                        "live streams.", "Synthesis", scope="tts",
                        body={"required": True, "content": json_content(
                            ref("SynthesisRequest"),
                            {"text": "Chapter one. It was a bright cold day in April.",
                             "voice": "piper:joe", "format": "wav"})},
                        responses={
                            "202": {"description": "Accepted: the job.",
                                    "headers": {"Location": {"schema": {"type": "string"}}},
                                    "content": json_content({"type": "object", "properties": {
                                        "job": ref("Job")}})},
                            **errors(400, 402, 403, 404, 409, 413)}),
        },
        "/v1/usage": {
            "get": operation("Get usage", "This month's usage, recent months, the tier's limits and "
                       "what remains of them.", "Account",
                       responses={"200": {"description": "Usage.",
                                          "content": json_content(ref("Usage"))}}),
        },
    }


def _platform_paths() -> dict[str, Schema]:
    stream_params = [
        {"name": "voice", "in": "query", "schema": {"type": "string", "default": "piper:joe"},
         "description": "Default voice of new contexts: a stock voice or one of your ready "
                        "profiles."},
        {"name": "format", "in": "query", "schema": {
            "enum": ["pcm_s16le", "ulaw_8000", "alaw_8000", "mp3", "opus"],
            "default": "pcm_s16le"}},
        {"name": "sample_rate", "in": "query", "schema": {
            "enum": [8000, 16000, 22050, 24000, 44100, 48000], "default": 24000}},
        {"name": "speed", "in": "query", "schema": {"type": "number", "minimum": 0.5,
                                                    "maximum": 2.0, "default": 1.0}},
        {"name": "pitch", "in": "query", "schema": {"type": "number", "minimum": -6,
                                                    "maximum": 6, "default": 0},
         "description": "Semitones up (+) or down (-)."},
        {"name": "language", "in": "query", "schema": {"type": "string"},
         "description": "Default language of new contexts; one the voice cannot speak is "
                        "refused (unsupported_language, close 4400)."},
        {"name": "token", "in": "query", "schema": {"type": "string"},
         "description": "API key or token, for browsers that cannot set headers."},
    ]
    return {
        "/v1/tokens": {
            "post": operation("Create token", "A short-lived JWT for a browser to open a WebSocket "
                        "with (`?token=`). It never outlives the caller's own token and may "
                        "only narrow its scopes.", "Auth",
                        body={"required": False, "content": json_content(ref("TokenRequest"),
                                                                  {"ttl_s": 300,
                                                                   "scopes": ["tts"]})},
                        responses={"200": {"description": "The token.",
                                           "content": json_content(ref("Token"))},
                                   **errors(400, 403)}),
        },
        "/v1/stream": {
            "get": operation("Open stream", "WebSocket upgrade to the native streaming protocol "
                       "(docs/protocol.md): JSON text messages `text`, `flush`, "
                       "`close_context`, `cancel`, `config`, `report` in; `ready`, "
                       "`context_started`, `alignment`, `context_done`, `error` and binary "
                       "audio frames (kind 0x01, context id, sequence number, PCM) out. Errors "
                       "that end the session close the socket with 4xxx codes (4401 "
                       "unauthorized, 4402 quota, 4429 too many streams, 4400 bad request); "
                       "revoking the voice in use ends its contexts with an error.", "Streaming",
                       scope="tts", parameters=stream_params,
                       responses={"101": {"description": "Switching to the WebSocket "
                                                         "protocol."},
                                  **errors(400)}),
        },
        "/v1/audio/speech": {
            "post": operation("Create speech", "OpenAI-compatible text to speech: the official `openai` "
                        "SDK works with `base_url` pointed at Timbre. `model` is accepted but does "
                        "not pick the engine; OpenAI voice names (alloy, echo, ...) map to "
                        "`piper:joe`, and any Timbre voice id or your profile id works too. The "
                        "audio streams as it is synthesised (chunked). Errors use OpenAI's shape "
                        "`{\"error\": {message, type, param, code}}`.", "OpenAI-compatible",
                        scope="tts",
                        body={"required": True, "content": json_content({
                            "type": "object", "required": ["model", "input", "voice"],
                            "properties": {
                                "model": {"type": "string"},
                                "input": {"type": "string", "maxLength": 4096},
                                "voice": {"type": "string"},
                                "response_format": {"enum": ["mp3", "opus", "aac", "flac", "wav",
                                                             "pcm"], "default": "mp3"},
                                "speed": {"type": "number", "minimum": 0.5, "maximum": 2.0,
                                          "default": 1.0},
                                "pitch": {"type": "number", "minimum": -6, "maximum": 6,
                                          "description": "Timbre extension: semitones."},
                                "language": {"type": "string", "description": "Timbre "
                                             "extension: a language the voice speaks."},
                                "instructions": {"type": "string"}}},
                            {"model": "tts-1", "input": "Hello there.", "voice": "alloy",
                             "response_format": "wav"})},
                        responses={"200": {"description": "The audio, streamed.",
                                           "content": {"audio/mpeg": {}, "audio/ogg": {},
                                                       "audio/aac": {}, "audio/flac": {},
                                                       "audio/wav": {}, "audio/pcm": {}}},
                                   **errors(400, 402, 403, 429)}),
        },
        **_compat_paths(),
        "/healthz": {"get": operation("Health", "The process is up (answers at once, also while "
                                "engines load).", "Operations", public=True,
                                responses={"200": {"description": "Up.", "content": json_content(
                                    {"type": "object"}, {"status": "ok"})}})},
        "/readyz": {"get": operation("Readiness", "Every engine is loaded and warmed up.",
                               "Operations", public=True,
                               responses={"200": {"description": "Ready.", "content": json_content(
                                   {"type": "object"}, {"ready": True,
                                                        "engines": {"piper": True}})},
                                   "503": {"description": "Not ready yet (or an engine "
                                                          "failed)."}})},
        "/metrics": {"get": operation("Metrics", "Prometheus metrics.", "Operations", public=True,
                                responses={"200": {"description": "Prometheus text format.",
                                                   "content": {"text/plain": {
                                                       "schema": {"type": "string"}}}}})},
        "/demo/token": {"get": operation("Demo token", "The demo tenant's key, for visitors of the "
                                   "demo page on the server's own machine (loopback) only.",
                                   "Operations", public=True,
                                   responses={"200": {"description": "The key.",
                                                      "content": json_content({"type": "object"})},
                                              **errors(401)})},
        "/openapi.json": {"get": operation("OpenAPI document", "This document.", "Operations",
                                     public=True,
                                     responses={"200": {"description": "OpenAPI 3.1.",
                                                        "content": json_content({"type": "object"})}})},
        "/docs": {"get": operation("API docs page", "This document, rendered (no external "
                             "resources).", "Operations", public=True,
                             responses={"200": {"description": "HTML.", "content": {
                                 "text/html": {"schema": {"type": "string"}}}}})},
    }


@functools.cache
def _compat_paths() -> dict[str, Schema]:
    """ElevenLabs-compatible and telephony routes (their own message formats; see the module
    docstrings of ``realtime.elevenlabs`` and ``realtime.twilio``)."""
    voice = [path_param("voice_id", "A Timbre voice id or one of your profile ids "
                                     "(ElevenLabs' own voice ids are not served).", "piper:joe")]
    call = [path_param("call_sid", "The Twilio callSid of a live Media Stream.", "CA0123")]
    output = {"name": "output_format", "in": "query", "schema": {
        "type": "string", "default": "mp3_44100_128"},
        "description": "ElevenLabs format name: pcm_16000, pcm_22050, pcm_24000, pcm_44100, "
                       "ulaw_8000, mp3_44100_128, ..."}
    xi = ("Authenticate with the `xi-api-key` header (or `Authorization: Bearer`, or the key in "
          "the first WebSocket message as ElevenLabs allows).")
    ws = {"101": {"description": "Switching to the WebSocket protocol."}}
    tts_body = {"required": True, "content": json_content({
        "type": "object", "required": ["text"],
        "properties": {"text": {"type": "string"}, "model_id": {"type": "string"},
                       "voice_settings": {"type": "object"},
                       "language_code": {"type": "string", "example": "fr"}}},
        {"text": "Hello there."})}
    pitch = {"name": "pitch", "in": "query", "schema": {
        "type": "number", "minimum": -6, "maximum": 6, "default": 0},
        "description": "Timbre extension (not ElevenLabs'): semitones up (+) or down (-)."}
    language = {"name": "language_code", "in": "query", "schema": {"type": "string"},
                "description": "ISO 639-1 language of the socket's speech (for voices that "
                               "speak several)."}
    audio = {"200": {"description": "The audio.", "content": {"audio/mpeg": {}, "audio/pcm": {}}},
             **errors(400, 402, 429)}
    return {
        "/v1/text-to-speech/{voice_id}": {"post": operation(
            "ElevenLabs text to speech", "ElevenLabs-compatible synthesis of one text. " + xi,
            "ElevenLabs-compatible", dict(audio), scope="tts", parameters=[*voice, output, pitch],
            body=tts_body)},
        "/v1/text-to-speech/{voice_id}/stream": {"post": operation(
            "ElevenLabs text to speech stream", "As above, streamed as it is synthesised. " + xi,
            "ElevenLabs-compatible", dict(audio), scope="tts", parameters=[*voice, output, pitch],
            body=tts_body)},
        "/v1/text-to-speech/{voice_id}/with-timestamps": {"post": operation(
            "ElevenLabs text to speech with timestamps", "The audio (base64) and the time of "
            "every character, in one JSON object. " + xi, "ElevenLabs-compatible",
            {"200": {"description": "Audio and alignment.", "content": {"application/json": {}}},
             **errors(400, 402, 429)}, scope="tts", parameters=[*voice, output, pitch],
            body=tts_body)},
        "/v1/text-to-speech/{voice_id}/stream/with-timestamps": {"post": operation(
            "ElevenLabs text to speech stream with timestamps", "As above, one JSON object per "
            "line as it is synthesised. " + xi, "ElevenLabs-compatible",
            {"200": {"description": "Audio and alignment, one object per line.",
                     "content": {"application/json": {}}}, **errors(400, 402, 429)},
            scope="tts", parameters=[*voice, output, pitch], body=tts_body)},
        "/v1/text-to-speech/{voice_id}/stream-input": {"get": operation(
            "ElevenLabs stream input", "WebSocket in ElevenLabs' stream-input message format "
            "(initial message, text with flush, empty text to close; audio base64 with "
            "alignment and isFinal). " + xi, "ElevenLabs-compatible", dict(ws), scope="tts",
            parameters=[*voice, output, language, pitch])},
        "/v1/text-to-speech/{voice_id}/multi-stream-input": {"get": operation(
            "ElevenLabs multi stream input", "WebSocket in ElevenLabs' multi-context format "
            "(context_id, close_context, close_socket). " + xi, "ElevenLabs-compatible",
            dict(ws), scope="tts", parameters=[*voice, output, language, pitch])},
        "/v1/telephony/twilio": {"get": operation(
            "Twilio media stream", "Twilio Media Streams, bidirectional: point TwiML "
            "`<Connect><Stream url=\"wss://HOST/v1/telephony/twilio?token=JWT\">` here. "
            "Speech goes out as paced 20 ms mu-law frames with a mark after each utterance.",
            "Telephony", dict(ws), scope="tts")},
        "/v1/webrtc/offer": {"post": operation(
            "WebRTC offer", "Send an SDP offer (with an audio m-line; open a data channel): the "
            "answer carries every ICE candidate. Speech arrives on an Opus audio track paced in "
            "real time (silence between utterances); the data channel carries the native "
            "protocol's JSON messages (text, flush, close_context, cancel in; ready, "
            "context_started, alignment, context_done, error out).", "WebRTC",
            {"200": {"description": "The SDP answer.", "content": json_content({
                "type": "object", "properties": {"sdp": {"type": "string"},
                                                 "type": {"const": "answer"}}})},
             **errors(400, 403, 429, 503)}, scope="tts",
            body={"required": True, "content": json_content({
                "type": "object", "required": ["sdp", "type"],
                "properties": {"sdp": {"type": "string"}, "type": {"const": "offer"},
                               "voice": {"type": "string"}, "speed": {"type": "number"}}},
                {"sdp": "v=0 ...", "type": "offer", "voice": "piper:joe"})})},
        "/v1/calls/{call_sid}/speak": {"post": operation(
            "Speak on call", "Queue text to speak on a live call of your tenant.", "Telephony",
            {"202": {"description": "Queued; a mark follows the utterance on the call."},
             **errors(400, 404, 413)}, scope="tts", parameters=call,
            body={"required": True, "content": json_content({
                "type": "object", "required": ["text"],
                "properties": {"text": {"type": "string"}, "voice": {"type": "string"}}},
                {"text": "Your table is ready."})})},
        "/v1/calls/{call_sid}/cancel": {"post": operation(
            "Cancel call speech", "Stop what the call is saying now (barge-in): queued and "
            "playing utterances are dropped and Twilio is told to `clear`.", "Telephony",
            {"200": {"description": "Cancelled."}, **errors(404)}, scope="tts",
            parameters=call)},
    }


def _watermark_paths() -> dict[str, Schema]:
    return {"/v1/watermark/detect": {"post": operation(
        "Detect watermark", "Test audio for the watermark every stream Timbre synthesises carries "
        "(wav, mp3, flac, ogg/opus or webm; phone-quality audio too). `detected` is decided by a "
        "threshold with a false-positive rate below 0.1 %; `confidence` is 1 minus the bound on "
        "the chance that unmarked audio scores as high. `provenance` (the stream's generation "
        "time, voice and API version) is returned only when the stream belongs to the caller's "
        "tenant. See docs/watermark.md.", "Provenance",
        {"200": {"description": "The verdict.", "content": json_content({
            "type": "object", "required": ["detected", "confidence", "score"],
            "properties": {
                "detected": {"type": "boolean"},
                "confidence": {"type": "number", "minimum": 0, "maximum": 1},
                "score": {"type": "number", "description": "The detector's statistic "
                          "(detected above 3.72)."},
                "provenance": {"type": "object", "properties": {
                    "stream_id": {"type": "string"}, "tenant": {"type": "string"},
                    "voice_id": {"type": "string"}, "api_version": {"type": "string"},
                    "server_version": {"type": "string"},
                    "generated_at": {"type": "string", "format": "date-time"}}}}},
            {"detected": True, "confidence": 0.999999, "score": 8.1,
             "provenance": {"stream_id": "5f3a9c01", "tenant": "t_demo",
                            "voice_id": "piper:joe", "api_version": "v1",
                            "server_version": "0.1.0",
                            "generated_at": "2026-11-26T12:00:00.123Z"}})},
         **errors(400, 413, 415)},
        body={"required": True, "content": {"multipart/form-data": {
            "schema": {"type": "object", "required": ["file"], "properties": {
                "file": {"type": "string", "format": "binary",
                         "description": "The audio (at most 25 MiB, 10 minutes)."}}},
            "encoding": {"file": {"contentType": "audio/*"}}}}})}}


def _document() -> Schema:
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "Timbre API", "version": "1",
            "description": "Real-time streaming text-to-speech with voice profiles. Authenticate "
                           "with `Authorization: Bearer <API key or token>`. Every error is "
                           "`{\"error\": {\"code\", \"message\"}}`. Ids of other tenants answer "
                           "404 like unknown ids.",
            "license": {"name": "Apache-2.0", "identifier": "Apache-2.0"}},
        "servers": [{"url": "/"}],
        "security": [{"bearer": []}, {"token": []}],
        "tags": [{"name": t} for t in ("Voices", "Jobs", "Synthesis", "Account", "Auth",
                                       "Streaming", "Operations", "Provenance")],
        "paths": {**_voices_paths(), **_jobs_paths(), **_platform_paths(),
                  **_watermark_paths()},
        "components": {
            "schemas": SCHEMAS,
            "headers": {"Retry-After": RETRY_AFTER},
            "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer",
                           "description": "An API key (tk_...) or a JWT."},
                "token": {"type": "apiKey", "in": "query", "name": "token",
                          "description": "The same credential as a query parameter (WebSocket "
                                         "from a browser)."}}},
    }


def openapi_document() -> Schema:
    """The document (a fresh copy: callers may modify it)."""
    return copy.deepcopy(_document())


@functools.cache
def docs_page() -> str:
    """``web/docs.html`` (read once)."""
    return (WEB_DIR / "docs.html").read_text(encoding="utf-8")
