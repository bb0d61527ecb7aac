"""ElevenLabs' ``POST /v1/text-to-speech/{voice_id}/with-timestamps`` and
``.../stream/with-timestamps``: the audio with the time of every character of the text.

Pipecat's ``ElevenLabsHttpTTSService`` speaks only through the streamed one (it turns the
characters into the word timestamps that drive its transcript), as does the official SDK's
``text_to_speech.stream_with_timestamps``. Shapes, as ElevenLabs documents them::

    stream: one JSON object per line, as the audio is synthesised
    {"audio_base64": "...", "alignment": {"characters": [...], "character_start_times_seconds": [...],
     "character_end_times_seconds": [...]} | null, "normalized_alignment": <the same>}

    whole: one object of the same shape for the whole text

Times are seconds from the start of the response's audio (not of each line's chunk, unlike the
WebSockets' ``alignment``). The characters of all lines add up exactly to the request's text.
Request body, query and refusals are those of ``realtime.elevenlabs.http``.

``TimestampedAudio`` is the sans-I/O part (encoded chunks and word timings in, objects out); the
handlers only move bytes between it, a ``Speech`` and the socket.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterable
from contextlib import aclosing
from typing import Any

from aiohttp import web

from inference.engine import WordTiming
from realtime.appkeys import CATALOG, CONFIG, METRICS
from realtime.codecs import make_encoder
from realtime.elevenlabs.alignment import CharAligner, merge
from realtime.elevenlabs.http import TtsRequest, error_response, open_request
from realtime.elevenlabs.protocol import CharAlignment
from realtime.openai_speech import _abort, _count, _observe_ttfa, _watch_profile
from session.context import ContextEvent, ContextWords
from session.errors import TimbreError
from session.session import SessionConfig
from session.speech import Speech, SpeechRequest
from session.tenancy import StreamQuota
from session.voices import VoiceCatalog


def alignment_json(alignment: CharAlignment | None) -> dict[str, Any] | None:
    """ElevenLabs' HTTP ``CharacterAlignmentResponseModel`` (seconds, start and end)."""
    if alignment is None:
        return None
    starts = alignment.char_start_times_ms
    return {"characters": list(alignment.chars),
            "character_start_times_seconds": [ms / 1000 for ms in starts],
            "character_end_times_seconds": [(ms + d) / 1000 for ms, d in
                                            zip(starts, alignment.char_durations_ms, strict=True)]}


def audio_json(audio: bytes, alignment: CharAlignment | None) -> dict[str, Any]:
    timing = alignment_json(alignment)
    return {"audio_base64": base64.b64encode(audio).decode("ascii"), "alignment": timing,
            "normalized_alignment": timing}


class TimestampedAudio:
    """Sans-I/O: the encoded audio of one text and the engine's word timings (context-relative
    ms) in; ``(audio, alignment)`` pieces out, each alignment timed from the start of the audio.
    An alignment waits for audio to ride on (an encoder still filling its first frame)."""

    def __init__(self, text: str, sample_rate_hz: int) -> None:
        self._aligner = CharAligner()
        self._aligner.add_text(text)
        self._rate = sample_rate_hz
        self._samples = 0
        self._pending: CharAlignment | None = None

    def chunk(self, audio: bytes, samples: int,
              words: Iterable[WordTiming]) -> tuple[bytes, CharAlignment | None] | None:
        """``audio``: the encoding of ``samples`` more samples; ``words``: their timings."""
        self._samples += samples
        self._pending = merge(self._pending, self._aligner.align(words, 0.0))
        if not audio:
            return None
        alignment, self._pending = self._pending, None
        return audio, alignment

    def finish(self, audio: bytes) -> tuple[bytes, CharAlignment | None] | None:
        """The encoder's tail; characters no word covered are placed at the end of the audio."""
        end_ms = 1000.0 * self._samples / self._rate
        alignment = merge(self._pending, self._aligner.rest(end_ms))
        self._pending = None
        if not audio and alignment is None:
            return None
        return audio, alignment


