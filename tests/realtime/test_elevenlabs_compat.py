"""What Pipecat and LiveKit need from the ElevenLabs-compatible API beyond the basic shapes (found
by running them against Timbre, ``tests/realtime/test_compat_frameworks.py``), pinned here without
them: sans-I/O for the message and alignment rules, over real sockets for the behaviour.

- ``close_context`` right after a flush speaks the flushed text, then ``isFinal`` (both end every
  turn that way); with unflushed text it is a barge-in and stops at once.
- ``{"text": "", "flush": true}`` with a ``context_id`` is a flush (LiveKit's end of input).
- Each WebSocket message's alignment spans exactly its audio (Pipecat's word clock adds spans).
- ``.../stream/with-timestamps`` (Pipecat's HTTP service, the SDK's ``stream_with_timestamps``)
  and ``.../with-timestamps``: base64 audio with the time of every character, in seconds.
"""

from __future__ import annotations

import asyncio
import base64
import importlib.util
import json
import os
from collections.abc import Iterator
from typing import Any

import aiohttp
import pytest

from inference.engine import WordTiming
from realtime.audio import pcm16_to_float
from realtime.elevenlabs.alignment import fit
from realtime.elevenlabs.protocol import (
    CharAlignment,
    EndOfInput,
    FlushContext,
    KeepContextAlive,
    parse_client_message,
)
from realtime.elevenlabs.timestamps import TimestampedAudio, alignment_json
from tests.asr import recognize, word_overlap
from tests.server import RunningServer, ServerThread

SENTENCE = "The quick brown fox jumps over the lazy dog near the river bank."
VOICE = "piper:joe"


# -- sans I/O -----------------------------------------------------------------------------------------


def test_an_empty_text_with_flush_is_a_flush_on_multi_stream_input() -> None:
    message = json.dumps({"text": "", "context_id": "a", "flush": True})
    assert parse_client_message(message, multi=True, first=False) == FlushContext("a")
    keep_alive = json.dumps({"text": "", "context_id": "a"})
    assert parse_client_message(keep_alive, multi=True, first=False) == KeepContextAlive("a")
    # stream-input: an empty text ends the input, flush or not
    assert parse_client_message(json.dumps({"text": "", "flush": True}), multi=False,
                                first=False) == EndOfInput()


def test_fit_makes_an_alignment_span_its_chunk() -> None:
    alignment = CharAlignment(("h", "i", " "), (0, 40, 80), (40, 40, 0))
    fitted = fit(alignment, 250.4)
    assert fitted is not None
    assert fitted.chars == alignment.chars
    assert fitted.char_start_times_ms == alignment.char_start_times_ms
    assert fitted.char_start_times_ms[-1] + fitted.char_durations_ms[-1] == 250
    assert fit(None, 100.0) is None


def test_timestamped_audio_times_every_character_from_the_start() -> None:
    text = "Hello big world."
    framer = TimestampedAudio(text, 1000)  # 1 sample per ms
    # the encoder had nothing yet: the alignment waits for audio to ride on
    assert framer.chunk(b"", 300, [WordTiming("hello", 20.0, 280.0)]) is None
    first = framer.chunk(b"\x01\x02", 300, [WordTiming("big", 300.0, 500.0)])
    assert first is not None and first[1] is not None
    assert first[0] == b"\x01\x02"
    assert "".join(first[1].chars) == "Hello big "
    last = framer.finish(b"\x03")  # "world." was never timed: placed at the end of the audio
    assert last is not None and last[1] is not None
    assert "".join(first[1].chars + last[1].chars) == text
    assert set(last[1].char_start_times_ms) == {600}
    timing = alignment_json(first[1])
    assert timing is not None
    assert timing["character_start_times_seconds"][0] == 0.02
    assert timing["character_start_times_seconds"][6] == 0.3  # "b" of "big"
    ends, starts = timing["character_end_times_seconds"], timing["character_start_times_seconds"]
    assert all(e >= s for s, e in zip(starts, ends, strict=True))
    assert starts == sorted(starts)


# -- over real sockets ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    # Admission by measured throughput is not under test; on a loaded machine it refuses.
    thread = ServerThread(tmp_path_factory.mktemp("elevenlabs-compat"),
                          scheduler={"admission_utilization": None})
    yield thread.start()
    thread.stop()


async def converse(server: RunningServer, sends: list[dict[str, Any]],
                   output_format: str = "pcm_16000") -> list[dict[str, Any]]:
    url = (f"{server.ws_url}/v1/text-to-speech/{VOICE}/multi-stream-input"
           f"?output_format={output_format}&model_id=eleven_flash_v2_5&auto_mode=true"
           "&enable_logging=true&apply_text_normalization=auto&inactivity_timeout=180")
    received: list[dict[str, Any]] = []
    async with aiohttp.ClientSession() as http, http.ws_connect(
            url, headers={"xi-api-key": server.key}) as ws:
        for message in sends:
            await ws.send_str(json.dumps(message))
        async for msg in ws:
            received.append(json.loads(msg.data))
            if received[-1].get("isFinal"):
                await ws.send_str(json.dumps({"close_socket": True}))
        assert ws.close_code == 1000
    return received


def audio_of(messages: list[dict[str, Any]]) -> bytes:
    return b"".join(base64.b64decode(m["audio"]) for m in messages if m.get("audio"))


