"""End to end over real sockets: a running server, the native protocol, real Piper speech."""

from __future__ import annotations

import asyncio
import json
import os
import stat

import aiohttp
import numpy as np
import pytest

from realtime.audio import SUPPORTED_SAMPLE_RATES
from realtime.client import DoneTimeout, ServerRefused, StreamClient, Unauthorized
from tests.asr import recognize, word_overlap
from tests.server import RunningServer, ServerThread

SENTENCE = "The quick brown fox jumps over the lazy dog near the river bank."


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory):
    thread = ServerThread(tmp_path_factory.mktemp("data"))
    yield thread.start()
    thread.stop()


async def speak(
    server: RunningServer,
    text: str,
    *,
    sample_rate: int = 24000,
    words_per_s: float = 20,
    context_id: str = "c1",
) -> tuple[np.ndarray, object]:
    async with await StreamClient.connect(
        server.ws_url, server.key, sample_rate_hz=sample_rate
    ) as client:
        await client.stream_words(context_id, text, words_per_s)
        await client.close_context(context_id)
        record = await client.wait_done(context_id, timeout_s=60)
    pcm = np.frombuffer(bytes(record.audio), dtype="<i2").astype(np.float32) / 32768
    return pcm, record


# --- HTTP surface ------------------------------------------------------------------------------


async def test_health_ready_metrics_and_demo_key_file(server: RunningServer) -> None:
    async with aiohttp.ClientSession() as http:
        async with http.get(server.url + "/healthz") as r:
            assert r.status == 200
        async with http.get(server.url + "/readyz") as r:
            assert r.status == 200 and (await r.json())["ready"] is True
        async with http.get(server.url + "/metrics") as r:
            body = await r.text()
    for name in (
        "timbre_active_sessions",
        "timbre_queue_depth",
        "timbre_time_to_first_audio",
        "timbre_step_duration_seconds",
        "timbre_batch_size",
        "timbre_client_underruns",
        "timbre_errors",
    ):
        assert name in body
    key_file = server.data_dir / "demo-api-key"
    assert key_file.read_text().strip() == server.key
    assert stat.S_IMODE(os.stat(key_file).st_mode) == 0o600


async def test_api_requires_a_key(server: RunningServer) -> None:
    async with aiohttp.ClientSession() as http:
        async with http.get(server.url + "/v1/voices") as r:
            assert r.status == 401
            assert (await r.json())["error"]["code"] == "unauthorized"
        async with http.get(
            server.url + "/v1/voices", headers={"Authorization": "Bearer tk_wrong"}
        ) as r:
            assert r.status == 401
        async with http.get(server.url + f"/v1/voices?token={server.key}") as r:
            assert r.status == 200
            assert "piper:joe" in [v["voice_id"] for v in (await r.json())["voices"]]
    with pytest.raises(Unauthorized):
        await StreamClient.connect(server.ws_url, "tk_wrong")


# --- speech ----------------------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize("rate", SUPPORTED_SAMPLE_RATES)
async def test_streamed_text_comes_back_as_intelligible_speech(
    server: RunningServer, rate: int
) -> None:
    pcm, record = await speak(server, SENTENCE, sample_rate=rate)
    duration_s = len(pcm) / rate
    assert 2.0 < duration_s < 8.0
    assert record.done.samples == len(pcm)
    assert record.done.characters == len(SENTENCE)
    hypothesis = recognize(pcm, rate)
    assert word_overlap(SENTENCE, hypothesis) >= 0.5, hypothesis
    sequences = [f.sequence for f in record.frames]
    assert sequences == list(range(len(sequences)))
    words = record.words
    assert len(words) >= 8
    starts = [w.start_ms for w in words]
    assert starts == sorted(starts) and words[-1].end_ms <= 1000 * duration_s + 50


async def test_five_concurrent_contexts_on_one_socket(server: RunningServer) -> None:
    texts = [f"This is context number {n}, speaking at the same time." for n in range(5)]
    async with await StreamClient.connect(server.ws_url, server.key) as client:
        await asyncio.gather(*(client.stream_words(f"ctx-{n}", t, 30) for n, t in enumerate(texts)))
        for n in range(5):
            await client.close_context(f"ctx-{n}")
        records = [await client.wait_done(f"ctx-{n}", timeout_s=60) for n in range(5)]
    for record in records:
        assert record.done is not None and record.done.reason == "completed"
        assert record.audio_s > 1.0
        assert [f.sequence for f in record.frames] == list(range(len(record.frames)))


