"""One WebRTC call: a peer connection, its speech track, its data channel and its session.

The call owns what the offer handler acquired (the quota lease, the session) and gives it all back
in ``close``, which runs once, whichever comes first: the peer goes away (connection state
``failed``/``closed``, or the data channel closes), the data channel never opens, a fatal protocol
error, or server shutdown (``CallRegistry.close_all``).

The data channel has no backpressure: aiortc hands each message to ``on("message")`` as soon as
its SCTP packet is in, however fast the peer sends. The session reads them one at a time and may
await (a voice lookup, a quota check) in between, so what waits in the inbox is bounded, by count
and by bytes (``CallSettings``). A peer that overfills it, or sends one message over the
protocol's ``max_message_bytes``, gets ``message_too_large`` on the channel (what the native
WebSocket answers an oversized message with) and the call ends, releasing everything it held.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field

from aiortc import RTCDataChannel, RTCPeerConnection

from realtime.protocol import error_message
from realtime.webrtc.bridge import RtcBridge
from realtime.webrtc.track import SpeechTrack
from session.errors import InactivityTimeout, MessageTooLarge, TimbreError
from session.output import OutputBuffer
from session.tenancy import StreamQuota

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class CallSettings:
    channel_open_timeout_s: float = 30.0
    """How long after the answer the client has to open its data channel."""
    lead_s: float = 0.1
    """How far the speech track runs ahead of real time (``SpeechTrack``): what the browser's
    jitter buffer holds from the call's first packet, so the first utterance has the same
    margin as later ones."""
    max_inbox_messages: int = 256
    """Data-channel messages received and not yet read by the session. The session reads a
    message in microseconds unless it awaits; a client streaming LLM tokens leaves a few here."""
    max_inbox_bytes: int = 1024 * 1024
    """Bytes of those messages (16 messages of the default 64 KiB ``max_message_bytes``)."""


class RtcCall:
    def __init__(self, pc: RTCPeerConnection, track: SpeechTrack, bridge: RtcBridge,
                 output: OutputBuffer, quota: StreamQuota, registry: CallRegistry,
                 settings: CallSettings) -> None:
        self.pc = pc
        self.track = track
        self.bridge = bridge
        self.output = output
        self.quota = quota
        self.registry = registry
        self.settings = settings
        self._channel: asyncio.Future[RTCDataChannel] = (
            asyncio.get_running_loop().create_future())
        self._inbox: asyncio.Queue[tuple[str | bytes, int]] = asyncio.Queue()
        self._inbox_bytes = 0
        self._tasks: list[asyncio.Task[None]] = []
        self._closing: asyncio.Task[None] | None = None
        self.closed = asyncio.Event()
        pc.on("connectionstatechange", self._on_connection_state)
        pc.on("datachannel", self._on_datachannel)

    def start(self) -> None:
        """Start serving (after the answer is set); the call is in the registry until closed."""
        self.registry.add(self)
        self._tasks = [asyncio.create_task(self._read()), asyncio.create_task(self._write())]

    def close_soon(self) -> None:
        if self._closing is None:
            self._closing = asyncio.create_task(self._close())

    async def close(self) -> None:
        self.close_soon()
        assert self._closing is not None
        await asyncio.shield(self._closing)

    # events from aiortc

    def _on_connection_state(self) -> None:
        if self.pc.connectionState in ("failed", "closed"):
            self.close_soon()

    def _on_datachannel(self, channel: RTCDataChannel) -> None:
        if self._channel.done():
            channel.close()  # one channel per call carries the protocol
            return
        self._channel.set_result(channel)
        channel.on("message", self._on_message)
        channel.on("close", self.close_soon)

    def _on_message(self, data: str | bytes) -> None:
        """Queue one data-channel message for ``_read``, within the inbox's bounds."""
        if self.bridge.fatal is not None or self._closing is not None:
            return  # the call is ending: nothing more is read
        limit = self.bridge.protocol.max_message_bytes
        size = _size(data, limit)
        if size > limit:
            self._fail(MessageTooLarge(f"message over {limit} bytes"))
        elif (self._inbox.qsize() >= self.settings.max_inbox_messages
              or self._inbox_bytes + size > self.settings.max_inbox_bytes):
            self._fail(MessageTooLarge(
                f"more than {self.settings.max_inbox_messages} messages or "
                f"{self.settings.max_inbox_bytes} bytes sent faster than the session reads "
                "them; send fewer, larger messages or wait for replies"))
        else:
            self._inbox_bytes += size
            self._inbox.put_nowait((data, size))

    def _fail(self, err: TimbreError) -> None:
        """End the call with ``err``, which ``_close`` sends on the channel first."""
        self.bridge.fatal = err
        self.close_soon()

    # the protocol

    async def _read(self) -> None:
        bridge, session = self.bridge, self.bridge.session
        poll_s = min(5.0, session.config.inactivity_timeout_s)
        while bridge.fatal is None:
            try:
                data, size = await asyncio.wait_for(self._inbox.get(), poll_s)
            except TimeoutError:
                if session.idle_expired():
                    bridge.fatal = InactivityTimeout(
                        f"no message for {session.config.inactivity_timeout_s:.0f} s")
                continue
            self._inbox_bytes -= size
            session.touch()
            try:
                await bridge.handle(bridge.protocol.receive(data))
            except TimbreError as err:
                if err.fatal:
                    bridge.fatal = err
                else:
                    bridge.send_error(err)
        self.close_soon()

    async def _write(self) -> None:
        try:
            channel = await asyncio.wait_for(
                asyncio.shield(self._channel), self.settings.channel_open_timeout_s)
        except TimeoutError:
            log.info("webrtc call: no data channel within %.0f s",
                     self.settings.channel_open_timeout_s)
            self.close_soon()
            return
        while (frame := await self.output.get()) is not None:
            if channel.readyState != "open":
                return
            channel.send(frame)
        if self.bridge.fatal is not None:  # the bridge closed the output on a fatal error
            self.close_soon()

    async def _close(self) -> None:
        current = asyncio.current_task()
        for task in self._tasks:
            if task is not current:
                task.cancel()
        err = self.bridge.fatal
        try:
            if err is not None and self._channel.done():
                channel = self._channel.result()
                if channel.readyState == "open":
                    self.bridge.metrics.errors.labels(err.code).inc()
                    channel.send(error_message(err).to_wire())
            self.bridge.close()
            self.bridge.metrics.active_sessions.dec()
            self.output.close()
            self.track.stop()
            await self.pc.close()
        finally:
            await self.quota.close()
            self.registry.discard(self)  # last: a call in the registry may still hold its lease
            self.closed.set()


def _size(data: str | bytes, limit: int) -> int:
    """Bytes of a message on the wire (UTF-8 for text); a text over ``limit`` characters is
    already over ``limit`` bytes, so it is not encoded just to be refused."""
    if isinstance(data, bytes) or len(data) > limit:
        return len(data)
    return len(data.encode("utf-8", "surrogatepass"))


@dataclass
class CallRegistry:
    """The live calls of one app, so that shutdown can close them."""

    calls: set[RtcCall] = field(default_factory=set)

    def add(self, call: RtcCall) -> None:
        self.calls.add(call)

    def discard(self, call: RtcCall) -> None:
        self.calls.discard(call)

    async def close_all(self) -> None:
        await asyncio.gather(*(call.close() for call in list(self.calls)),
                             return_exceptions=True)