async def test_close_context_after_a_flush_speaks_the_flushed_text(server: RunningServer) -> None:
    # Pipecat's turn: context init, text, flush, close_context (it then waits for isFinal).
    received = await converse(server, [
        {"text": " ", "context_id": "turn"},
        {"text": SENTENCE + " ", "context_id": "turn"},
        {"context_id": "turn", "flush": True},
        {"context_id": "turn", "close_context": True}])
    assert received[-1] == {"isFinal": True, "contextId": "turn"}
    pcm = audio_of(received)
    assert len(pcm) / 2 / 16000 > 2.0
    assert word_overlap(SENTENCE, recognize(pcm16_to_float(pcm), 16000)) >= 0.5


async def test_livekit_end_of_input_then_close_context_speaks_everything(
        server: RunningServer) -> None:
    # LiveKit's stream without auto_mode: words, then an empty text with flush, then close_context.
    words = [w + " " for w in SENTENCE.split()]
    received = await converse(server, [
        {"text": " ", "voice_settings": {}, "context_id": "lk"},
        *({"text": word, "context_id": "lk"} for word in words),
        {"text": "", "context_id": "lk", "flush": True},
        {"context_id": "lk", "close_context": True}])
    assert received[-1] == {"isFinal": True, "contextId": "lk"}
    chars = "".join("".join(m["alignment"]["chars"]) for m in received if m.get("alignment"))
    assert chars == SENTENCE + " "
    pcm = audio_of(received)
    assert word_overlap(SENTENCE, recognize(pcm16_to_float(pcm), 16000)) >= 0.5


async def test_close_context_with_unflushed_text_is_a_barge_in(server: RunningServer) -> None:
    long_text = "This reply goes on and on, sentence after sentence. " * 8
    received = await converse(server, [
        {"text": " ", "context_id": "reply"},
        {"text": long_text, "context_id": "reply"},
        {"context_id": "reply", "close_context": True}])
    assert received[-1] == {"isFinal": True, "contextId": "reply"}
    assert len(audio_of(received)) / 2 / 16000 < 5.0  # far less than the 8 sentences


async def test_each_message_alignment_spans_its_audio(server: RunningServer) -> None:
    # The engine's own rate, so no resampler delay stands between samples and bytes.
    rate = 22050
    received = await converse(server, [
        {"text": " ", "context_id": "a"},
        {"text": SENTENCE + " ", "context_id": "a", "flush": True},
        {"context_id": "a", "close_context": True}], output_format=f"pcm_{rate}")
    timed = [m for m in received if m.get("audio") and m.get("alignment")]
    assert timed
    for message in timed:
        audio_ms = len(base64.b64decode(message["audio"])) / 2 / rate * 1000
        alignment = message["alignment"]
        span = alignment["charStartTimesMs"][-1] + alignment["charDurationsMs"][-1]
        assert abs(span - audio_ms) <= 1.0


# The SDK is in the test extras; a partial developer install skips, CI fails without it.
needs_sdk = pytest.mark.skipif(
    importlib.util.find_spec("elevenlabs") is None and not os.environ.get("CI"),
    reason="the elevenlabs SDK is not installed")


def check_alignment(characters: list[str], starts: list[float], ends: list[float],
                    duration_s: float) -> None:
    assert "".join(characters) == SENTENCE
    assert len(starts) == len(ends) == len(characters)
    assert starts == sorted(starts)
    assert all(0.0 <= s <= e <= duration_s + 0.05 for s, e in zip(starts, ends, strict=True))


@needs_sdk
async def test_the_sdk_streams_with_timestamps(server: RunningServer) -> None:
    from elevenlabs.client import ElevenLabs

    def stream() -> list[Any]:
        client = ElevenLabs(api_key=server.key, base_url=server.url)
        return list(client.text_to_speech.stream_with_timestamps(
            voice_id=VOICE, text=SENTENCE, model_id="eleven_flash_v2_5",
            output_format="pcm_16000", enable_logging=True, optimize_streaming_latency=2))
    chunks = await asyncio.to_thread(stream)
    assert len(chunks) > 1  # streamed, line by line
    pcm = b"".join(base64.b64decode(c.audio_base_64) for c in chunks)
    aligned = [c.alignment for c in chunks if c.alignment is not None]
    check_alignment([ch for a in aligned for ch in a.characters],
                    [t for a in aligned for t in a.character_start_times_seconds],
                    [t for a in aligned for t in a.character_end_times_seconds],
                    len(pcm) / 2 / 16000)
    assert word_overlap(SENTENCE, recognize(pcm16_to_float(pcm), 16000)) >= 0.5


@needs_sdk
async def test_the_sdk_converts_with_timestamps(server: RunningServer) -> None:
    from elevenlabs.client import ElevenLabs

    def convert() -> Any:
        client = ElevenLabs(api_key=server.key, base_url=server.url)
        return client.text_to_speech.convert_with_timestamps(
            voice_id=VOICE, text=SENTENCE, output_format="pcm_16000")
    result = await asyncio.to_thread(convert)
    pcm = base64.b64decode(result.audio_base_64)
    alignment = result.alignment
    check_alignment(alignment.characters, alignment.character_start_times_seconds,
                    alignment.character_end_times_seconds, len(pcm) / 2 / 16000)
    assert result.normalized_alignment == alignment
    assert word_overlap(SENTENCE, recognize(pcm16_to_float(pcm), 16000)) >= 0.5


async def test_with_timestamps_refusals_have_their_shape(server: RunningServer) -> None:
    async with aiohttp.ClientSession() as http:
        for path in ("with-timestamps", "stream/with-timestamps"):
            url = f"{server.url}/v1/text-to-speech/{VOICE}/{path}"
            async with http.post(url, json={"text": SENTENCE}) as response:
                assert response.status == 401
                assert "detail" in await response.json()
            async with http.post(url, json={"text": ""},
                                 headers={"xi-api-key": server.key}) as response:
                assert response.status == 400
                assert (await response.json())["detail"]["status"] == "invalid_request"
