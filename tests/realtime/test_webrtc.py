"""WebRTC calls end to end: an aiortc peer on loopback posts its offer to a real server over HTTP,
opens the "timbre" data channel and speaks the native protocol on it, and listens to the audio
track: the speech is recognisable, there is silence between utterances, a cancel silences the
track at once (within 100 ms measured), the call is released when the peer leaves, and offers need a key."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

import aiohttp
import aioice.ice
import av
import numpy as np
import numpy.typing as npt
import pytest
from aiortc import (
    MediaStreamTrack,
    RTCConfiguration,
    RTCDataChannel,
    RTCPeerConnection,
    RTCSessionDescription,
)
from aiortc.mediastreams import MediaStreamError

from realtime.appkeys import LIMITER
from realtime.webrtc import CALLS, OFFER_PATH
from realtime.webrtc.track import FRAME_SAMPLES, SpeechQueue, SpeechTrack
from session.auth import DEMO_TENANT
from tests.asr import recognize, word_overlap
from tests.server import RunningServer, ServerThread

SENTENCE = "The quick brown fox jumps over the lazy dog near the river bank."
LONG_TEXT = " ".join(["A long passage that keeps the engine busy for a good while."] * 10)
RATE_HZ = 48_000
SILENCE_RMS = 0.005
SPEECH_RMS = 0.02


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    # aioice leaves 127.0.0.1 out of the host candidates: offer loopback (server and client)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(aioice.ice, "get_host_addresses", lambda use_ipv4, use_ipv6: ["127.0.0.1"])
        thread = ServerThread(tmp_path_factory.mktemp("webrtc"))
        yield thread.start()
        thread.stop()


@dataclass
class Heard:
    at: float  # time.monotonic() when the frame came out of the track
    samples: npt.NDArray[np.float32]  # mono

    @property
    def rms(self) -> float:
        return float(np.sqrt(np.mean(self.samples ** 2))) if len(self.samples) else 0.0


@dataclass
class Peer:
    """The client side of a call: the data channel's messages and every frame of the track."""

    pc: RTCPeerConnection
    channel: RTCDataChannel
    messages: asyncio.Queue[dict[str, object]] = field(default_factory=asyncio.Queue)
    frames: list[Heard] = field(default_factory=list)
    _listener: asyncio.Task[None] | None = None

    def send(self, **message: object) -> float:
        self.channel.send(json.dumps(message))
        return time.monotonic()

    async def next(self, kind: str, timeout_s: float = 30.0) -> dict[str, object]:
        """The next message of this type (others are skipped)."""
        async with asyncio.timeout(timeout_s):
            while True:
                message = await self.messages.get()
                if message["type"] == kind:
                    return message

    def listen(self, track: MediaStreamTrack) -> None:
        async def run() -> None:
            try:
                while True:
                    frame = await track.recv()
                    assert isinstance(frame, av.AudioFrame)
                    pcm = frame.to_ndarray().reshape(-1, len(frame.layout.channels))
                    self.frames.append(Heard(time.monotonic(),
                                             pcm.mean(axis=1).astype(np.float32) / 32768.0))
            except MediaStreamError:
                return

        self._listener = asyncio.create_task(run())

    def audio(self, since: float = 0.0) -> npt.NDArray[np.float32]:
        chunks = [f.samples for f in self.frames if f.at >= since]
        return np.concatenate(chunks) if chunks else np.zeros(0, np.float32)

    async def close(self) -> None:
        await self.pc.close()
        if self._listener is not None:
            self._listener.cancel()


async def call(server: RunningServer, headers: dict[str, str] | None = None) -> Peer:
    pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    pc.addTransceiver("audio", direction="recvonly")
    channel = pc.createDataChannel("timbre")
    peer = Peer(pc, channel)
    channel.on("message", lambda data: peer.messages.put_nowait(json.loads(data)))
    pc.on("track", peer.listen)
    opened = asyncio.Event()
    channel.on("open", opened.set)
    await pc.setLocalDescription(await pc.createOffer())
    async with aiohttp.ClientSession() as http, http.post(
            server.url + OFFER_PATH, headers=headers or {"Authorization": f"Bearer {server.key}"},
            json={"sdp": pc.localDescription.sdp, "type": "offer"}) as resp:
        assert resp.status == 200, await resp.text()
        answer = await resp.json()
    assert answer["type"] == "answer"
    await pc.setRemoteDescription(RTCSessionDescription(**answer))
    async with asyncio.timeout(10):
        await opened.wait()
    ready = await peer.next("ready")
    assert ready["sample_rate"] == RATE_HZ
    return peer


