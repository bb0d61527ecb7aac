"""ElevenLabs-compatible WebSockets against a real server (embedded SecantusDB, auth, Piper): speech
a recogniser understands, alignment that adds up to the text, ``isFinal`` then close, their error
object for malformed messages, and first-message credentials."""

from __future__ import annotations

import base64
import io
import json
from collections.abc import Iterator
from typing import Any

import aiohttp
import av
import numpy as np
import pytest

from realtime.audio import pcm16_to_float
from tests.asr import recognize, word_overlap
from tests.server import RunningServer, ServerThread

SENTENCE = "The quick brown fox jumps over the lazy dog near the river bank."
VOICE = "piper:joe"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    thread = ServerThread(tmp_path_factory.mktemp("elevenlabs"))
    yield thread.start()
    thread.stop()


def url(server: RunningServer, kind: str = "stream-input", **query: str) -> str:
    q = "&".join(f"{k}={v}" for k, v in query.items())
    return f"{server.ws_url}/v1/text-to-speech/{VOICE}/{kind}" + (f"?{q}" if q else "")


async def converse(ws: aiohttp.ClientWebSocketResponse,
                   sends: list[dict[str, Any]]) -> list[dict[str, Any]]:
    for message in sends:
        await ws.send_str(json.dumps(message))
    received = []
    async for msg in ws:
        assert msg.type == aiohttp.WSMsgType.TEXT
        received.append(json.loads(msg.data))
    return received


def audio_of(messages: list[dict[str, Any]], context: str | None = None) -> bytes:
    return b"".join(base64.b64decode(m["audio"]) for m in messages
                    if m.get("audio") and m.get("contextId") == context)


def chars_of(messages: list[dict[str, Any]], context: str | None = None) -> str:
    return "".join("".join(m["alignment"]["chars"]) for m in messages
                   if m.get("alignment") and m.get("contextId") == context)


async def test_stream_input_speaks_pcm_with_alignment(server: RunningServer) -> None:
    async with aiohttp.ClientSession() as http, http.ws_connect(
            url(server, output_format="pcm_16000"), headers={"xi-api-key": server.key}) as ws:
        half = len(SENTENCE) // 2
        received = await converse(ws, [
            {"text": " ", "voice_settings": {"stability": 0.5, "similarity_boost": 0.8},
             "generation_config": {"chunk_length_schedule": [120, 160, 250, 290]}},
            {"text": SENTENCE[:half]}, {"text": SENTENCE[half:] + " ", "flush": True},
            {"text": ""}])
        assert ws.close_code == 1000
    assert received[-1] == {"isFinal": True}
    assert all("audio" in m for m in received[:-1])
    pcm = audio_of(received)
    assert len(pcm) > 16000 * 2  # over a second of 16 kHz 16-bit speech
    assert word_overlap(SENTENCE, recognize(pcm16_to_float(pcm), 16000)) >= 0.5
    assert chars_of(received) == SENTENCE + " "
    for m in received[:-1]:
        if m["alignment"]:
            a = m["alignment"]
            assert len(a["chars"]) == len(a["charStartTimesMs"]) == len(a["charDurationsMs"])


async def test_stream_input_mp3_and_first_message_key(server: RunningServer) -> None:
    async with aiohttp.ClientSession() as http, http.ws_connect(url(server)) as ws:
        received = await converse(ws, [
            {"text": " ", "xi_api_key": server.key}, {"text": "Hello there, my friend. "},
            {"text": ""}])
    assert received[-1] == {"isFinal": True}
    mp3 = audio_of(received)
    with av.open(io.BytesIO(mp3)) as container:
        frames = [f.to_ndarray() for f in container.decode(audio=0)]
        rate = container.streams.audio[0].rate
    samples = np.concatenate([f.reshape(-1) for f in frames]).astype(np.float32)
    assert rate == 44100 and len(samples) > rate // 2
    assert word_overlap("hello there my friend", recognize(samples, rate)) >= 0.5


async def test_malformed_message_gets_their_error_and_close(server: RunningServer) -> None:
    async with aiohttp.ClientSession() as http, http.ws_connect(
            url(server), headers={"xi-api-key": server.key}) as ws:
        received = await converse(ws, [{"text": " "}, {"txt": "oops"}])
        assert ws.close_code == 1008
    assert received == [{"message": received[0]["message"], "error": "invalid_input_message",
                         "code": 1008}]


async def test_bad_key_is_refused(server: RunningServer) -> None:
    async with aiohttp.ClientSession() as http, http.ws_connect(url(server)) as ws:
        received = await converse(ws, [{"text": " ", "xi_api_key": "tk_nope"}])
        assert ws.close_code == 1008
    assert received[0]["error"] == "invalid_api_key" and received[0]["code"] == 1008


async def test_inactivity_timeout(server: RunningServer) -> None:
    async with aiohttp.ClientSession() as http, http.ws_connect(
            url(server, inactivity_timeout="1"), headers={"xi-api-key": server.key}) as ws:
        received = await converse(ws, [{"text": " "}])
    assert received[-1]["error"] == "input_timeout_exceeded"


async def test_multi_stream_input_contexts(server: RunningServer) -> None:
    async with aiohttp.ClientSession() as http, http.ws_connect(
            url(server, "multi-stream-input", output_format="pcm_16000"),
            headers={"xi-api-key": server.key}) as ws:
        received = await converse(ws, [
            {"text": " ", "context_id": "a"},
            {"text": SENTENCE + " ", "context_id": "a", "flush": True},
            {"text": "A long passage that will be cut short. " * 5, "context_id": "b"},
            {"context_id": "b", "close_context": True},
            {"close_socket": True}])
        assert ws.close_code == 1000
    finals = [m["contextId"] for m in received if m.get("isFinal")]
    assert sorted(finals) == ["a", "b"]
    assert all(m.get("contextId") in ("a", "b") for m in received)
    pcm = audio_of(received, "a")
    assert word_overlap(SENTENCE, recognize(pcm16_to_float(pcm), 16000)) >= 0.5
    assert chars_of(received, "a") == SENTENCE + " "


@pytest.mark.parametrize("path", ["", "/stream"])
async def test_http_text_to_speech(server: RunningServer, path: str) -> None:
    async with aiohttp.ClientSession() as http:
        async with http.post(f"{server.url}/v1/text-to-speech/{VOICE}{path}?output_format=pcm_16000",
                             json={"text": SENTENCE, "model_id": "eleven_flash_v2_5"},
                             headers={"xi-api-key": server.key}) as response:
            assert response.status == 200
            pcm = await response.read()
        assert word_overlap(SENTENCE, recognize(pcm16_to_float(pcm), 16000)) >= 0.5
        async with http.post(f"{server.url}/v1/text-to-speech/{VOICE}{path}", json={"text": ""},
                             headers={"xi-api-key": server.key}) as response:
            assert response.status == 400
            assert (await response.json())["detail"]["status"] == "invalid_request"
        async with http.post(f"{server.url}/v1/text-to-speech/{VOICE}{path}",
                             json={"text": "hi"}) as response:
            assert response.status == 401
