"""Property-based fuzzing of the HTTP handlers through the real app on a real socket: JSON APIs
(tokens, OpenAI and ElevenLabs speech, synthesis jobs, WebRTC offers, the call API), every route
with fuzzed ids and queries, voice uploads (multipart, random audio), and credentials.

The properties, for every request: an answer within ``TIMEOUT_S`` (no hang); never a 5xx (no
crash); a 4xx carries the endpoint's own error shape with a code and a message (a clear error);
and once the fuzzing is done the server holds no more tasks, stream leases or file descriptors
than before (no leak).

Requests run as the ``mute`` tier (no characters left), so a request that passes every check
ends at ``quota_exceeded`` rather than synthesising audio; uploads and offers, which need no
characters to be checked, run as the ``single`` tier so that audio decoding and SDP parsing are
fuzzed too.
"""

from __future__ import annotations

import asyncio
import io
import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import aiohttp
import psutil
import pytest
from hypothesis import given
from hypothesis import strategies as st
from yarl import URL

from realtime.appkeys import LIMITER, METRICS
from session.ids import TenantId
from tests.security.conftest import new_tenant, on_server
from tests.security.fuzzing import (
    FUZZ,
    NUMBERS,
    TEXT,
    Tally,
    dumps,
    frames,
    objects,
    to_bytes,
)
from tests.security.test_fuzz_protocols import OPENAI
from tests.server import RunningServer

TIMEOUT_S = 30.0
HEADER_TEXT = st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=60)
"""What an HTTP client lets through as a header value."""


class SyncHttp:
    """A blocking HTTP client for Hypothesis' synchronous tests: an aiohttp session on a private
    event loop of the test's thread (the server runs on its own thread and loop)."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.session = self.loop.run_until_complete(self._open())

    @staticmethod
    async def _open() -> aiohttp.ClientSession:
        return aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=TIMEOUT_S))

    def request(self, method: str, url: URL, **kwargs: Any) -> tuple[int, str, bytes]:
        async def send() -> tuple[int, str, bytes]:
            async with self.session.request(method, url, **kwargs) as resp:
                return resp.status, resp.content_type, await resp.read()

        return self.loop.run_until_complete(send())

    def close(self) -> None:
        self.loop.run_until_complete(self.session.close())
        self.loop.close()


@dataclass(frozen=True)
class Fixture:
    server: RunningServer
    http: SyncHttp
    mute_key: str
    single_key: str
    tenants: tuple[TenantId, ...]


def _server_state(server: RunningServer, tenants: tuple[TenantId, ...]) -> dict[str, int]:
    async def state() -> dict[str, int]:
        limiter = server.app[LIMITER]
        return {"tasks": len(asyncio.all_tasks()),
                "leases": sum([await limiter.active(t) for t in tenants])}

    return on_server(server, state())


@pytest.fixture(scope="module")
def fuzz(server: RunningServer) -> Iterator[Fixture]:
    """The clients and tenants of this module; checks for leaks once every fuzz test has run."""
    mute, mute_key = new_tenant(server, "mute")
    single, single_key = new_tenant(server, "single")
    http = SyncHttp()
    tenants = (mute, single)
    http.request("GET", URL(server.url + "/v1/usage"),
                 headers={"Authorization": f"Bearer {mute_key}"})  # warm the caches
    process = psutil.Process()
    before, fds_before = _server_state(server, tenants), process.num_fds()
    yield Fixture(server, http, mute_key, single_key, tenants)
    http.close()
    after = {}
    for _ in range(100):  # background work (metering, closing calls) may take a moment
        after = _server_state(server, tenants)
        if after["tasks"] <= before["tasks"] and after["leases"] == 0:
            break
        on_server(server, asyncio.sleep(0.05))
    assert after["leases"] == 0, after
    assert after["tasks"] <= before["tasks"], (before, after)
    assert process.num_fds() <= fds_before + 8, (fds_before, process.num_fds())
    assert 'timbre_active_sessions 0.0' in server.app[METRICS].render().decode()


def check_answer(status: int, content_type: str, body: bytes, shape: str = "timbre") -> None:
    """No crash, and a clear error in the endpoint's shape for every refusal."""
    assert status < 500, (status, body[:300])
    if status < 400:
        return
    if content_type != "application/json":  # the router's own 404/405 for an unknown route
        assert status in (404, 405), (status, content_type, body[:300])
        return
    answer = json.loads(body)
    if shape == "openai":
        error = answer["error"]
        assert set(error) == {"message", "type", "param", "code"}, answer
        assert error["code"] and error["message"] and error["type"].endswith("_error")
    elif shape == "elevenlabs":
        detail = answer["detail"]
        assert detail["status"] and detail["message"], answer
    else:
        assert answer["error"]["code"] and answer["error"]["message"], answer
    assert "Traceback" not in body.decode("utf-8", "replace")


# -- JSON APIs -------------------------------------------------------------------------------------

