"""Caps on what one caller can hold, on every transport, over real sockets:

* contexts per socket (``SessionConfig.max_contexts``, 8 by default): the native WebSocket, the
  WebRTC data channel, ElevenLabs' multi-stream socket and a Twilio call's utterance queue;
* sessions per tenant (the tier's ``max_concurrent_streams``, enforced by one ``StreamLimiter``
  lease per stream): the native and ElevenLabs WebSockets, OpenAI and ElevenLabs HTTP speech,
  Twilio calls and WebRTC offers all take a lease, and each refusal is that protocol's error.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest

from realtime.appkeys import LIMITER
from realtime.twilio import STREAM_PATH
from session.ids import TenantId
from tests.realtime.test_twilio import LONG_TEXT, FakeTwilio
from tests.realtime.test_webrtc import call
from tests.security.conftest import new_tenant, on_server
from tests.security.test_limits import next_json
from tests.server import RunningServer

MAX_CONTEXTS = 8  # SessionConfig.max_contexts
WORDS = "this context waits for more words"  # no sentence end: nothing is spoken yet


async def leases(server: RunningServer, tenant: TenantId) -> int:
    return await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(
        server.app[LIMITER].active(tenant), server.loop))


# -- contexts per socket ---------------------------------------------------------------------------


async def test_native_socket_holds_at_most_max_contexts(server: RunningServer) -> None:
    async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {server.key}"}) as http, \
            http.ws_connect(server.ws_url + "/v1/stream") as ws:
        assert (await next_json(ws))["type"] == "ready"
        for i in range(MAX_CONTEXTS + 1):
            await ws.send_str(json.dumps({"type": "text", "context_id": f"c{i}", "text": WORDS}))
        started, error = [], None
        while error is None:
            reply = await next_json(ws)
            if reply["type"] == "context_started":
                started.append(reply["context_id"])
            elif reply["type"] == "error":
                error = reply
        assert (error["code"], error["context_id"]) == ("too_many_contexts", f"c{MAX_CONTEXTS}")
        # not fatal: once one context is cancelled and done, a new one may start
        await ws.send_str(json.dumps({"type": "cancel", "context_id": "c0"}))
        while (reply := await next_json(ws))["type"] != "context_done":
            pass
        await ws.send_str(json.dumps({"type": "text", "context_id": "again", "text": WORDS}))
        while (reply := await next_json(ws))["type"] != "context_started":
            assert reply["type"] != "error", reply
        assert reply["context_id"] == "again"


async def test_webrtc_data_channel_holds_at_most_max_contexts(server: RunningServer) -> None:
    peer = await call(server)
    try:
        for i in range(MAX_CONTEXTS + 1):
            peer.send(type="text", context_id=f"c{i}", text=WORDS)
        error = await peer.next("error")
        assert (error["code"], error["context_id"]) == ("too_many_contexts", f"c{MAX_CONTEXTS}")
        peer.send(type="text", context_id="big", text="a" * 5001)
        error = await peer.next("error")
        assert (error["code"], error["context_id"]) == ("text_too_long", "big")
    finally:
        await peer.close()


async def test_elevenlabs_multi_socket_holds_at_most_max_contexts(server: RunningServer) -> None:
    url = f"{server.ws_url}/v1/text-to-speech/piper:joe/multi-stream-input?output_format=pcm_16000"
    async with aiohttp.ClientSession() as http, http.ws_connect(
            url, headers={"xi-api-key": server.key}) as ws:
        for i in range(MAX_CONTEXTS + 1):
            await ws.send_str(json.dumps({"text": " ", "context_id": f"c{i}"}))
        while "error" not in (reply := await next_json(ws)):
            assert "closed" not in reply, reply
        assert (reply["error"], reply["code"]) == ("too_many_contexts", 1008)
        while "closed" not in (reply := await next_json(ws)):
            pass
        assert reply == {"closed": 1008}


async def test_a_twilio_call_queues_at_most_max_contexts(server: RunningServer) -> None:
    async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {server.key}"}) as http:
        async with http.post(f"{server.url}/v1/tokens", json={}) as resp:
            token = (await resp.json())["token"]
        async with aiohttp.ClientSession() as bare, bare.ws_connect(
                f"{server.ws_url}{STREAM_PATH}?token={token}") as ws:
            twilio = FakeTwilio(ws, "CAcaps00000000000000000000000000")
            await twilio.start()
            speak = f"{server.url}/v1/calls/{twilio.call_sid}/speak"
            statuses: list[int] = []
            for _ in range(MAX_CONTEXTS):
                statuses.append(await _post_status(http, speak, {"text": LONG_TEXT}))
            async with http.post(speak, json={"text": LONG_TEXT}) as resp:
                refused = resp.status, await resp.json()
            assert statuses == [202] * MAX_CONTEXTS
            assert refused[0] == 429 and refused[1]["error"]["code"] == "too_many_contexts"
            async with http.post(f"{server.url}/v1/calls/{twilio.call_sid}/cancel") as resp:
                assert (await resp.json())["cancelled"] == MAX_CONTEXTS
            assert await _post_status(http, speak, {"text": "Room again."}) == 202


async def _post_status(http: aiohttp.ClientSession, url: str, body: dict[str, Any]) -> int:
    for _ in range(100):  # the call goes live a moment after its start frame
        async with http.post(url, json=body) as resp:
            if resp.status != 404:
                return resp.status
        await asyncio.sleep(0.05)
    raise AssertionError("the call never went live")


# -- sessions per tenant ---------------------------------------------------------------------------


@pytest.fixture
async def one_stream_held(server: RunningServer) -> AsyncIterator[tuple[TenantId, str]]:
    """A tenant whose tier allows one stream, holding it with a native WebSocket."""
    tenant, key = new_tenant(server, "single")
    async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {key}"}) as http, \
            http.ws_connect(server.ws_url + "/v1/stream") as ws:
        assert (await next_json(ws))["type"] == "ready"
        assert await leases(server, tenant) == 1
        yield tenant, key
    for _ in range(100):  # released once the server has seen the close
        if await leases(server, tenant) == 0:
            return
        await asyncio.sleep(0.05)
    raise AssertionError("the held stream's lease was not released")


async def test_native_stream_over_the_tier_is_refused(
        server: RunningServer, one_stream_held: tuple[TenantId, str]) -> None:
    _, key = one_stream_held
    async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {key}"}) as http, \
            http.ws_connect(server.ws_url + "/v1/stream") as ws:
        assert (await next_json(ws))["code"] == "too_many_streams"
        assert await next_json(ws) == {"closed": 4429}


async def test_elevenlabs_socket_over_the_tier_is_refused(
        server: RunningServer, one_stream_held: tuple[TenantId, str]) -> None:
    _, key = one_stream_held
    async with aiohttp.ClientSession() as http, http.ws_connect(
            f"{server.ws_url}/v1/text-to-speech/piper:joe/stream-input",
            headers={"xi-api-key": key}) as ws:
        reply = await next_json(ws)
        assert (reply["error"], reply["code"]) == ("too_many_streams", 1008)
        assert await next_json(ws) == {"closed": 1008}


async def test_http_speech_over_the_tier_is_refused_in_each_shape(
        server: RunningServer, one_stream_held: tuple[TenantId, str]) -> None:
    _, key = one_stream_held
    async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {key}"}) as http:
        async with http.post(f"{server.url}/v1/audio/speech", json={
                "model": "tts-1", "voice": "alloy", "input": "Hello."}) as resp:
            body = await resp.json()
            assert resp.status == 429
            assert body["error"]["code"] == "too_many_streams"
            assert body["error"]["type"] == "rate_limit_error"
            assert resp.headers["x-should-retry"] == "true"
        async with http.post(f"{server.url}/v1/text-to-speech/piper:joe",
                             headers={"xi-api-key": key}, json={"text": "Hello."}) as resp:
            assert (resp.status, (await resp.json())["detail"]["status"]) == (
                429, "too_many_streams")
        async with http.post(f"{server.url}/v1/webrtc/offer",
                             json={"sdp": "v=0\r\n", "type": "offer"}) as resp:
            assert (resp.status, (await resp.json())["error"]["code"]) == (
                429, "too_many_streams")


async def test_twilio_call_over_the_tier_is_refused(
        server: RunningServer, one_stream_held: tuple[TenantId, str]) -> None:
    _, key = one_stream_held
    async with aiohttp.ClientSession() as http:
        async with http.post(f"{server.url}/v1/tokens",
                             headers={"Authorization": f"Bearer {key}"}) as resp:
            token = (await resp.json())["token"]
        async with http.ws_connect(f"{server.ws_url}{STREAM_PATH}?token={token}") as ws:
            await FakeTwilio(ws, "CAover000000000000000000000000000").start()
            closing = await ws.receive(timeout=10)
            assert closing.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED)
            assert (ws.close_code, closing.extra) == (4429, "too_many_streams")


async def test_refused_streams_leave_no_lease_behind(server: RunningServer) -> None:
    """Every refusal above released what it took: the tenant can stream again afterwards."""
    tenant, key = new_tenant(server, "single")
    for _ in range(3):
        async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {key}"}) as http, \
                http.ws_connect(server.ws_url + "/v1/stream") as ws:
            assert (await next_json(ws))["type"] == "ready"
        for _ in range(100):
            if await leases(server, tenant) == 0:
                break
            await asyncio.sleep(0.05)
    assert on_server(server, server.app[LIMITER].active(tenant)) == 0
