"""Twilio calls end to end: a fake Twilio (an aiohttp WebSocket client) connects to a real server
with a minted ``?token=``, starts a stream, and the test drives it over HTTP like an application
would: speech arrives as paced 160-byte mu-law frames a recogniser understands, then the
utterance's mark; cancel sends ``clear`` and no frame after it; revoking a voice profile stops the
utterance speaking with it (``clear``, no mark) and the queued ones using it; malformed frames leave
the call alive; calls are found only in their own tenant."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import aiohttp
import numpy as np
import numpy.typing as npt
import pytest

from realtime.twilio import CALLS, STREAM_PATH
from realtime.twilio.call import CallRegistry
from realtime.twilio.protocol import (
    Clear,
    Connected,
    Media,
    MediaFormat,
    OutboundMark,
    OutboundMedia,
    Start,
    parse_outbound,
    to_wire,
)
from session.auth import DEMO_TENANT
from session.db import Stores, open_database
from session.ids import TenantId
from session.store.audit import AuditAction
from tests.asr import recognize, word_overlap
from tests.realtime.test_stream_tenancy import ready_profile
from tests.server import RunningServer, ServerThread

SENTENCE = "The quick brown fox jumps over the lazy dog near the river bank."
LONG_TEXT = " ".join(["A long passage that keeps the engine busy for a good while."] * 10)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    thread = ServerThread(tmp_path_factory.mktemp("twilio"))
    yield thread.start()
    thread.stop()


def mulaw_to_float(data: bytes) -> npt.NDArray[np.float32]:
    """G.711 mu-law bytes to float samples in [-1, 1]."""
    u = ~np.frombuffer(data, dtype=np.uint8)
    exponent = (u >> 4) & 0x07
    magnitude = ((((u & 0x0F).astype(np.int32) << 3) + 0x84) << exponent) - 0x84
    pcm = np.where(u & 0x80, -magnitude, magnitude)
    return (pcm / 32768.0).astype(np.float32)


class FakeTwilio:
    """What Twilio does on a ``<Connect><Stream>``: connected, start, then it reads our frames."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse, call_sid: str) -> None:
        self.ws = ws
        self.call_sid = call_sid
        self.stream_sid = "MZ" + call_sid[2:]

    async def start(self) -> None:
        await self.ws.send_str(to_wire(Connected("Call", "1.0.0")))
        await self.ws.send_str(to_wire(Start(
            1, self.stream_sid, "ACtest", self.call_sid, ("inbound",), MediaFormat(), {})))

    async def next(self, timeout_s: float = 10.0) -> OutboundMedia | OutboundMark | Clear:
        msg = await self.ws.receive(timeout=timeout_s)
        assert msg.type == aiohttp.WSMsgType.TEXT, msg
        message = parse_outbound(msg.data)
        assert message.stream_sid == self.stream_sid
        return message


async def _token(session: aiohttp.ClientSession, server: RunningServer) -> str:
    async with session.post(f"{server.url}/v1/tokens", json={"ttl_s": 300},
                            headers={"Authorization": f"Bearer {server.key}"}) as resp:
        assert resp.status == 200
        return str((await resp.json())["token"])


@pytest.fixture
async def http(server: RunningServer) -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {server.key}"}) as s:
        yield s


async def _connect(http: aiohttp.ClientSession, server: RunningServer,
                   call_sid: str) -> AsyncIterator[FakeTwilio]:
    token = await _token(http, server)
    async with aiohttp.ClientSession() as bare, bare.ws_connect(
            f"{server.ws_url}{STREAM_PATH}?token={token}") as ws:
        twilio = FakeTwilio(ws, call_sid)
        await twilio.start()
        await _until_live(http, server, call_sid)
        yield twilio


async def _until_live(http: aiohttp.ClientSession, server: RunningServer, call_sid: str) -> None:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if server.app[CALLS].get(DEMO_TENANT, call_sid) is not None:
            return
        await asyncio.sleep(0.02)
    raise AssertionError(f"call {call_sid} never went live")


async def _speak(http: aiohttp.ClientSession, server: RunningServer, call_sid: str,
                 text: str, voice: str | None = None) -> aiohttp.ClientResponse:
    body = {"text": text} if voice is None else {"text": text, "voice": voice}
    async with http.post(f"{server.url}/v1/calls/{call_sid}/speak", json=body) as resp:
        await resp.read()
        return resp


