"""``language="ja"`` over the native protocol: a Kokoro voice takes it (Japanese text is spoken,
with word alignment), Piper ``joe`` still refuses it before the context starts. One server with
Kokoro loaded for both checks (Kokoro costs about ten times Piper's CPU)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from typing import Any

import aiohttp
import pytest

from tests.server import RunningServer, ServerThread


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    thread = ServerThread(tmp_path_factory.mktemp("kokoro-japanese"), kokoro={"enabled": True},
                          scheduler={"admission_utilization": None})
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
            assert (started["type"], started["language"]) == ("context_started", "ja")
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