VOICES = st.sampled_from(["piper:joe", "alloy", "v_0123456789abcdef", "nobody"]) | TEXT
SYNTHESIZE = objects({"text": TEXT, "voice": VOICES, "format": TEXT, "speed": NUMBERS})
ELEVENLABS_HTTP = objects({"text": TEXT, "model_id": TEXT,
                           "voice_settings": objects({"speed": NUMBERS})})
TOKENS = objects({"ttl_s": NUMBERS, "scopes": st.lists(TEXT, max_size=3)})
SPEAK = objects({"text": TEXT, "voice": VOICES})
ENDPOINTS: dict[str, tuple[st.SearchStrategy[dict[str, Any]], str]] = {
    "/v1/tokens": (TOKENS, "timbre"),
    "/v1/audio/speech": (OPENAI, "openai"),
    "/v1/text-to-speech/{voice}": (ELEVENLABS_HTTP, "elevenlabs"),
    "/v1/text-to-speech/{voice}/stream": (ELEVENLABS_HTTP, "elevenlabs"),
    "/v1/synthesize": (SYNTHESIZE, "timbre"),
    "/v1/calls/{voice}/speak": (SPEAK, "timbre"),
    "/v1/calls/{voice}/cancel": (SPEAK, "timbre"),
}
"""Path template -> (body strategy, error shape)."""
QUERY = st.dictionaries(st.sampled_from(["output_format", "voice", "speed", "token", "x"]),
                        HEADER_TEXT, max_size=3)


def _url(server: RunningServer, template: str, voice: str, query: dict[str, str]) -> URL:
    segment = quote(voice.encode("utf-8", "surrogatepass"), safe="") or "x"
    path = template.replace("{voice}", segment)
    return URL(server.url + path, encoded=True).with_query(query)


@FUZZ
@given(template=st.sampled_from(sorted(ENDPOINTS)), data=st.data(), voice=VOICES, query=QUERY)
def test_json_apis(fuzz: Fixture, tally: Tally, template: str, data: st.DataObject, voice: str,
                   query: dict[str, str]) -> None:
    tally.hit()
    messages, shape = ENDPOINTS[template]
    body = to_bytes(data.draw(frames(messages)))
    headers = {"Authorization": f"Bearer {fuzz.mute_key}", "xi-api-key": fuzz.mute_key,
               "Content-Type": data.draw(st.sampled_from(["application/json", "text/plain"]))}
    status, content_type, answer = fuzz.http.request(
        "POST", _url(fuzz.server, template, voice, query), data=body, headers=headers)
    check_answer(status, content_type, answer, shape)


# -- every route, fuzzed ids -----------------------------------------------------------------------

ROUTES = st.sampled_from([
    ("GET", "/v1/voices"), ("GET", "/v1/voices/{id}"), ("DELETE", "/v1/voices/{id}"),
    ("POST", "/v1/voices/{id}/revoke"), ("GET", "/v1/jobs"), ("GET", "/v1/jobs/{id}"),
    ("GET", "/v1/jobs/{id}/audio"), ("GET", "/v1/usage"), ("GET", "/v1/stream"),
    ("POST", "/v1/calls/{id}/cancel"), ("GET", "/web/{id}"), ("GET", "/openapi.json"),
    ("GET", "/v1/telephony/twilio"), ("GET", "/v1/text-to-speech/{id}/stream-input"),
    ("GET", "/v1/text-to-speech/{id}/multi-stream-input"),
    ("PUT", "/v1/voices/{id}"), ("PATCH", "/v1/{id}"), ("GET", "/{id}"),
])
IDS = st.sampled_from(["v_0123456789abcdef", "job_0123456789abcdef", "..", "%2e%2e", "x" * 300,
                       "index.html"]) | TEXT


@FUZZ
@given(route=ROUTES, ident=IDS, query=QUERY)
def test_routes_with_fuzzed_ids(fuzz: Fixture, tally: Tally, route: tuple[str, str],
                                ident: str, query: dict[str, str]) -> None:
    tally.hit()
    method, template = route
    path = template.replace("{id}", quote(ident.encode("utf-8", "surrogatepass"), safe="") or "x")
    url = URL(fuzz.server.url + path, encoded=True).with_query(query)
    status, content_type, body = fuzz.http.request(
        method, url, headers={"Authorization": f"Bearer {fuzz.mute_key}",
                              "xi-api-key": fuzz.mute_key})
    check_answer(status, content_type, body,
                 "elevenlabs" if template.startswith("/v1/text-to-speech") else "timbre")


# -- uploads and offers ----------------------------------------------------------------------------

FORM_NAMES = st.sampled_from(["name", "file", "transcript", "consent_owner_name",
                              "consent_statement", "consent_accepted", "consent_purpose",
                              "consent_expires_at"]) | HEADER_TEXT
AUDIO = st.binary(max_size=2000) | st.sampled_from([
    b"RIFF\x24\x00\x00\x00WAVEfmt ", b"ID3\x03\x00", b"OggS\x00\x02", b"fLaC\x00\x00\x00\x22",
    b"RIFF\xff\xff\xff\xffWAVEfmt \x10\x00\x00\x00\x01\x00\x01\x00"])