def live_calls(server: RunningServer) -> int:
    return len(server.app[CALLS].calls)


async def leases(server: RunningServer) -> int:
    """The demo tenant's stream leases held on the server (asked on the server's loop)."""
    active = server.app[LIMITER].active(DEMO_TENANT)
    return await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(active, server.loop))


async def test_text_on_the_channel_is_spoken_on_the_track(server: RunningServer) -> None:
    peer = await call(server)
    try:
        await asyncio.sleep(0.3)
        assert peer.frames, "the track plays silence before any text"
        assert max(f.rms for f in peer.frames) < SILENCE_RMS
        sent_at = peer.send(type="text", context_id="c1", text=SENTENCE)
        peer.send(type="close_context", context_id="c1")
        started = await peer.next("context_started")
        assert started["context_id"] == "c1"
        done = await peer.next("context_done")
        assert done["reason"] == "completed"
        await asyncio.sleep(0.3)  # the receiver's jitter buffer drains
        audio = peer.audio(since=sent_at)
        assert word_overlap(SENTENCE, recognize(audio, RATE_HZ)) >= 0.5
        first = next(f.at for f in peer.frames if f.at >= sent_at and f.rms > SPEECH_RMS)
        print(f"first audio on the track {1000 * (first - sent_at):.0f} ms after the text")
        # real time: the utterance took about as long to arrive as it lasts
        heard = [f for f in peer.frames if f.at >= first and f.rms > SILENCE_RMS]
        speech_s = len(heard) * 0.02
        assert heard[-1].at - first >= 0.8 * speech_s
        # silence after the utterance: context_done came once it was played
        assert all(f.rms < SILENCE_RMS for f in peer.frames[-5:])
    finally:
        await peer.close()


async def test_cancel_silences_the_track_at_once(server: RunningServer) -> None:
    """Measured here on an idle machine: the last audible frame 65-78 ms after the client sent
    the cancel (bar: 100 ms; see docs/benchmarks.md). The assertion leaves room for a loaded CI
    machine: it checks that speech stops, not the exact figure."""
    peer = await call(server)
    try:
        peer.send(type="text", context_id="long", text=LONG_TEXT)
        async with asyncio.timeout(10):
            while sum(f.rms > SPEECH_RMS for f in peer.frames) < 25:  # half a second of speech
                await asyncio.sleep(0.01)
        cancelled_at = peer.send(type="cancel", context_id="long")
        done = await peer.next("context_done")
        assert done["reason"] == "cancelled"
        await asyncio.sleep(0.5)
        after = [f for f in peer.frames if f.at >= cancelled_at]
        loud = [round(1000 * (f.at - cancelled_at)) for f in after if f.rms >= SILENCE_RMS]
        assert len(after) >= 20
        print(f"speech heard {loud} ms after the cancel; "
              f"first frame after it {1000 * (after[0].at - cancelled_at):.0f} ms")
        assert not loud or max(loud) <= 250, f"speech {loud} ms after the cancel"
    finally:
        await peer.close()


async def test_the_call_is_released_when_the_peer_goes_away(server: RunningServer) -> None:
    async with asyncio.timeout(10):  # the earlier tests' calls end first
        while live_calls(server) > 0:
            await asyncio.sleep(0.05)
    assert await leases(server) == 0
    peer = await call(server)
    assert live_calls(server) == 1
    assert await leases(server) == 1
    peer.send(type="text", context_id="c", text=LONG_TEXT)
    await peer.next("context_started")
    await peer.close()
    async with asyncio.timeout(10):
        while live_calls(server) > 0:
            await asyncio.sleep(0.05)
    assert "timbre_active_sessions 0.0" in server.metrics_text
    assert await leases(server) == 0


