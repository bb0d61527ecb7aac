"""ElevenLabs-compatible text-to-speech APIs: clients built for ElevenLabs (their SDKs, Pipecat's
``ElevenLabsTTSService``, LiveKit's ElevenLabs plugin) work with only their base URL pointed at
Timbre.

Routes (``add_elevenlabs_routes``):

``GET /v1/text-to-speech/{voice_id}/stream-input``
    ElevenLabs' single-context WebSocket (``realtime.elevenlabs.protocol``).
``GET /v1/text-to-speech/{voice_id}/multi-stream-input``
    Their multi-context WebSocket.
``POST /v1/text-to-speech/{voice_id}`` and ``.../stream``
    Their HTTP text-to-speech (``realtime.elevenlabs.http``), streamed.
``POST /v1/text-to-speech/{voice_id}/with-timestamps`` and ``.../stream/with-timestamps``
    The same with character timings, in JSON (``realtime.elevenlabs.timestamps``).

``voice_id`` is a Timbre voice id (``piper:joe``) or one of the caller's voice profiles
(``v_...``); ElevenLabs' stock voice ids (``21m00Tcm4TlvDq8ikWAM``, ...) are not Timbre's and are
refused as an unknown voice. ``language_code`` (query on the WebSockets, body on HTTP) picks the
language of voices that speak several; ``pitch`` (semitones, a query value on every route) is a
Timbre extension. ``model_id``, ``voice_settings`` other than ``speed``,
``chunk_length_schedule``, ``try_trigger_generation``, ``sync_alignment`` and ``auto_mode`` are
accepted and checked but do not change the speech.

These handlers authenticate themselves (``xi-api-key`` header, ``Authorization: Bearer``, the
``authorization`` query value, or the first message's ``xi_api_key`` / ``authorization``), so the
app's auth middleware must let ``handles_own_auth`` paths through.
"""

from __future__ import annotations

import re
from typing import Final

from aiohttp import web

from realtime.elevenlabs.handler import multi_stream_input_handler, stream_input_handler
from realtime.elevenlabs.http import tts_handler
from realtime.elevenlabs.timestamps import stream_with_timestamps_handler, with_timestamps_handler

PREFIX: Final = "/v1/text-to-speech/"
STREAM_INPUT: Final = PREFIX + "{voice_id}/stream-input"
MULTI_STREAM_INPUT: Final = PREFIX + "{voice_id}/multi-stream-input"
TTS: Final = PREFIX + "{voice_id}"
TTS_STREAM: Final = PREFIX + "{voice_id}/stream"
TTS_TIMESTAMPS: Final = PREFIX + "{voice_id}/with-timestamps"
TTS_STREAM_TIMESTAMPS: Final = PREFIX + "{voice_id}/stream/with-timestamps"
_OWN_AUTH: Final = re.compile(
    r"^/v1/text-to-speech/[^/]+"
    r"(/stream|/stream-input|/multi-stream-input|/with-timestamps|/stream/with-timestamps)?$")


def handles_own_auth(path: str) -> bool:
    """True for the paths whose handlers read ElevenLabs' credentials themselves."""
    return _OWN_AUTH.match(path) is not None


def add_elevenlabs_routes(app: web.Application) -> None:
    """Register the ElevenLabs-compatible routes (from the app factory, before the app starts)."""
    app.router.add_get(STREAM_INPUT, stream_input_handler)
    app.router.add_get(MULTI_STREAM_INPUT, multi_stream_input_handler)
    app.router.add_post(TTS, tts_handler)
    app.router.add_post(TTS_STREAM, tts_handler)
    app.router.add_post(TTS_TIMESTAMPS, with_timestamps_handler)
    app.router.add_post(TTS_STREAM_TIMESTAMPS, stream_with_timestamps_handler)


__all__ = ["add_elevenlabs_routes", "handles_own_auth"]
