"""``pitch`` and ``language`` end to end on a running server (Piper ``joe`` only: it speaks English
and nothing else). Every way in must hand the options to the session, and a language the voice
cannot speak must be one clear ``unsupported_language`` refusal before any audio, in the shape
of the API it came through. What pitch does to the audio is tested with ``session.voicing``."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from typing import Any

import aiohttp
import pytest

from tests.server import RunningServer, ServerThread

VOICE = "piper:joe"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    thread = ServerThread(tmp_path_factory.mktemp("voice-options"))
    yield thread.start()
    thread.stop()


def auth(server: RunningServer) -> dict[str, str]:
    return {"Authorization": f"Bearer {server.key}"}


async def next_json(ws: aiohttp.ClientWebSocketResponse) -> dict[str, Any]:
    """The next JSON message (audio frames skipped), or ``{"closed": code}``."""
    while True:
        msg = await asyncio.wait_for(ws.receive(), 30)
        if msg.type == aiohttp.WSMsgType.TEXT:
            return dict(json.loads(msg.data))
        if msg.type != aiohttp.WSMsgType.BINARY:
            return {"closed": ws.close_code}


async def until(ws: aiohttp.ClientWebSocketResponse, kind: str) -> dict[str, Any]:
    while True:
        message = await next_json(ws)
        assert "closed" not in message, message
        if message["type"] == kind:
            return message


# -- native WebSocket ------------------------------------------------------------------------------


async def test_native_options_reach_each_context(server: RunningServer) -> None:
    async with aiohttp.ClientSession() as http, http.ws_connect(
            server.ws_url + "/v1/stream?pitch=2&language=en", headers=auth(server)) as ws:
        await until(ws, "ready")
        await ws.send_json({"type": "text", "context_id": "a", "text": "Hello there."})
        started = await until(ws, "context_started")
        assert (started["pitch"], started["language"], started["speed"]) == (2.0, "en", 1.0)
        await ws.send_json({"type": "close_context", "context_id": "a"})
        done = await until(ws, "context_done")
        assert done["reason"] == "completed" and done["samples"] > 0

        await ws.send_json({"type": "text", "context_id": "b", "text": "Hi.", "pitch": -1.5,
                            "language": "EN_us"})
        started = await until(ws, "context_started")
        assert (started["context_id"], started["pitch"], started["language"]) == (
            "b", -1.5, "en-us")  # normalised as the engine lists it
        await ws.send_json({"type": "cancel", "context_id": "b"})
        await until(ws, "context_done")


async def test_native_unsupported_language_is_one_clear_error(server: RunningServer) -> None:
    async with aiohttp.ClientSession() as http, http.ws_connect(
            server.ws_url + "/v1/stream", headers=auth(server)) as ws:
        await until(ws, "ready")
        await ws.send_json({"type": "text", "context_id": "fr", "text": "Bonjour.",
                            "language": "fr"})
        error = await next_json(ws)
        assert (error["type"], error["code"], error["context_id"]) == (
            "error", "unsupported_language", "fr")
        assert "'fr'" in error["message"] and "en" in error["message"]  # what it does speak
        await ws.send_json({"type": "config", "language": "fr", "pitch": 3})
        error = await next_json(ws)
        assert error["code"] == "unsupported_language"
        # the refused config changed nothing (not even its pitch); the session goes on
        await ws.send_json({"type": "text", "context_id": "ok", "text": "Hello."})
        started = await next_json(ws)
        assert (started["type"], started["pitch"]) == ("context_started", 0.0)
        assert "language" not in started
        await ws.send_json({"type": "config", "pitch": -4, "language": "en"})
        await ws.send_json({"type": "text", "context_id": "after", "text": "Hello."})
        started = await until(ws, "context_started")
        assert (started["context_id"], started["pitch"], started["language"]) == (
            "after", -4.0, "en")


@pytest.mark.parametrize("query, code", [("?language=fr", "unsupported_language"),
                                         ("?pitch=9", "bad_request")])
async def test_native_bad_query_option_closes_4400(server: RunningServer, query: str,
                                                   code: str) -> None:
    async with aiohttp.ClientSession() as http, http.ws_connect(
            server.ws_url + "/v1/stream" + query, headers=auth(server)) as ws:
        assert (await next_json(ws))["code"] == code
        assert await next_json(ws) == {"closed": 4400}


# -- OpenAI-compatible -----------------------------------------------------------------------------


async def test_openai_speech_language_and_pitch(server: RunningServer) -> None:
    body = {"model": "tts-1", "input": "Hello there.", "voice": VOICE, "response_format": "pcm"}
    async with aiohttp.ClientSession() as http:
        async with http.post(server.url + "/v1/audio/speech", headers=auth(server),
                             json={**body, "language": "fr"}) as r:
            assert r.status == 400
            error = (await r.json())["error"]
        assert (error["code"], error["param"]) == ("unsupported_language", "language")
        async with http.post(server.url + "/v1/audio/speech", headers=auth(server),
                             json={**body, "language": "en", "pitch": 2}) as r:
            assert r.status == 200
            assert len(await r.read()) > 24000  # over half a second of 24 kHz 16-bit audio


# -- ElevenLabs-compatible -------------------------------------------------------------------------


async def test_elevenlabs_http_language_code(server: RunningServer) -> None:
    path = f"{server.url}/v1/text-to-speech/{VOICE}/stream?output_format=pcm_16000"
    headers = {"xi-api-key": server.key}
    async with aiohttp.ClientSession() as http:
        async with http.post(path, headers=headers,
                             json={"text": "Bonjour.", "language_code": "fr"}) as r:
            assert r.status == 400
            detail = (await r.json())["detail"]
        assert detail["status"] == "unsupported_language" and "'fr'" in detail["message"]
        async with http.post(path + "&pitch=-2", headers=headers,
                             json={"text": "Hello there.", "language_code": "en"}) as r:
            assert r.status == 200
            assert len(await r.read()) > 16000


async def test_elevenlabs_websocket_language_code(server: RunningServer) -> None:
    base = f"{server.ws_url}/v1/text-to-speech/{VOICE}/stream-input?output_format=pcm_16000"
    headers = {"xi-api-key": server.key}
    async with aiohttp.ClientSession() as http:
        async with http.ws_connect(base + "&language_code=fr", headers=headers) as ws:
            refusal = await next_json(ws)
            assert (refusal["error"], refusal["code"]) == ("unsupported_language", 1008)
            assert await next_json(ws) == {"closed": 1008}
        async with http.ws_connect(base + "&language_code=en&pitch=1", headers=headers) as ws:
            for message in ({"text": " "}, {"text": "Hello there. "}, {"text": ""}):
                await ws.send_json(message)
            received = [json.loads(m.data) async for m in ws]
    assert received[-1] == {"isFinal": True}
    assert any(m.get("audio") for m in received)


# -- POST /v1/synthesize ---------------------------------------------------------------------------


async def test_synthesize_checks_language_and_pitch_before_the_job(server: RunningServer) -> None:
    async def submit(**extra: Any) -> tuple[int, dict[str, Any]]:
        async with http.post(server.url + "/v1/synthesize", headers=auth(server),
                             json={"text": "Hello there.", "voice": VOICE, **extra}) as r:
            return r.status, dict(await r.json())

    async with aiohttp.ClientSession() as http:
        status, body = await submit(language="fr")
        assert (status, body["error"]["code"]) == (400, "unsupported_language")
        status, body = await submit(pitch=9)
        assert (status, body["error"]["code"]) == (400, "bad_request")
        assert "pitch" in body["error"]["message"]
        status, body = await submit(language="en", pitch=1)
        assert status == 202, body