async def test_server_shutdown_ends_live_calls(
        tmp_path_factory: pytest.TempPathFactory, server: RunningServer) -> None:
    thread = ServerThread(tmp_path_factory.mktemp("webrtc-shutdown"))
    other = await asyncio.to_thread(thread.start)
    peer = await call(other)
    ended = asyncio.Event()

    @peer.pc.on("connectionstatechange")
    def changed() -> None:
        if peer.pc.connectionState in ("closed", "failed"):
            ended.set()

    peer.channel.on("close", ended.set)
    try:
        peer.send(type="text", context_id="c", text=LONG_TEXT)
        await peer.next("context_started")
        await asyncio.to_thread(thread.stop)
        assert live_calls(other) == 0
        async with asyncio.timeout(10):
            await ended.wait()
    finally:
        await peer.close()


async def test_an_offer_needs_a_key(server: RunningServer) -> None:
    pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    pc.addTransceiver("audio", direction="recvonly")
    pc.createDataChannel("timbre")
    await pc.setLocalDescription(await pc.createOffer())
    body = {"sdp": pc.localDescription.sdp, "type": "offer"}
    try:
        async with aiohttp.ClientSession() as http:
            async with http.post(server.url + OFFER_PATH, json=body) as resp:
                assert resp.status == 401
                assert (await resp.json())["error"]["code"] == "unauthorized"
            async with http.post(server.url + OFFER_PATH + "?token=nope", json=body) as resp:
                assert resp.status == 401
            async with http.post(server.url + OFFER_PATH + f"?token={server.key}",
                                 json={"sdp": "v=0", "type": "answer"}) as resp:
                assert resp.status == 400
            no_role = "\r\n".join(line for line in body["sdp"].split("\r\n")
                                   if not line.startswith("a=setup:"))
            async with http.post(server.url + OFFER_PATH + f"?token={server.key}",
                                 json={"sdp": no_role, "type": "offer"}) as resp:
                assert resp.status == 400  # aiortc itself fails on it (AttributeError)
                assert "a=setup" in (await resp.json())["error"]["message"]
    finally:
        await pc.close()


def pcm(*values: int) -> bytes:
    return np.array(values, dtype="<i2").tobytes()


def test_the_queue_plays_contexts_in_order_and_pads_with_silence() -> None:
    queue = SpeechQueue()
    queue.push("a", pcm(1, 2, 3))
    queue.push("b", pcm(4, 5))
    samples, speech = queue.take(4)
    assert samples.tolist() == [1, 2, 3, 4] and speech
    samples, speech = queue.take(4)
    assert samples.tolist() == [5, 0, 0, 0] and speech
    samples, speech = queue.take(4)
    assert samples.tolist() == [0, 0, 0, 0] and not speech


def test_drop_removes_one_context_and_markers_fire_when_playout_reaches_them() -> None:
    queue = SpeechQueue()
    played: list[str] = []
    queue.push("a", pcm(1, 2))
    queue.mark("a", lambda: played.append("a done"))
    queue.push("b", pcm(3, 4))
    queue.push("a", pcm(9, 9))
    queue.mark("b", lambda: played.append("b done"))
    assert queue.drop("a") == 4
    assert queue.queued_samples == 2
    samples, _ = queue.take(2)
    assert samples.tolist() == [3, 4]
    assert played == ["a done", "b done"]  # the dropped context's marker still fires


async def test_the_track_paces_frames_at_real_time_without_drift() -> None:
    track = SpeechTrack()
    track.queue.push("a", pcm(*([100] * FRAME_SAMPLES * 2)))
    start = time.monotonic()
    frames = [await track.recv() for _ in range(50)]
    elapsed = time.monotonic() - start
    assert 0.95 <= elapsed <= 1.1  # 49 frame periods after the first frame, which goes at once
    assert [f.pts for f in frames] == [i * FRAME_SAMPLES for i in range(50)]
    assert all(f.sample_rate == RATE_HZ and f.samples == FRAME_SAMPLES for f in frames)
    assert [bool(f.to_ndarray().any()) for f in frames[:3]] == [True, True, False]
    track.stop()
    with pytest.raises(MediaStreamError):
        await track.recv()
