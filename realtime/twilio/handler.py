"""The aiohttp side of Twilio calls: the Media Streams WebSocket and the HTTP API that drives it.

``GET /v1/telephony/twilio`` (WebSocket, opened by Twilio; credential ``?token=``): frames go
through ``TwilioStream``; on ``start`` the call is registered under the caller's tenant and its
speaker task starts; on ``stop`` or a closed socket it is unregistered and its speech cancelled.

``POST /v1/calls/{call_sid}/speak`` with ``{"text": "...", "voice": "..."?}`` queues an utterance
(202 ``{"call_sid", "utterance_id", "mark"}``); ``POST /v1/calls/{call_sid}/cancel`` drops what is
queued or playing and clears Twilio's buffer (200 ``{"call_sid", "cancelled"}``). Both answer 404
``unknown_call`` for a call that is not live in the caller's tenant. Errors are
``{"error": {"code", "message"}}``.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator, Callable

from aiohttp import WSMsgType, web

from realtime.appkeys import (
    CONFIG,
    LIMITER,
    LIVE,
    METRICS,
    PRINCIPAL,
    PROFILES,
    TENANTS,
    VOICE_SERVICE,
)
from realtime.guards import is_valid_text, json_body_limit, read_body
from realtime.twilio.call import Call, CallRegistry, CallServices
from realtime.twilio.protocol import Dtmf, Mark, Start, Stop, TwilioStream
from realtime.ws_native import Tenancy, not_a_websocket
from session.authn import Principal, Scope
from session.errors import BadRequest, TextTooLong, TimbreError
from session.tenancy import StreamQuota

log = logging.getLogger(__name__)

CALLS = web.AppKey("twilio_calls", CallRegistry)
"""Live Twilio calls by tenant and call SID."""
CALL_SERVICES = web.AppKey("twilio_call_services", CallServices)

MAX_FRAME_BYTES = 64 * 1024
VOICE_PARAMETER = "voice"
"""The ``<Parameter>`` of the TwiML ``<Stream>`` that picks the call's default voice."""


class UnknownCall(TimbreError):
    code = "unknown_call"
    http_status = 404
    close_code = None


class CallExists(TimbreError):
    code = "call_exists"
    http_status = 409
    close_code = 4409


# --- the WebSocket Twilio opens -------------------------------------------------------------------


async def twilio_stream_handler(request: web.Request) -> web.StreamResponse:
    app = request.app
    principal = request[PRINCIPAL]
    try:
        principal.require(Scope.TTS)
    except TimbreError as err:
        return _error_response(app, err)
    ws = web.WebSocketResponse(max_msg_size=MAX_FRAME_BYTES, heartbeat=30.0)
    if not ws.can_prepare(request).ok:
        return _error_response(app, not_a_websocket())
    await ws.prepare(request)
    stream = TwilioStream()
    try:
        start = await _await_start(ws, stream, app)
        if start is not None:
            await _serve_call(ws, stream, start, principal, request)
    except TimbreError as err:  # fatal: a refusal at start or a protocol violation
        app[METRICS].errors.labels(err.code).inc()
        log.info("twilio stream closed: %s", err.message)
        await ws.close(code=err.close_code or 4400, message=err.code.encode())
    if not ws.closed:
        await ws.close()
    return ws


async def _await_start(ws: web.WebSocketResponse, stream: TwilioStream,
                       app: web.Application) -> Start | None:
    """Read until ``start``; None when the socket closed first."""
    async for data in _frames(ws):
        message = _receive(stream, data, app)
        if isinstance(message, Start):
            return message
    return None


async def _serve_call(ws: web.WebSocketResponse, stream: TwilioStream, start: Start,
                      principal: Principal, request: web.Request) -> None:
    app = request.app
    metrics, registry = app[METRICS], app[CALLS]
    voice_id = start.custom_parameters.get(VOICE_PARAMETER, app[CONFIG].session.default_voice)
    voice = await app[PROFILES].resolve(principal.tenant, voice_id)
    quota = await StreamQuota.open(app[TENANTS], app[LIMITER], principal.tenant, "pcm_mulaw")
    tenancy = Tenancy(principal.tenant, quota, app[PROFILES], app[LIVE],
                      _audit_use(app, principal, start.call_sid))
    call = Call(stream, ws.send_str, voice, tenancy, app[CALL_SERVICES])
    try:
        if not registry.add(call):
            raise CallExists(f"call {call.call_sid} already has a live stream")
        metrics.active_sessions.inc()
        speaker = asyncio.create_task(call.run())
        try:
            await _read_call(ws, stream, call, app)
        finally:
            registry.remove(call)
            metrics.active_sessions.dec()
            speaker.cancel()
            await asyncio.gather(speaker, return_exceptions=True)
    finally:
        await quota.close()


