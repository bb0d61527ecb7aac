"""Phone calls through Twilio Media Streams (bidirectional).

The flow:

1. Your application mints a short-lived token with ``POST /v1/tokens`` (``{"ttl_s": 300,
   "scopes": ["tts"]}``); Twilio cannot send an ``Authorization`` header, so the token travels in
   the stream URL.
2. It answers Twilio's voice webhook with TwiML that connects the call to Timbre::

       <Response>
         <Connect>
           <Stream url="wss://timbre.example/v1/telephony/twilio?token=JWT">
             <Parameter name="voice" value="piper:joe"/>
           </Stream>
         </Connect>
       </Response>

   (``&`` in the URL must be written ``&amp;`` in TwiML; the ``voice`` parameter is optional.)
3. Twilio opens the WebSocket and sends ``connected`` and ``start``; from then on the call is live
   under the token's tenant, by its ``callSid`` (Twilio also posts it to your webhook).
4. ``POST /v1/calls/{callSid}/speak`` with ``{"text": "Hello!", "voice": "piper:joe"}`` queues
   speech (answer 202 with ``utterance_id``); Timbre sends it as 20 ms 8 kHz mu-law ``media``
   frames paced at real time, and a ``mark`` named ``utterance_id`` after each utterance.
5. ``POST /v1/calls/{callSid}/cancel`` (barge-in) stops the speech at once and sends ``clear`` so
   Twilio drops what it buffered.
6. Twilio's ``stop`` (or the socket closing) ends the call; later calls to its API answer 404.

Modules: ``protocol`` (sans-I/O messages and stream state), ``pacer`` (framing and pacing),
``call`` (a call's speaker and the per-tenant registry), ``handler`` (aiohttp handlers).
"""

from __future__ import annotations

from aiohttp import web
from prometheus_client import Histogram

from realtime.appkeys import CATALOG, CONFIG, METRICS
from realtime.twilio.call import CallRegistry, CallServices
from realtime.twilio.handler import (
    CALL_SERVICES,
    CALLS,
    cancel_handler,
    speak_handler,
    twilio_stream_handler,
)
from realtime.twilio.pacer import PacingSettings

STREAM_PATH = "/v1/telephony/twilio"

_LATENESS_BUCKETS_S = (0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1)

__all__ = ["CALLS", "STREAM_PATH", "add_twilio_routes"]


def add_twilio_routes(app: web.Application, pacing: PacingSettings | None = None) -> None:
    """Register the Twilio stream and the call API (from the app factory, after ``CONFIG``,
    ``METRICS`` and ``CATALOG`` are set and before the app starts)."""
    metrics = app[METRICS]
    lateness = Histogram("timbre_twilio_frame_lateness_seconds",
                         "How late each paced Twilio media frame left, past its deadline",
                         buckets=_LATENESS_BUCKETS_S, registry=metrics.registry)
    app[CALLS] = CallRegistry()
    app[CALL_SERVICES] = CallServices(app[CATALOG], app[CONFIG].session, metrics, lateness,
                                      pacing or PacingSettings())
    app.router.add_get(STREAM_PATH, twilio_stream_handler)
    app.router.add_post("/v1/calls/{call_sid}/speak", speak_handler)
    app.router.add_post("/v1/calls/{call_sid}/cancel", cancel_handler)