@FUZZ
@given(parts=st.lists(st.tuples(FORM_NAMES, TEXT | AUDIO, HEADER_TEXT | st.none()),
                      max_size=8),
       consent=st.booleans())
def test_voice_uploads(fuzz: Fixture, tally: Tally,
                       parts: list[tuple[str, str | bytes, str | None]], consent: bool) -> None:
    tally.hit()
    form = aiohttp.FormData()
    if consent:
        for name, value in (("name", "fuzz"), ("consent_owner_name", "F"),
                            ("consent_statement", "I agree."), ("consent_accepted", "true"),
                            ("consent_purpose", "fuzzing")):
            form.add_field(name, value)
    for name, value, filename in parts:
        if isinstance(value, str):
            value = value.encode("utf-8", "surrogatepass")
        form.add_field(name or "x", io.BytesIO(value), filename=filename or None,
                       content_type="application/octet-stream")
    status, content_type, body = fuzz.http.request(
        "POST", URL(fuzz.server.url + "/v1/voices"), data=form,
        headers={"Authorization": f"Bearer {fuzz.single_key}"})
    assert status != 202, "random bytes became a voice"
    check_answer(status, content_type, body)


SDP_LINES = st.sampled_from([
    "v=0", "o=- 0 0 IN IP4 127.0.0.1", "s=-", "t=0 0", "m=audio 9 UDP/TLS/RTP/SAVPF 111",
    "c=IN IP4 0.0.0.0", "a=recvonly", "a=mid:0", "a=rtpmap:111 opus/48000/2",
    "a=fingerprint:sha-256 00:11", "a=setup:actpass", "a=ice-ufrag:x", "a=ice-pwd:y",
    "m=application 9 UDP/DTLS/SCTP webrtc-datachannel", "a=sctp-port:5000",
    "a=group:BUNDLE 0 1", "m=video 9 RTP/AVP 96", "a=candidate:1 1 udp 1 1.2.3.4 9 typ host",
]) | HEADER_TEXT


@FUZZ
@given(lines=st.lists(SDP_LINES, max_size=14), kind=st.sampled_from(["offer", "answer"]) | TEXT,
       extra=objects({"voice": VOICES, "speed": NUMBERS}))
def test_webrtc_offers(fuzz: Fixture, tally: Tally, lines: list[str], kind: str,
                       extra: dict[str, Any]) -> None:
    tally.hit()
    body = {**extra, "sdp": "\r\n".join(lines) + "\r\n", "type": kind}
    status, content_type, answer = fuzz.http.request(
        "POST", URL(fuzz.server.url + "/v1/webrtc/offer"), data=dumps(body).encode(
            "utf-8", "surrogatepass"), headers={"Authorization": f"Bearer {fuzz.single_key}"})
    assert status != 200, "a fuzzed offer was answered"
    check_answer(status, content_type, answer)


# -- credentials -----------------------------------------------------------------------------------


@FUZZ
@given(where=st.sampled_from(["authorization", "xi-api-key", "token"]),
       scheme=st.sampled_from(["Bearer ", "bearer ", "Basic ", "", "Bearer  "]),
       value=HEADER_TEXT | st.sampled_from(["tk_", "tk_x", "a.b.c", "eyJ.eyJ.", "Bearer"]),
       path=st.sampled_from(["/v1/usage", "/v1/voices", "/v1/tokens",
                             "/v1/text-to-speech/piper:joe"]))
def test_credentials(fuzz: Fixture, tally: Tally, where: str, scheme: str, value: str,
                     path: str) -> None:
    tally.hit()
    url = URL(fuzz.server.url + path)
    headers = {}
    if where == "token":
        url = url.with_query({"token": value})
    else:
        headers[where] = (scheme + value) if where == "authorization" else value
    method = "POST" if path.startswith(("/v1/tokens", "/v1/text-to-speech")) else "GET"
    status, content_type, body = fuzz.http.request(method, url, headers=headers, data=b"{}")
    shape = "elevenlabs" if path.startswith("/v1/text-to-speech") else "timbre"
    assert status in (400, 401), (status, body[:200])  # no fuzzed value is a real credential
    check_answer(status, content_type, body, shape)


def test_json_bodies_are_any_json_value(fuzz: Fixture) -> None:
    """The control for ``check_answer``: a valid body reaches past parsing to the tier's limit
    (the mute tier has no characters), so the fuzzed requests above exercise whole handlers."""
    status, content_type, body = fuzz.http.request(
        "POST", URL(fuzz.server.url + "/v1/audio/speech"),
        json={"model": "tts-1", "voice": "alloy", "input": "Hello."},
        headers={"Authorization": f"Bearer {fuzz.mute_key}"})
    assert (status, content_type) == (402, "application/json")
    assert json.loads(body)["error"]["code"] == "quota_exceeded"
