"""``language`` on a voice that speaks several: a Kokoro stock style over the native protocol. The
languages Kokoro lists are accepted (and reach the context), one it does not list is refused
before the context starts, naming those it does speak; Japanese (``ja``, its own front end) is
spoken with word alignment while Piper ``joe`` refuses it. One server for all: Kokoro costs about
ten times Piper's CPU."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from typing import Any

import aiohttp
import pytest

from tests.server import RunningServer, ServerThread

VOICE = "kokoro:jf_alpha"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    # Admission is not under test here: no throughput rule, and no refusals for 2 s after a
    # context ran dry (the late-stream rule), which a slow window on this machine can cause
    # between two of these tests' contexts.
    thread = ServerThread(tmp_path_factory.mktemp("kokoro-language"), kokoro={"enabled": True},
                          scheduler={"admission_utilization": None, "late_window_s": 0.0})
    running = thread.start(timeout_s=300)
    yield running
    thread.stop()


async def next_json(ws: aiohttp.ClientWebSocketResponse) -> dict[str, Any]:
    while True:
        msg = await asyncio.wait_for(ws.receive(), 120)
        if msg.type == aiohttp.WSMsgType.TEXT:
            return dict(json.loads(msg.data))
        assert msg.type == aiohttp.WSMsgType.BINARY, f"socket ended: {ws.close_code}"


@pytest.mark.slow  # a server with Kokoro loaded, warmed and calibrated: ~15 s on 2 cores
async def test_kokoro_speaks_a_listed_language_and_refuses_another(
        server: RunningServer) -> None:
    async with aiohttp.ClientSession() as http, http.ws_connect(
            f"{server.ws_url}/v1/stream?voice={VOICE}",
            headers={"Authorization": f"Bearer {server.key}"}) as ws:
        assert (await next_json(ws))["type"] == "ready"
        await ws.send_json({"type": "text", "context_id": "de", "text": "Guten Tag.",
                            "language": "de"})
        refusal = await next_json(ws)
        assert (refusal["code"], refusal["context_id"]) == ("unsupported_language", "de")
        assert "fr" in refusal["message"] and "es" in refusal["message"]

        await ws.send_json({"type": "text", "context_id": "fr", "text": "Bonjour à tous.",
                            "language": "FR"})
        await ws.send_json({"type": "close_context", "context_id": "fr"})
        started = await next_json(ws)
        assert (started["type"], started["voice"], started["language"]) == (
            "context_started", VOICE, "fr")
        done = started
        while done["type"] != "context_done":
            done = await next_json(ws)
        assert done["reason"] == "completed" and done["samples"] > 0


@pytest.mark.slow
async def test_kokoro_speaks_japanese_and_joe_refuses_it(server: RunningServer) -> None:
    headers = {"Authorization": f"Bearer {server.key}"}
    async with aiohttp.ClientSession() as http:
        async with http.ws_connect(f"{server.ws_url}/v1/stream?voice=kokoro:jf_alpha",
                                   headers=headers) as ws:
            assert (await next_json(ws))["type"] == "ready"
            await ws.send_json({"type": "text", "context_id": "ja", "text": "今日は良い天気です。",
                                "language": "JA"})
            await ws.send_json({"type": "close_context", "context_id": "ja"})
            started = await next_json(ws)
            assert (started["type"], started.get("language")) == ("context_started", "ja"), \
                started
            words: list[str] = []
            message = started
            while message["type"] != "context_done":
                message = await next_json(ws)
                if message["type"] == "alignment":
                    words += [w["word"] for w in message["words"]]
            assert message["reason"] == "completed"
            assert message["samples"] > 24000  # over a second of speech
            assert words == ["今日", "は", "良い", "天気", "です"]

        async with http.ws_connect(f"{server.ws_url}/v1/stream?voice=piper:joe",
                                   headers=headers) as ws:
            assert (await next_json(ws))["type"] == "ready"
            await ws.send_json({"type": "text", "context_id": "ja", "text": "こんにちは。",
                                "language": "ja"})
            refusal = await next_json(ws)
            assert (refusal["type"], refusal["code"], refusal["context_id"]) == (
                "error", "unsupported_language", "ja")
            assert "'ja'" in refusal["message"] and "en" in refusal["message"]