@pytest.fixture
async def stores(server: RunningServer) -> AsyncIterator[Stores]:
    db = open_database(server.mongo_url)
    yield Stores.over(db)
    db.client.close()


@pytest.fixture
async def call(http: aiohttp.ClientSession, server: RunningServer,
               request: pytest.FixtureRequest) -> AsyncIterator[FakeTwilio]:
    call_sid = f"CA{abs(hash(request.node.name)):032x}"[:34]
    async for twilio in _connect(http, server, call_sid):
        yield twilio


async def test_speak_sends_paced_frames_the_recogniser_understands_then_a_mark(
        call: FakeTwilio, http: aiohttp.ClientSession, server: RunningServer) -> None:
    async with http.post(f"{server.url}/v1/calls/{call.call_sid}/speak",
                         json={"text": SENTENCE}) as resp:
        assert resp.status == 202
        answer = await resp.json()
    assert answer["call_sid"] == call.call_sid
    frames: list[bytes] = []
    arrivals: list[float] = []
    while True:
        message = await call.next()
        if isinstance(message, OutboundMark):
            break
        assert isinstance(message, OutboundMedia)
        frames.append(message.payload)
        arrivals.append(time.monotonic())
    assert message.name == answer["mark"]
    assert {len(f) for f in frames} == {160}
    audio = mulaw_to_float(b"".join(frames))
    assert word_overlap(SENTENCE, recognize(audio, 8000)) >= 0.5
    # paced at real time: the frames took about their own duration to arrive, minus the lead
    audio_s = len(frames) * 0.02
    assert arrivals[-1] - arrivals[0] >= audio_s - 0.5


async def test_cancel_clears_and_no_frame_follows(
        call: FakeTwilio, http: aiohttp.ClientSession, server: RunningServer) -> None:
    assert (await _speak(http, server, call.call_sid, LONG_TEXT)).status == 202
    assert (await _speak(http, server, call.call_sid, SENTENCE)).status == 202
    for _ in range(10):
        assert isinstance(await call.next(), OutboundMedia)
    async with http.post(f"{server.url}/v1/calls/{call.call_sid}/cancel") as resp:
        assert resp.status == 200
        assert (await resp.json())["cancelled"] == 2
    while not isinstance(message := await call.next(), Clear):
        assert isinstance(message, OutboundMedia)  # sent before the cancel
    with pytest.raises(asyncio.TimeoutError):
        await call.next(timeout_s=1.0)
    # the call still speaks afterwards
    assert (await _speak(http, server, call.call_sid, "Hello again.")).status == 202
    assert isinstance(await call.next(), OutboundMedia)


async def test_revoking_a_profile_stops_its_speech_on_the_call_at_once(
        call: FakeTwilio, http: aiohttp.ClientSession, server: RunningServer,
        stores: Stores) -> None:
    voice = await ready_profile(stores, DEMO_TENANT, "caller")
    url = f"{server.url}/v1/calls/{call.call_sid}"
    async with http.post(f"{url}/speak", json={"text": LONG_TEXT, "voice": voice}) as resp:
        assert resp.status == 202
        playing = (await resp.json())["mark"]
    assert (await _speak(http, server, call.call_sid, SENTENCE, voice)).status == 202  # queued
    async with http.post(f"{url}/speak", json={"text": "Back to the stock voice."}) as resp:
        after = (await resp.json())["mark"]
    for _ in range(10):
        assert isinstance(await call.next(), OutboundMedia)
    async with http.post(f"{server.url}/v1/voices/{voice}/revoke") as resp:
        assert resp.status == 200, await resp.text()
    while not isinstance(message := await call.next(), Clear):
        assert isinstance(message, OutboundMedia)  # sent before the revocation
    # what follows the clear is only the stock-voice utterance: the queued one was refused
    frames = 0
    while not isinstance(message := await call.next(), OutboundMark):
        frames += 1
    assert message.name == after and message.name != playing
    assert 0 < frames < 150  # about two seconds: not the refused sentence as well
    async with http.post(f"{url}/speak", json={"text": "Hi.", "voice": voice}) as resp:
        assert resp.status == 409
        assert (await resp.json())["error"]["code"] == "voice_unavailable"
    uses = [e for e in await stores.audit.list(DEMO_TENANT, subject=voice)
            if e.action is AuditAction.VOICE_USE]
    assert [dict(e.details) for e in uses] == [{"via": "twilio", "call_sid": call.call_sid}]


