"""Origin checks on browser WebSockets: a page of another site cannot open a stream, the server's
own page and allow-listed origins can, and clients that send no ``Origin`` (SDKs, Twilio, the load
test) are unaffected. Checked as a pure function and over real handshakes on every WebSocket."""

from __future__ import annotations

import aiohttp
import pytest

from realtime.guards import origin_allowed
from tests.security.conftest import ALLOWED_ORIGIN
from tests.server import RunningServer

ALLOWED = ("https://app.example.com", "http://localhost:3000")


@pytest.mark.parametrize(("origin", "host", "ok"), [
    (None, "timbre.example.com", True),  # not a browser
    ("https://timbre.example.com", "timbre.example.com", True),  # the server's own page
    ("https://timbre.example.com", "timbre.example.com:443", True),
    ("http://127.0.0.1:8080", "127.0.0.1:8080", True),
    ("HTTP://LOCALHOST:3000", "timbre.example.com", True),  # allow-listed, any case
    ("https://app.example.com:443", "timbre.example.com", True),  # default port spelled out
    ("https://app.example.com/", "timbre.example.com", True),
    ("https://evil.example.com", "timbre.example.com", False),
    ("https://app.example.com.evil.net", "timbre.example.com", False),  # suffix trick
    ("https://evil.net#app.example.com", "timbre.example.com", False),
    ("https://app.example.com@evil.net", "timbre.example.com", False),  # userinfo trick
    ("http://app.example.com", "timbre.example.com", False),  # wrong scheme
    ("https://app.example.com:8443", "timbre.example.com", False),  # wrong port
    ("http://127.0.0.1:9999", "127.0.0.1:8080", False),  # same host, another port
    ("null", "timbre.example.com", False),  # sandboxed iframe, file: page
    ("file://", "timbre.example.com", False),
    ("", "timbre.example.com", False),
    ("https://[::1", "timbre.example.com", False),  # not parseable
    ("https://timbre.example.com", None, False),  # no Host: cannot be same-origin
])
def test_origin_policy(origin: str | None, host: str | None, ok: bool) -> None:
    assert origin_allowed(origin, host, ALLOWED) is ok


def test_a_star_allows_every_origin_and_an_empty_list_only_the_own() -> None:
    assert origin_allowed("https://anyone.example", "timbre.example.com", ("*",))
    assert not origin_allowed("https://anyone.example", "timbre.example.com", ())
    assert origin_allowed("https://timbre.example.com", "timbre.example.com", ())


WEBSOCKETS = ["/v1/stream", "/v1/text-to-speech/piper:joe/stream-input",
              "/v1/text-to-speech/piper:joe/multi-stream-input", "/v1/telephony/twilio"]


async def _handshake(server: RunningServer, path: str, origin: str | None) -> int:
    """The HTTP status of a WebSocket handshake with the demo key and ``origin`` (101: upgraded)."""
    headers = {"Authorization": f"Bearer {server.key}", "xi-api-key": server.key}
    if origin is not None:
        headers["Origin"] = origin
    async with aiohttp.ClientSession() as http:
        try:
            async with http.ws_connect(server.ws_url + path, headers=headers) as ws:
                await ws.close()
                return 101
        except aiohttp.WSServerHandshakeError as err:
            return err.status


@pytest.mark.parametrize("path", WEBSOCKETS)
async def test_a_foreign_page_cannot_open_a_websocket(server: RunningServer, path: str) -> None:
    assert await _handshake(server, path, "https://evil.example.com") == 403
    assert await _handshake(server, path, "null") == 403


@pytest.mark.parametrize("path", WEBSOCKETS)
async def test_own_page_allow_list_and_non_browsers_can(server: RunningServer, path: str) -> None:
    assert await _handshake(server, path, server.url) == 101  # the demo page's own origin
    assert await _handshake(server, path, ALLOWED_ORIGIN) == 101
    assert await _handshake(server, path, None) == 101


async def test_the_refusal_is_a_clear_json_error(server: RunningServer) -> None:
    async with aiohttp.ClientSession() as http, http.get(
            server.url + "/v1/stream", headers={
                "Origin": "https://evil.example.com", "Connection": "Upgrade",
                "Upgrade": "websocket", "Sec-WebSocket-Version": "13",
                "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ==",
                "Authorization": f"Bearer {server.key}"}) as resp:
        body = await resp.json()
    assert resp.status == 403
    assert body["error"]["code"] == "origin_not_allowed"
    assert "allowed_origins" in body["error"]["message"]


async def test_plain_http_requests_are_not_affected(server: RunningServer) -> None:
    """The check is for WebSocket handshakes; REST calls from another origin are governed by
    their bearer credential (browsers enforce CORS on reading the answer)."""
    async with aiohttp.ClientSession() as http, http.get(
            server.url + "/v1/usage", headers={"Origin": "https://evil.example.com",
                                               "Authorization": f"Bearer {server.key}"}) as resp:
        assert resp.status == 200
