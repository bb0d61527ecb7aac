"""A WebRTC peer cannot flood the server through its data channel (``realtime.webrtc.call``).

aiortc delivers data-channel messages with no backpressure, so the call's inbox is bounded by
count and bytes; overfilling it, or one message over ``max_message_bytes``, is answered with
``message_too_large`` on the channel and the call ends with everything it held released.

The flood goes over the wire from a real aiortc peer: every message names a different unknown
voice profile, so the session awaits a MongoDB lookup per message while the peer keeps sending
(the realistic attack: the inbox only fills while the reader awaits). The byte bound is then
checked deterministically on the real call of a real peer: a burst is handed to the server-side
data channel exactly as aiortc hands over the messages of one SCTP packet, all at once.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Iterator
from typing import Any

import aiohttp
import aioice.ice
import pytest

import realtime.webrtc
from realtime.webrtc import CALLS
from realtime.webrtc.call import CallSettings, RtcCall
from realtime.webrtc.handler import CALL_SETTINGS
from tests.realtime.test_webrtc import Peer, call, leases, live_calls
from tests.server import RunningServer, ServerThread

INBOX = CallSettings(max_inbox_messages=16, max_inbox_bytes=32 * 1024)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    with pytest.MonkeyPatch.context() as patch:
        # aioice leaves 127.0.0.1 out of the host candidates: offer loopback (as test_webrtc)
        patch.setattr(aioice.ice, "get_host_addresses", lambda use_ipv4, use_ipv6: ["127.0.0.1"])
        # small inbox bounds, so the test floods kilobytes rather than megabytes
        patch.setattr(realtime.webrtc, "CallSettings", lambda: INBOX)
        thread = ServerThread(tmp_path_factory.mktemp("webrtc-flood"))
        running = thread.start()
        assert running.app[CALL_SETTINGS] == INBOX
        yield running
        thread.stop()


async def error_with_code(peer: Peer, code: str, timeout_s: float = 30.0) -> dict[str, Any]:
    """The first ``error`` with this code (the flood's own ``unknown_voice`` errors skipped)."""
    async with asyncio.timeout(timeout_s):
        while (error := await peer.next("error"))["code"] != code:
            pass
    return error


async def ended(server: RunningServer, peer: Peer) -> None:
    """The server released the call: no live call, no stream lease, and the channel closed."""
    async with asyncio.timeout(10):
        while live_calls(server) > 0 or peer.channel.readyState != "closed":
            await asyncio.sleep(0.05)
    assert await leases(server) == 0


def server_call(server: RunningServer) -> RtcCall:
    (live,) = server.app[CALLS].calls
    return live


def deliver(server: RunningServer, live: RtcCall, messages: list[str]) -> None:
    """Hand ``messages`` to the server side of the call's data channel in one go, on the server's
    loop, the way aiortc delivers the messages of one SCTP packet."""
    channel = live._channel.result()

    async def burst() -> None:
        for message in messages:
            channel.emit("message", message)

    asyncio.run_coroutine_threadsafe(burst(), server.loop).result(timeout=10)


async def test_a_flooding_peer_gets_message_too_large_and_the_call_ends(
        server: RunningServer) -> None:
    peer = await call(server)
    try:
        for i in range(3000):
            peer.send(type="text", context_id=f"c{i}", text="flood", voice=f"v_{uuid.uuid4().hex}")
        error = await error_with_code(peer, "message_too_large")
        assert "faster than the session reads" in error["message"]
        await ended(server, peer)
    finally:
        await peer.close()
    metrics = server.metrics_text
    assert 'timbre_errors_total{code="message_too_large"}' in metrics
    assert "timbre_active_sessions 0.0" in metrics


async def test_the_inbox_is_bounded_in_bytes_and_one_message_by_max_message_bytes(
        server: RunningServer) -> None:
    text = json.dumps({"type": "flush", "context_id": "c", "padding": "x" * 6000})
    assert len(text) * (INBOX.max_inbox_messages // 2) > INBOX.max_inbox_bytes
    peer = await call(server)
    try:
        deliver(server, server_call(server), [text] * (INBOX.max_inbox_messages // 2))
        error = await error_with_code(peer, "message_too_large")
        assert f"{INBOX.max_inbox_bytes} bytes" in error["message"]
        await ended(server, peer)
    finally:
        await peer.close()
    peer = await call(server)
    try:
        huge = "x" * (65536 + 1)  # over [server] max_message_bytes: refused before queueing
        deliver(server, server_call(server), [huge])
        error = await error_with_code(peer, "message_too_large")
        assert error["message"] == "message over 65536 bytes"
        await ended(server, peer)
    finally:
        await peer.close()


async def test_a_peer_within_the_bounds_is_served(server: RunningServer) -> None:
    """Bursts below the bounds, however fast, are read and answered one by one."""
    peer = await call(server)
    try:
        live = server_call(server)
        burst = [json.dumps({"type": "flush", "context_id": f"c{i}"})
                 for i in range(INBOX.max_inbox_messages)]
        for _ in range(3):
            deliver(server, live, burst)
            for _ in burst:
                assert (await peer.next("error"))["code"] == "unknown_context"
        assert live_calls(server) == 1
        async with aiohttp.ClientSession() as http, http.get(server.url + "/healthz") as resp:
            assert resp.status == 200
    finally:
        await peer.close()