async def test_cancel_mid_utterance_stops_the_context_at_once(server: RunningServer) -> None:
    long_text = " ".join(["This sentence keeps going so that there is plenty to cancel."] * 6)
    async with await StreamClient.connect(server.ws_url, server.key) as client:
        await client.send_text("long", long_text)
        await client.close_context("long")
        record = await client.wait_audio("long", timeout_s=30)
        assert record.frames, "no audio before cancel"
        await client.cancel("long")
        done = await client.wait_done("long", timeout_s=10)
        frames_at_done = len(done.frames)
        await asyncio.sleep(1.0)  # anything still in flight would arrive now
        assert len(client.context("long").frames) == frames_at_done
        # the session goes on
        with pytest.raises(DoneTimeout, match="no audio within"):
            await client.wait_audio("next", timeout_s=0.2)  # nothing sent for it yet
        await client.send_text("next", "Still here.")
        await client.close_context("next")
        after = await client.wait_done("next", timeout_s=30)
    assert done.done.reason == "cancelled"
    assert done.audio_s < 20  # far less than the whole text
    assert after.done.reason == "completed" and after.audio_s > 0.3


# --- bad input -----------------------------------------------------------------------------------


async def raw_session(server: RunningServer, query: str = ""):
    http = aiohttp.ClientSession()
    ws = await http.ws_connect(
        server.ws_url + "/v1/stream" + query, headers={"Authorization": f"Bearer {server.key}"}
    )
    ready = json.loads((await ws.receive()).data)
    return http, ws, ready


async def next_json(ws: aiohttp.ClientWebSocketResponse) -> dict:
    while True:
        msg = await asyncio.wait_for(ws.receive(), 30)
        if msg.type == aiohttp.WSMsgType.TEXT:
            return json.loads(msg.data)
        if msg.type != aiohttp.WSMsgType.BINARY:
            return {"closed": ws.close_code}


async def test_bad_messages_get_errors_and_the_session_survives(server: RunningServer) -> None:
    http, ws, ready = await raw_session(server)
    assert ready["type"] == "ready"
    cases = [
        ("not json", "bad_json"),
        ("[1, 2]", "bad_json"),
        (json.dumps({"type": "shout"}), "unknown_type"),
        (json.dumps({"type": "text", "context_id": "a"}), "bad_message"),
        (json.dumps({"type": "text", "context_id": "bad id!", "text": "x"}), "bad_message"),
        (
            json.dumps({"type": "text", "context_id": "v", "text": "hi", "voice": "nobody"}),
            "unknown_voice",
        ),
        (json.dumps({"type": "config", "sample_rate": 12345}), "bad_sample_rate"),
        (json.dumps({"type": "flush", "context_id": "never"}), "unknown_context"),
    ]
    for frame, code in cases:
        await ws.send_str(frame)
        reply = await next_json(ws)
        assert reply.get("code") == code, (frame, reply)
    await ws.send_bytes(b"\x00\x01")
    assert (await next_json(ws))["code"] == "binary_not_supported"
    # a closed context refuses more text; the session still speaks
    await ws.send_str(json.dumps({"type": "text", "context_id": "t", "text": "Hi there."}))
    await ws.send_str(json.dumps({"type": "close_context", "context_id": "t"}))
    seen = []
    while True:
        reply = await next_json(ws)
        seen.append(reply["type"])
        if reply["type"] == "context_done":
            break
    assert seen[0] == "context_started"
    await ws.send_str(json.dumps({"type": "text", "context_id": "t", "text": "more"}))
    assert (await next_json(ws))["code"] == "context_closed"
    await ws.close()
    await http.close()


async def test_a_refused_context_is_not_started_by_its_later_text(server: RunningServer) -> None:
    """Its first words were refused (here: a voice that does not exist), so speaking the rest would
    say a sentence without its beginning, in a voice nobody asked for."""
    http, ws, _ = await raw_session(server)
    await ws.send_str(json.dumps(
        {"type": "text", "context_id": "c", "text": "Hello ", "voice": "nobody"}))
    assert (await next_json(ws))["code"] == "unknown_voice"
    await ws.send_str(json.dumps({"type": "text", "context_id": "c", "text": "there."}))
    reply = await next_json(ws)
    assert reply["code"] == "context_closed" and "refused (unknown_voice)" in reply["message"]
    await ws.send_str(json.dumps({"type": "close_context", "context_id": "c"}))  # a no-op
    await ws.send_str(json.dumps({"type": "text", "context_id": "d", "text": "Hello there."}))
    await ws.send_str(json.dumps({"type": "close_context", "context_id": "d"}))
    seen = []
    while not seen or seen[-1] != ("context_done", "d"):
        reply = await next_json(ws)
        seen.append((reply["type"], reply.get("context_id")))
    assert seen[0] == ("context_started", "d")
    assert all(context_id == "d" for _, context_id in seen)  # nothing for c, and no error
    await ws.close()
    await http.close()


async def test_the_client_stops_streaming_into_a_refused_context(server: RunningServer) -> None:
    async with await StreamClient.connect(server.ws_url, server.key) as client:
        # two words a second: the refusal of the first is back long before the second is due
        await client.stream_words("c", "one two three", words_per_s=2, voice="nobody")
        record = await client.wait_done("c", timeout_s=10)
        assert record.refused and record.word_count == 1
        assert [error.code for error in record.errors] == ["unknown_voice"]


async def test_oversized_message_closes_with_1009(server: RunningServer) -> None:
    http, ws, _ = await raw_session(server)
    await ws.send_str(json.dumps({"type": "text", "context_id": "a", "text": "x" * 70_000}))
    reply = await next_json(ws)
    assert reply["code"] == "message_too_large"
    closing = await next_json(ws)
    assert closing == {"closed": 1009}
    await http.close()