class TimedSpeech(Speech):
    """A ``Speech`` that also keeps the word timings of the audio it hands out (``Speech`` drops
    them: its other transports send bare audio). They arrive in the same callback as the audio
    they time, so after each chunk ``take_words`` has that chunk's words."""

    def __init__(self, request: SpeechRequest, catalog: VoiceCatalog, config: SessionConfig,
                 quota: StreamQuota) -> None:
        self._words: list[WordTiming] = []
        super().__init__(request, catalog, config, quota)

    def _on_event(self, event: ContextEvent) -> None:
        if isinstance(event, ContextWords):
            self._words.extend(event.words)
        super()._on_event(event)

    def take_words(self) -> list[WordTiming]:
        words, self._words = self._words, []
        return words


async def with_timestamps_handler(request: web.Request) -> web.StreamResponse:
    return await _handle(request, stream=False)


async def stream_with_timestamps_handler(request: web.Request) -> web.StreamResponse:
    return await _handle(request, stream=True)


async def _handle(request: web.Request, *, stream: bool) -> web.StreamResponse:
    metrics = request.app[METRICS]
    try:
        tts = await open_request(request)
    except TimbreError as err:
        metrics.errors.labels(err.code).inc()
        return error_response(err)
    try:
        return await _speak(request, tts, stream)
    finally:
        await tts.quota.close()


async def _speak(request: web.Request, tts: TtsRequest, stream: bool) -> web.StreamResponse:
    """Like ``realtime.openai_speech.stream_speech`` (the same refusals, metering, profile watch
    and truncation on a late error), with the audio framed in JSON and timed."""
    app, metrics = request.app, request.app[METRICS]
    speech = TimedSpeech(tts.speech_request(), app[CATALOG], app[CONFIG].session, tts.quota)
    encoder = make_encoder(tts.format, speech.sample_rate_hz)
    framer = TimestampedAudio(tts.body.text, speech.sample_rate_hz)
    response: web.StreamResponse | None = None
    whole: list[tuple[bytes, CharAlignment | None]] = []
    try:
        async with speech, aclosing(speech.chunks()) as chunks:
            metrics.active_contexts.inc()
            unregister = _watch_profile(request, tts.principal, speech)
            try:
                async for chunk in chunks:
                    piece = framer.chunk(encoder.encode(chunk), len(chunk), speech.take_words())
                    if piece is None:
                        continue
                    if not stream:
                        whole.append(piece)
                        continue
                    if response is None:  # refusals until here are still HTTP errors
                        _observe_ttfa(metrics, speech)
                        response = await _start(request)
                    await response.write(_line(*piece))
                last = framer.finish(encoder.finish())
            finally:
                unregister()
                metrics.active_contexts.dec()
                _count(metrics, speech)
    except TimbreError as err:
        metrics.errors.labels(err.code).inc()
        if response is None:
            return error_response(err)
        _abort(request)  # the status is sent: a truncated body is the only signal left
        return response
    except ConnectionError:
        return response or web.Response(status=499, reason="Client Closed Request")
    finally:
        encoder.close()
    if not stream:
        _observe_ttfa(metrics, speech)
        return web.json_response(_whole([*whole, *([last] if last else [])]))
    response = response or await _start(request)
    if last is not None:
        await response.write(_line(*last))
    await response.write_eof()
    return response


async def _start(request: web.Request) -> web.StreamResponse:
    response = web.StreamResponse(headers={"Content-Type": "application/json"})
    response.enable_chunked_encoding()
    await response.prepare(request)
    return response


def _line(audio: bytes, alignment: CharAlignment | None) -> bytes:
    return json.dumps(audio_json(audio, alignment), separators=(",", ":"),
                      ensure_ascii=False).encode() + b"\n"


def _whole(pieces: list[tuple[bytes, CharAlignment | None]]) -> dict[str, Any]:
    alignment: CharAlignment | None = None
    for _, piece in pieces:
        alignment = merge(alignment, piece)
    return audio_json(b"".join(audio for audio, _ in pieces), alignment)


__all__ = ["TimestampedAudio", "stream_with_timestamps_handler", "with_timestamps_handler"]