async def test_malformed_frames_are_dropped_and_the_call_goes_on(
        call: FakeTwilio, http: aiohttp.ClientSession, server: RunningServer) -> None:
    before = server.metrics_text
    await call.ws.send_str("not json")
    await call.ws.send_bytes(b"\x00\x01")
    await call.ws.send_str(json.dumps({"event": "teleport", "streamSid": call.stream_sid}))
    await call.ws.send_str(to_wire(Media(2, call.stream_sid, "inbound", 1, 0, b"\xff" * 160)))
    assert (await _speak(http, server, call.call_sid, "Still here.")).status == 202
    assert isinstance(await call.next(), OutboundMedia)
    after = server.metrics_text
    for code in ("bad_json", "binary_not_supported", "unknown_type"):
        assert _count(after, code) == _count(before, code) + 1


def _count(metrics_text: str, code: str) -> float:
    for line in metrics_text.splitlines():
        if line.startswith(f'timbre_errors_total{{code="{code}"}}'):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


async def test_media_before_start_closes_with_1008(
        http: aiohttp.ClientSession, server: RunningServer) -> None:
    token = await _token(http, server)
    async with aiohttp.ClientSession() as bare, bare.ws_connect(
            f"{server.ws_url}{STREAM_PATH}?token={token}") as ws:
        await ws.send_str(to_wire(Media(2, "MZx", "inbound", 1, 0, b"\xff" * 160)))
        msg = await ws.receive(timeout=5)
        assert msg.type == aiohttp.WSMsgType.CLOSE
        assert ws.close_code == 1008


async def test_stream_without_credential_is_refused(server: RunningServer) -> None:
    async with aiohttp.ClientSession() as bare:
        with pytest.raises(aiohttp.WSServerHandshakeError) as caught:
            await bare.ws_connect(f"{server.ws_url}{STREAM_PATH}")
        assert caught.value.status == 401


async def test_unknown_call_is_404(http: aiohttp.ClientSession, server: RunningServer) -> None:
    for action, body in (("speak", {"text": "Hi."}), ("cancel", None)):
        async with http.post(f"{server.url}/v1/calls/CAnope/{action}", json=body) as resp:
            assert resp.status == 404
            assert (await resp.json())["error"]["code"] == "unknown_call"


async def test_speak_validates_its_body(call: FakeTwilio, http: aiohttp.ClientSession,
                                        server: RunningServer) -> None:
    url = f"{server.url}/v1/calls/{call.call_sid}/speak"
    for body, code in (({"text": ""}, "bad_request"), ({"voice": "piper:joe"}, "bad_request"),
                       ({"text": "Hi.", "voice": "nobody"}, "unknown_voice")):
        async with http.post(url, json=body) as resp:
            assert (await resp.json())["error"]["code"] == code


async def test_stop_ends_the_call(http: aiohttp.ClientSession, server: RunningServer) -> None:
    async for twilio in _connect(http, server, "CAstop0000000000000000000000000000"):
        await twilio.ws.send_str(json.dumps({
            "event": "stop", "sequenceNumber": "3", "streamSid": twilio.stream_sid,
            "stop": {"accountSid": "ACtest", "callSid": twilio.call_sid}}))
        msg = await twilio.ws.receive(timeout=5)
        assert msg.type == aiohttp.WSMsgType.CLOSE
    async with http.post(f"{server.url}/v1/calls/CAstop0000000000000000000000000000/speak",
                         json={"text": "Hi."}) as resp:
        assert resp.status == 404


def test_registry_finds_calls_only_in_their_own_tenant(tmp_path: Path) -> None:
    class _Call:
        tenant = TenantId("t_a")
        call_sid = "CA1"

    registry = CallRegistry()
    call = _Call()
    assert registry.add(call)  # type: ignore[arg-type]
    assert not registry.add(call)  # type: ignore[arg-type]
    assert registry.get(TenantId("t_a"), "CA1") is call  # type: ignore[comparison-overlap]
    assert registry.get(TenantId("t_b"), "CA1") is None
    registry.remove(call)  # type: ignore[arg-type]
    assert registry.get(TenantId("t_a"), "CA1") is None and len(registry) == 0
