"""Size limits on every way in, over real sockets: each oversized message, body, upload, text and
credential is refused with that protocol's own error shape, before any work is done for it.

| way in | limit | answer |
|---|---|---|
| native WS | 5,000 characters per context; 64 KiB per message | ``text_too_long`` (session goes on); ``message_too_large`` + close 1009 |
| ElevenLabs WS | same | their error object, close 1008 |
| Twilio WS / call API | 64 KiB per frame; 5,000 characters per utterance, its body | close 1009; 413 ``text_too_long`` / ``message_too_large`` |
| OpenAI speech | 4,096 characters; body | 400 ``string_above_max_length``; 413, OpenAI's error shape |
| ElevenLabs HTTP | 5,000 characters; body | 400 / 413 ``{"detail": ...}`` |
| tokens, WebRTC offer | body | 413 ``message_too_large`` |
| voice upload, synthesis | audio bytes, form fields; text | 413 ``file_too_large``, 400; 413 ``text_too_long`` |
| credentials | 8,192 characters | 401 |
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest

from realtime.elevenlabs.http import MAX_BODY_BYTES as ELEVENLABS_BODY_BYTES
from realtime.openai_speech import MAX_BODY_BYTES as OPENAI_BODY_BYTES
from realtime.rest_tokens import MAX_BODY_BYTES as TOKEN_BODY_BYTES
from realtime.twilio import STREAM_PATH
from realtime.webrtc.handler import MAX_OFFER_BYTES
from session.authn import MAX_CREDENTIAL_CHARS
from session.reference_audio import ReferenceChecks
from tests.realtime.test_twilio import FakeTwilio, _until_live
from tests.server import RunningServer

MAX_CHARS = 5000  # SessionConfig.max_context_chars, the default the issue names
MAX_MESSAGE = 65536  # ServerConfig.max_message_bytes


@pytest.fixture
async def http(server: RunningServer) -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {server.key}"}) as s:
        yield s


async def next_json(ws: aiohttp.ClientWebSocketResponse) -> dict[str, Any]:
    msg = await ws.receive(timeout=30)
    if msg.type == aiohttp.WSMsgType.TEXT:
        return dict(json.loads(msg.data))
    assert msg.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED), msg
    return {"closed": ws.close_code}


async def post(http: aiohttp.ClientSession, url: str, data: bytes,
               headers: dict[str, str] | None = None) -> tuple[int, dict[str, Any]]:
    async with http.post(url, data=data, headers={"Content-Type": "application/json",
                                                  **(headers or {})}) as resp:
        return resp.status, await resp.json()


# -- native WebSocket ------------------------------------------------------------------------------


async def test_native_context_text_limit_is_a_nonfatal_error(
        server: RunningServer, http: aiohttp.ClientSession) -> None:
    async with http.ws_connect(server.ws_url + "/v1/stream") as ws:
        assert (await next_json(ws))["type"] == "ready"
        await ws.send_str(json.dumps({"type": "text", "context_id": "big",
                                      "text": "a" * (MAX_CHARS + 1)}))
        error = await next_json(ws)
        assert (error["type"], error["code"], error["context_id"]) == (
            "error", "text_too_long", "big")
        assert str(MAX_CHARS) in error["message"]
        # the session goes on: the refused context never starts, not even with shorter text
        await ws.send_str(json.dumps({"type": "text", "context_id": "big", "text": "a"}))
        reply = await next_json(ws)
        assert reply["code"] == "context_closed" and "refused (text_too_long)" in reply["message"]


async def test_native_context_text_accumulates_towards_the_limit(
        server: RunningServer, http: aiohttp.ClientSession) -> None:
    async with http.ws_connect(server.ws_url + "/v1/stream") as ws:
        assert (await next_json(ws))["type"] == "ready"
        words = "word " * (MAX_CHARS // 5 - 1)  # 4,995 characters, no sentence end yet
        await ws.send_str(json.dumps({"type": "text", "context_id": "c", "text": words}))
        await ws.send_str(json.dumps({"type": "text", "context_id": "c", "text": "overflow"}))
        seen = []
        while (reply := await next_json(ws)).get("type") != "error":
            seen.append(reply.get("type"))
        assert (reply["code"], reply["context_id"]) == ("text_too_long", "c")
        assert seen[0] == "context_started"
        await ws.send_str(json.dumps({"type": "cancel", "context_id": "c"}))


async def test_native_oversized_message_closes_with_1009(
        server: RunningServer, http: aiohttp.ClientSession) -> None:
    async with http.ws_connect(server.ws_url + "/v1/stream") as ws:
        assert (await next_json(ws))["type"] == "ready"
        await ws.send_str(json.dumps({"type": "report", "underruns": 0,
                                      "pad": "x" * MAX_MESSAGE}))
        assert (await next_json(ws))["code"] == "message_too_large"
        assert await next_json(ws) == {"closed": 1009}


async def test_native_binary_and_deeply_nested_frames_are_clear_errors(
        server: RunningServer, http: aiohttp.ClientSession) -> None:
    async with http.ws_connect(server.ws_url + "/v1/stream") as ws:
        assert (await next_json(ws))["type"] == "ready"
        await ws.send_str("[" * 50_000)  # once an internal error: the parser's recursion limit
        assert (await next_json(ws))["code"] == "bad_json"
        await ws.send_bytes(b"\x00" * 100)
        assert (await next_json(ws))["code"] == "binary_not_supported"


# -- ElevenLabs WebSocket --------------------------------------------------------------------------


def elevenlabs_url(server: RunningServer, kind: str = "stream-input") -> str:
    return f"{server.ws_url}/v1/text-to-speech/piper:joe/{kind}?output_format=pcm_16000"


@pytest.mark.parametrize(("message", "error"), [
    ({"text": "a" * (MAX_CHARS + 1)}, "text_too_long"),
    ({"text": "a", "pad": "x" * MAX_MESSAGE}, "message_too_large"),
    ({"text": "\ud800"}, "invalid_input_message"),
])
async def test_elevenlabs_limits_are_their_error_object_and_1008(
        server: RunningServer, message: dict[str, str], error: str) -> None:
    async with aiohttp.ClientSession() as http, http.ws_connect(
            elevenlabs_url(server), headers={"xi-api-key": server.key}) as ws:
        await ws.send_str(json.dumps({"text": " "}))
        await ws.send_str(json.dumps(message))
        while (reply := await next_json(ws)).get("isFinal"):
            pass  # a context the text had started ends first
        assert (reply["error"], reply["code"]) == (error, 1008)
        assert reply["message"]
        assert await next_json(ws) == {"closed": 1008}


async def test_elevenlabs_context_ids_are_bounded(server: RunningServer) -> None:
    async with aiohttp.ClientSession() as http, http.ws_connect(
            elevenlabs_url(server, "multi-stream-input"), headers={"xi-api-key": server.key}) as ws:
        await ws.send_str(json.dumps({"text": " ", "context_id": "c" * 300}))
        reply = await next_json(ws)
        assert reply["error"] == "invalid_input_message" and "context_id" in reply["message"]


# -- Twilio ----------------------------------------------------------------------------------------


async def _token(http: aiohttp.ClientSession, server: RunningServer) -> str:
    async with http.post(f"{server.url}/v1/tokens", json={"ttl_s": 300}) as resp:
        return str((await resp.json())["token"])


async def test_twilio_frames_and_utterances_are_bounded(
        server: RunningServer, http: aiohttp.ClientSession) -> None:
    token = await _token(http, server)
    async with aiohttp.ClientSession() as bare, bare.ws_connect(
            f"{server.ws_url}{STREAM_PATH}?token={token}") as ws:
        twilio = FakeTwilio(ws, "CAlimits0000000000000000000000000")
        await twilio.start()
        await _until_live(http, server, twilio.call_sid)
        speak = f"{server.url}/v1/calls/{twilio.call_sid}/speak"
        status, body = await post(http, speak, json.dumps({"text": "a" * (MAX_CHARS + 1)}).encode())
        assert (status, body["error"]["code"]) == (413, "text_too_long")
        status, body = await post(http, speak, b'{"text": "' + b"a" * (10 * MAX_CHARS) + b'"}')
        assert (status, body["error"]["code"]) == (413, "message_too_large")
        status, body = await post(http, speak, b"[" * 20_000)
        assert (status, body["error"]["code"]) == (400, "bad_request")
        status, body = await post(http, speak, json.dumps({"text": "\ud800"}).encode())
        assert (status, body["error"]["code"]) == (400, "bad_request")
        await ws.send_str(json.dumps({"event": "media", "pad": "x" * 70_000}))
        closing = await ws.receive(timeout=10)
        assert closing.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED)
        assert ws.close_code == 1009


# -- HTTP APIs -------------------------------------------------------------------------------------


async def test_openai_speech_limits_in_openais_shape(
        server: RunningServer, http: aiohttp.ClientSession) -> None:
    url = f"{server.url}/v1/audio/speech"
    request = {"model": "tts-1", "voice": "alloy", "input": "a" * 4097}
    status, body = await post(http, url, json.dumps(request).encode())
    assert status == 400
    assert body["error"]["code"] == "string_above_max_length"
    assert body["error"]["param"] == "input"
    status, body = await post(http, url, b"x" * (OPENAI_BODY_BYTES + 1))
    assert status == 413
    assert body["error"]["code"] == "message_too_large"
    assert body["error"]["type"] == "invalid_request_error"
    status, body = await post(http, url, b"x" * (2 * 1024 * 1024))  # past the app's own limit
    assert (status, body["error"]["code"]) == (413, "message_too_large")


async def test_elevenlabs_http_limits_in_their_shape(server: RunningServer) -> None:
    url = f"{server.url}/v1/text-to-speech/piper:joe"
    async with aiohttp.ClientSession(headers={"xi-api-key": server.key}) as http:
        status, body = await post(http, url, json.dumps({"text": "a" * (MAX_CHARS + 1)}).encode())
        assert (status, body["detail"]["status"]) == (400, "text_too_long")
        status, body = await post(http, url, b"x" * (ELEVENLABS_BODY_BYTES + 1))
        assert (status, body["detail"]["status"]) == (413, "message_too_large")


@pytest.mark.parametrize(("path", "limit"), [("/v1/tokens", TOKEN_BODY_BYTES),
                                             ("/v1/webrtc/offer", MAX_OFFER_BYTES)])
async def test_small_json_endpoints_refuse_large_bodies(
        server: RunningServer, http: aiohttp.ClientSession, path: str, limit: int) -> None:
    status, body = await post(http, server.url + path, b" " * (limit + 1))
    assert (status, body["error"]["code"]) == (413, "message_too_large")


async def test_long_text_synthesis_limit(server: RunningServer,
                                         http: aiohttp.ClientSession) -> None:
    status, body = await post(http, f"{server.url}/v1/synthesize", json.dumps(
        {"text": "x" * 200_001, "voice": "piper:joe"}).encode())
    assert (status, body["error"]["code"]) == (413, "text_too_long")


async def test_voice_upload_limits(server: RunningServer, http: aiohttp.ClientSession) -> None:
    form = aiohttp.FormData()
    form.add_field("file", b"\x00" * (ReferenceChecks().max_upload_bytes + 1), filename="big.wav")
    async with http.post(f"{server.url}/v1/voices", data=form) as resp:
        assert (resp.status, (await resp.json())["error"]["code"]) == (413, "file_too_large")
    form = aiohttp.FormData()
    form.add_field("name", "n" * (17 * 1024))
    form.add_field("file", b"RIFF", filename="tiny.wav")  # makes it multipart
    async with http.post(f"{server.url}/v1/voices", data=form) as resp:
        body = await resp.json()
        assert (resp.status, body["error"]["code"]) == (400, "bad_request")
        assert "longer than" in body["error"]["message"]


async def test_oversized_credentials_are_refused(server: RunningServer) -> None:
    """Past aiohttp's 8 KiB request line or header, the HTTP parser refuses it (400); the only
    place a longer one can arrive is an ElevenLabs first message, refused by the authenticator."""
    huge = "tk_" + "a" * MAX_CREDENTIAL_CHARS
    async with aiohttp.ClientSession() as http:
        async with http.get(f"{server.url}/v1/usage", params={"token": huge}) as resp:
            assert resp.status == 400
        async with http.ws_connect(elevenlabs_url(server)) as ws:
            await ws.send_str(json.dumps({"text": " ", "xi_api_key": huge}))
            reply = await next_json(ws)
    assert (reply["error"], reply["message"]) == ("invalid_api_key", "credential too long")