def _audit_use(app: web.Application, principal: Principal,
               call_sid: str) -> Callable[[str], None]:
    """Audit an utterance starting to speak with a voice profile (in the background)."""
    service = app[VOICE_SERVICE]
    pending: set[asyncio.Task[None]] = set()

    def record(voice_id: str) -> None:
        task = asyncio.get_running_loop().create_task(service.record_use(
            principal.tenant, voice_id, principal.key_id, {"via": "twilio", "call_sid": call_sid}))
        pending.add(task)
        task.add_done_callback(pending.discard)

    return record


async def _read_call(ws: web.WebSocketResponse, stream: TwilioStream, call: Call,
                     app: web.Application) -> None:
    async for data in _frames(ws):
        match _receive(stream, data, app):
            case Mark(name=name):
                call.mark_played(name)
            case Dtmf(digit=digit):
                log.debug("call %s: dtmf %s", call.call_sid, digit)
            case Stop():
                return
            case _:
                pass  # connected and inbound media: nothing to do (we do not listen yet)


async def _frames(ws: web.WebSocketResponse) -> AsyncIterator[str | bytes]:
    while True:
        msg = await ws.receive()
        if msg.type in (WSMsgType.CLOSE, WSMsgType.CLOSING, WSMsgType.CLOSED, WSMsgType.ERROR):
            return
        yield msg.data if msg.type in (WSMsgType.TEXT, WSMsgType.BINARY) else b""


def _receive(stream: TwilioStream, data: str | bytes, app: web.Application) -> object:
    """One frame through the stream; a non-fatal error is counted and the frame dropped."""
    try:
        return stream.receive(data)
    except TimbreError as err:
        if err.fatal:
            raise
        app[METRICS].errors.labels(err.code).inc()
        log.debug("twilio frame dropped: %s", err.message)
        return None


# --- the HTTP API the application drives calls with -----------------------------------------------


async def speak_handler(request: web.Request) -> web.Response:
    app = request.app
    try:
        call = _find_call(request)
        max_chars = app[CONFIG].session.max_context_chars
        text, voice_id = _parse_speak(await read_body(request, json_body_limit(max_chars)),
                                      max_chars)
        voice = None
        if voice_id is not None:
            voice = await app[PROFILES].resolve(call.tenant, voice_id)
        utterance = call.speak(text, voice)
    except TimbreError as err:
        return _error_response(app, err)
    return web.json_response({"call_sid": call.call_sid, "utterance_id": utterance.utterance_id,
                              "mark": utterance.utterance_id}, status=202)


async def cancel_handler(request: web.Request) -> web.Response:
    try:
        call = _find_call(request)
    except TimbreError as err:
        return _error_response(request.app, err)
    cancelled = await call.cancel()
    return web.json_response({"call_sid": call.call_sid, "cancelled": cancelled})


def _find_call(request: web.Request) -> Call:
    principal = request[PRINCIPAL]
    principal.require(Scope.TTS)
    call_sid = request.match_info["call_sid"]
    call = request.app[CALLS].get(principal.tenant, call_sid)
    if call is None:
        raise UnknownCall(f"no live call {call_sid!r}")
    return call


def _parse_speak(body: bytes, max_chars: int) -> tuple[str, str | None]:
    """``{"text": str, "voice"?: str}``; raises BadRequest or TextTooLong."""
    try:
        data = json.loads(body)
    except (ValueError, UnicodeDecodeError, RecursionError):  # Recursion: nested too deeply
        raise BadRequest("the body must be a JSON object") from None
    if not isinstance(data, dict):
        raise BadRequest("the body must be a JSON object")
    text, voice = data.get("text"), data.get("voice")
    if not isinstance(text, str) or not text.strip():
        raise BadRequest("'text' must be a non-empty string")
    if len(text) > max_chars:
        raise TextTooLong(f"text is {len(text)} characters; the maximum is {max_chars}")
    if not is_valid_text(text):
        raise BadRequest("'text' is not valid Unicode (a lone surrogate)")
    if voice is not None and (not isinstance(voice, str) or not voice):
        raise BadRequest("'voice' must be a voice id")
    return text, voice


def _error_response(app: web.Application, err: TimbreError) -> web.Response:
    app[METRICS].errors.labels(err.code).inc()
    return web.json_response({"error": {"code": err.code, "message": err.message}},
                             status=err.http_status)