@pytest.mark.parametrize(
    "query, code",
    [
        ("?sample_rate=12345", "bad_sample_rate"),
        ("?voice=nobody", "unknown_voice"),
        ("?format=wav", "bad_format"),
    ],
)
async def test_bad_query_is_refused_with_4400(server: RunningServer, query: str, code: str) -> None:
    http = aiohttp.ClientSession()
    ws = await http.ws_connect(
        server.ws_url + "/v1/stream" + query, headers={"Authorization": f"Bearer {server.key}"}
    )
    reply = await next_json(ws)
    assert reply["code"] == code
    assert (await next_json(ws)) == {"closed": 4400}
    await http.close()


async def test_client_refusal_is_a_typed_error(server: RunningServer) -> None:
    with pytest.raises(ServerRefused) as info:
        await StreamClient.connect(server.ws_url, server.key, sample_rate_hz=12345)
    assert info.value.code == "bad_sample_rate"


# --- limits that end a session ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def strict_server(tmp_path_factory: pytest.TempPathFactory):
    thread = ServerThread(
        tmp_path_factory.mktemp("strict"),
        session={"inactivity_timeout_s": 1.0, "output_buffer_bytes": 300_000},
        scheduler={"max_lead_s": 120.0},
    )
    yield thread.start()
    thread.stop()


async def test_idle_session_is_closed_with_4000(strict_server: RunningServer) -> None:
    http, ws, _ = await raw_session(strict_server)
    reply = await next_json(ws)
    assert reply["code"] == "inactivity_timeout"
    assert (await next_json(ws)) == {"closed": 4000}
    await http.close()


@pytest.mark.slow
async def test_a_client_that_stops_reading_is_closed_with_4001(
    strict_server: RunningServer,
) -> None:
    import socket

    import websockets

    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.connect(("127.0.0.1", int(strict_server.url.rsplit(":", 1)[1])))
    url = strict_server.ws_url + "/v1/stream?sample_rate=48000"
    text = " ".join(["This long passage keeps the server busy producing audio."] * 80)
    async with websockets.connect(url, sock=sock, max_queue=1, open_timeout=10,
                                  additional_headers={"Authorization": f"Bearer {strict_server.key}"}
                                  ) as ws:
        await ws.send(json.dumps({"type": "text", "context_id": "flood", "text": text[:4900]}))
        await ws.send(json.dumps({"type": "close_context", "context_id": "flood"}))
        await asyncio.sleep(20)  # read nothing while the server produces minutes of audio
        with pytest.raises(websockets.ConnectionClosed) as info:
            while True:
                await asyncio.wait_for(ws.recv(), 10)
    # The close frame (4001) queues behind the unread audio, so such a client may only see the
    # socket drop; the server's side is what matters: the session is gone and counted.
    rcvd = info.value.rcvd
    assert rcvd is None or rcvd.code == 4001
    metrics = strict_server.metrics_text
    assert 'timbre_errors_total{code="slow_consumer"} 1.0' in metrics
    assert "timbre_active_sessions 0.0" in metrics


def decode(payload: bytes, fmt: str) -> tuple[np.ndarray, int]:
    """The concatenated frames of one context, decoded as a client would."""
    import io

    import av

    container = {"ulaw_8000": "mulaw", "alaw_8000": "alaw", "mp3": "mp3", "opus": "ogg"}[fmt]
    options = {"sample_rate": "8000", "channels": "1"} if fmt.endswith("_8000") else {}
    with av.open(io.BytesIO(payload), format=container, options=options) as f:
        frames = [frame.to_ndarray().reshape(-1) for frame in f.decode(audio=0)]
        rate = f.streams.audio[0].sample_rate
    samples = np.concatenate(frames).astype(np.float32)
    if samples.dtype.kind == "i" or np.abs(samples).max() > 1.5:
        samples = samples / 32768
    return samples, rate


@pytest.mark.slow
@pytest.mark.parametrize("fmt, rate", [("ulaw_8000", 8000), ("alaw_8000", 8000),
                                       ("mp3", 44100), ("opus", 48000)])
async def test_coded_formats_stream_intelligible_speech(server: RunningServer, fmt: str,
                                                        rate: int) -> None:
    async with await StreamClient.connect(server.ws_url, server.key, audio_format=fmt,
                                          sample_rate_hz=None) as client:
        assert (client.ready.format, client.ready.sample_rate) == (fmt, rate)
        await client.stream_words("c", SENTENCE, 20)
        await client.close_context("c")
        record = await client.wait_done("c", timeout_s=60)
    pcm, decoded_rate = decode(bytes(record.audio), fmt)
    assert decoded_rate == rate
    assert 2.0 < len(pcm) / rate < 8.0
    assert abs(record.done.samples - len(pcm)) < 0.05 * rate  # codec padding aside
    assert word_overlap(SENTENCE, recognize(pcm, rate)) >= 0.5
