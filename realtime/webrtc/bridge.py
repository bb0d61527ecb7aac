"""The native protocol over a WebRTC data channel, with the audio on the call's track.

``RtcBridge`` is ``NativeBridge`` (same messages, session calls, quota, live voices and metrics)
with three differences the medium imposes:

- a context's audio is resampled to 48 kHz s16 and queued on the ``SpeechTrack`` instead of being
  sent as binary frames (the track is Opus-encoded by aiortc);
- ``cancel`` also drops that context's samples still queued on the track, so the speech stops at
  the next 20 ms frame, even when synthesis had already finished;
- ``context_done`` goes out when the track has played the context's last sample.

The output format is fixed by the medium, so a ``config`` that asks for another one is refused.
"""

from __future__ import annotations

import math
from collections.abc import Callable

from realtime.metrics import Metrics
from realtime.native_connection import ContextState as WireState
from realtime.native_connection import NativeProtocol
from realtime.protocol import ConfigMessage
from realtime.webrtc.track import FRAME_SAMPLES, SAMPLE_RATE_HZ, SpeechTrack
from realtime.ws_native import NativeBridge, StreamParams, Tenancy, _ContextOutput
from session.context import ContextFinished
from session.errors import BadFormat, TimbreError
from session.output import OutputBuffer
from session.session import Session

TRACK_FORMAT = "pcm_s16le"
"""What the bridge encodes engine audio to before the track (aiortc makes Opus of it)."""


def track_params(voice: str, speed: float) -> StreamParams:
    return StreamParams(voice, TRACK_FORMAT, SAMPLE_RATE_HZ, speed)


class RtcBridge(NativeBridge):
    def __init__(self, session: Session, protocol: NativeProtocol, output: OutputBuffer,
                 params: StreamParams, metrics: Metrics, tenancy: Tenancy,
                 track: SpeechTrack) -> None:
        super().__init__(session, protocol, output, params, metrics, tenancy)
        self.track = track
        self._finishing: str | None = None

    def _send(self, context_id: str, out: _ContextOutput, payload: bytes) -> None:
        if not payload:
            return
        if self.protocol.context_state(context_id) is WireState.CANCELLED:
            self.metrics.dropped_frames.inc()  # in flight from the engine when cancel arrived
            return
        out.pcm_bytes += len(payload)
        self.track.queue.push(context_id, payload)

    def _cancel(self, context_id: str) -> None:
        dropped = self.track.queue.drop(context_id)
        if dropped:
            self.metrics.dropped_frames.inc(math.ceil(dropped / FRAME_SAMPLES))
        super()._cancel(context_id)

    def _finished(self, event: ContextFinished) -> None:
        self._finishing = event.context_id
        try:
            super()._finished(event)
        finally:
            self._finishing = None

    def _put(self, frame: str | bytes, tag: str | None = None) -> None:
        if self._finishing is None:
            super()._put(frame, tag)
            return
        # the context_done of a finishing context: it waits for the track to play the context out
        put = super()._put
        self.track.queue.mark(self._finishing, lambda: self._put_later(put, frame))

    def _put_later(self, put: Callable[[str | bytes], None], frame: str | bytes) -> None:
        try:
            put(frame)
        except TimbreError as err:  # SlowConsumer: the channel stopped draining
            self.fatal = err
            self.output.close()

    async def _configure(self, message: ConfigMessage) -> None:
        if message.format not in (None, TRACK_FORMAT) or message.sample_rate not in (
                None, SAMPLE_RATE_HZ):
            raise BadFormat("a WebRTC session's audio is Opus on its track: format and "
                            "sample_rate cannot be changed")
        await super()._configure(message)
