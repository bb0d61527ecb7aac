"""WebRTC calls (aiortc): speech on an Opus audio track, the native protocol on a data channel.

The flow:

1. The client creates an ``RTCPeerConnection`` with a ``recvonly`` audio transceiver and a data
   channel (label e.g. ``"timbre"``), and posts its offer (after ICE gathering) to
   ``POST /v1/webrtc/offer`` with ``Authorization: Bearer KEY`` (or ``?token=``) and the body
   ``{"sdp": ..., "type": "offer"}``, optionally ``"voice"`` and ``"speed"``.
2. The answer comes back complete (every candidate gathered); the client sets it.
3. Once the data channel opens, the server sends ``ready``; from then on the channel carries the
   native protocol's JSON messages (docs/protocol.md) both ways: ``text``, ``flush``,
   ``close_context``, ``cancel``, ``config`` (voice/speed only) in; ``context_started``,
   ``alignment``, ``context_done``, ``error`` out. There are no binary audio frames: speech
   plays on the audio track at real time, silence between utterances. ``context_done`` is sent
   once the track has played the context's last sample; ``cancel`` silences the track at the
   next 20 ms frame.
4. The call ends when the peer connection fails or closes, the data channel closes, or the server
   shuts down; its quota lease and contexts are released then.

Modules: ``track`` (the paced speech track and its queue), ``bridge`` (protocol <-> session <->
track), ``call`` (one call's lifecycle and the registry), ``handler`` (the offer endpoint).
"""

from __future__ import annotations

from aiohttp import web
from aiortc import RTCIceServer

from realtime.webrtc.call import CallRegistry, CallSettings
from realtime.webrtc.handler import CALL_SETTINGS, CALLS, ICE_SERVERS, offer_handler

OFFER_PATH = "/v1/webrtc/offer"

__all__ = ["CALLS", "OFFER_PATH", "add_webrtc_routes"]


def add_webrtc_routes(app: web.Application, *, ice_servers: list[RTCIceServer] | None = None,
                      settings: CallSettings | None = None) -> None:
    """Register the offer endpoint and close every live call on shutdown (from the app factory,
    before the app starts; the endpoint needs ``CONFIG``, ``METRICS`` and ``CATALOG``, and the
    tenancy keys at request time). ``ice_servers``: STUN/TURN for the server's side (default
    none: host candidates only, which is right for a server with a public address)."""
    app[CALLS] = CallRegistry()
    app[ICE_SERVERS] = list(ice_servers or [])
    app[CALL_SETTINGS] = settings or CallSettings()
    app.router.add_post(OFFER_PATH, offer_handler)
    app.on_shutdown.append(_close_calls)


async def _close_calls(app: web.Application) -> None:
    await app[CALLS].close_all()
