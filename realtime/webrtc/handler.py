"""``POST /v1/webrtc/offer``: SDP offer in, SDP answer out (full ICE gathering, no trickle).

Body: ``{"sdp": "...", "type": "offer", "voice": "piper:joe", "speed": 1.0}`` (``voice`` and
``speed`` optional, also accepted in the query). The offer must receive audio (a ``recvonly`` or
``sendrecv`` audio m-line) and should carry a data channel: the client creates it (any label, e.g.
``"timbre"``) and speaks the native protocol's JSON messages on it. The session's quota lease is
taken here, so refusals (auth, quota, capacity) are plain HTTP errors before any media flows.
"""

from __future__ import annotations

import asyncio
import json
import logging

from aiohttp import web
from aiortc import RTCConfiguration, RTCIceServer, RTCPeerConnection, RTCSessionDescription
from aiortc.sdp import SessionDescription

from realtime.appkeys import (
    CATALOG,
    CONFIG,
    LIMITER,
    LIVE,
    METRICS,
    PRINCIPAL,
    PROFILES,
    TENANTS,
)
from realtime.guards import read_body
from realtime.native_connection import NativeProtocol
from realtime.protocol import Ready
from realtime.webrtc.bridge import RtcBridge, track_params
from realtime.webrtc.call import CallRegistry, CallSettings, RtcCall
from realtime.webrtc.track import SpeechTrack
from realtime.ws_native import PROTOCOL_VERSION, Tenancy, audit_use, parse_query
from session.authn import Scope
from session.errors import BadRequest, ServerBusy, TimbreError
from session.output import OutputBuffer
from session.session import Session, SessionDefaults
from session.tenancy import StreamQuota
from session.voices import ResolvedVoice

log = logging.getLogger(__name__)

CALLS = web.AppKey("webrtc_calls", CallRegistry)
"""The live WebRTC calls (closed on shutdown)."""
ICE_SERVERS = web.AppKey("webrtc_ice_servers", list[RTCIceServer])
"""STUN/TURN servers the server's peer connections use (none: host candidates only)."""
CALL_SETTINGS = web.AppKey("webrtc_call_settings", CallSettings)
MAX_OFFER_BYTES = 64 * 1024
"""An offer's JSON body (an SDP is a few kB); larger is a 413 ``message_too_large``."""


async def offer_handler(request: web.Request) -> web.Response:
    app = request.app
    try:
        request[PRINCIPAL].require(Scope.TTS)
        offer, voice_name, speed = await _read_offer(request)
        voice = await app[PROFILES].resolve(request[PRINCIPAL].tenant, voice_name)
        _check_capacity(voice)
        quota = await StreamQuota.open(app[TENANTS], app[LIMITER], request[PRINCIPAL].tenant,
                                       "opus")
    except TimbreError as err:
        return _error(app, err)
    try:
        call = _new_call(request, voice, speed, quota)
    except BaseException:
        await quota.close()
        raise
    try:
        answer = await _answer(call, offer)
    except TimbreError as err:
        await call.close()
        return _error(app, err)
    except BaseException:
        await call.close()
        raise
    call.start()
    return web.json_response({"sdp": answer.sdp, "type": answer.type})


async def _read_offer(request: web.Request) -> tuple[RTCSessionDescription, str, float]:
    try:
        body = json.loads(await read_body(request, MAX_OFFER_BYTES))
    except (ValueError, UnicodeDecodeError, RecursionError):  # Recursion: nested too deeply
        raise BadRequest("the body must be a JSON object {sdp, type: \"offer\"}") from None
    if not isinstance(body, dict) or body.get("type") != "offer" or not isinstance(
            body.get("sdp"), str):
        raise BadRequest("the body must be a JSON object {sdp, type: \"offer\"}")
    query = {k: request.query[k] for k in ("voice", "speed") if k in request.query}
    query.update({k: str(body[k]) for k in ("voice", "speed") if body.get(k) is not None})
    params = parse_query(query, request.app[CONFIG].session.default_voice)
    return RTCSessionDescription(sdp=body["sdp"], type="offer"), params.voice, params.speed


def _check_capacity(voice: ResolvedVoice) -> None:
    scheduler = voice.scheduler
    if not scheduler.ready.is_set() or scheduler.busy_streams >= scheduler.capacity_streams():
        raise ServerBusy("server at capacity, retry later")


def _new_call(request: web.Request, voice: ResolvedVoice, speed: float,
              quota: StreamQuota) -> RtcCall:
    app = request.app
    config, metrics, principal = app[CONFIG], app[METRICS], request[PRINCIPAL]
    params = track_params(voice.voice_id, speed)
    tenancy = Tenancy(principal.tenant, quota, app[PROFILES], app[LIVE],
                      audit_use(app, principal.tenant, principal.key_id))
    output = OutputBuffer(config.session.output_buffer_bytes)
    protocol = NativeProtocol(max_contexts=config.session.max_contexts,
                              max_context_chars=config.session.max_context_chars,
                              max_message_bytes=config.server.max_message_bytes)
    track = SpeechTrack(lead_s=app[CALL_SETTINGS].lead_s)
    holder: list[RtcBridge] = []
    session = Session(app[CATALOG], config.session, SessionDefaults(voice, speed),
                      lambda event: holder[0].on_event(event), asyncio.get_running_loop())
    bridge = RtcBridge(session, protocol, output, params, metrics, tenancy, track)
    holder.append(bridge)
    metrics.active_sessions.inc()
    output.put(Ready(session.session_id, PROTOCOL_VERSION, voice.voice_id, params.format,
                     params.sample_rate).to_wire())
    ice_servers: list[RTCIceServer] = app[ICE_SERVERS]
    pc = RTCPeerConnection(RTCConfiguration(iceServers=list(ice_servers)))
    return RtcCall(pc, track, bridge, output, quota, app[CALLS], app[CALL_SETTINGS])


async def _answer(call: RtcCall, offer: RTCSessionDescription) -> RTCSessionDescription:
    """Set the offer, attach the speech track, gather every candidate and return the answer.
    Raises BadRequest for an offer aiortc cannot take or one without an audio m-line."""
    pc = call.pc
    try:
        _check_dtls(offer.sdp)
        await pc.setRemoteDescription(offer)
    except ValueError as err:
        raise BadRequest(f"bad SDP offer: {err}") from None
    if not any(t.kind == "audio" for t in pc.getTransceivers()):
        raise BadRequest("the offer must receive audio (an audio m-line, recvonly)")
    pc.addTrack(call.track)  # takes the offered audio transceiver
    await pc.setLocalDescription(await pc.createAnswer())
    return pc.localDescription


def _check_dtls(sdp: str) -> None:
    """aiortc takes every m-line of an offer to carry DTLS parameters and fails inside
    ``setRemoteDescription`` (AttributeError) on one without ``a=setup``; refuse it here with
    ValueError, as aiortc does other malformed SDP."""
    for media in SessionDescription.parse(sdp).media:
        if media.dtls is None:
            raise ValueError(f"the m={media.kind} line has no DTLS role (a=setup)")


def _error(app: web.Application, err: TimbreError) -> web.Response:
    app[METRICS].errors.labels(err.code).inc()
    return web.json_response({"error": {"code": err.code, "message": err.message}},
                             status=err.http_status)
