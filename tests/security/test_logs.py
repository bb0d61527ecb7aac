"""No secret ever reaches a log: API keys, JWTs and the JWT secret are absent from every record
(messages and tracebacks, every logger, every level) while the server authenticates good and bad
credentials, mints tokens, takes ``?token=`` on REST and WebSockets, and refuses requests it cannot
even parse; the admin CLI shows a new key once, on stdout, and nowhere else; the access log
writes query credentials as ``[redacted]``."""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import AsyncIterator

import aiohttp
import jwt
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from realtime.cli import main
from realtime.guards import (
    RedactingAccessLogger,
    RedactingFilter,
    install_log_redaction,
    redact_query,
    redact_secrets,
)
from tests.security.conftest import JWT_SECRET, new_tenant
from tests.server import RunningServer


def assert_absent(text: str, *secrets: str) -> None:
    for secret in secrets:
        assert secret not in text, f"a secret ({secret[:6]}...) is in the logs"
        # nor any long piece of it (a truncated quote of a request still leaks most of a key)
        assert secret[-24:] not in text, f"part of a secret ({secret[:6]}...) is in the logs"


@pytest.fixture
def logs(caplog: pytest.LogCaptureFixture) -> pytest.LogCaptureFixture:
    """Every record of every logger, the server's thread included."""
    caplog.set_level(logging.DEBUG)
    return caplog


async def test_authentication_logs_no_credential(server: RunningServer,
                                                 logs: pytest.LogCaptureFixture) -> None:
    _, key = new_tenant(server, "single")
    wrong_key = "tk_" + "W" * 43
    token = jwt.encode({"tenant": "demo", "aud": "timbre", "exp": int(time.time()) + 300},
                       JWT_SECRET, algorithm="HS256")
    expired = jwt.encode({"tenant": "demo", "aud": "timbre", "exp": int(time.time()) - 300},
                         JWT_SECRET, algorithm="HS256")
    async with aiohttp.ClientSession() as http:
        for credential in (key, wrong_key, token, expired, "garbage"):
            async with http.get(f"{server.url}/v1/usage",
                                headers={"Authorization": f"Bearer {credential}"}) as resp:
                await resp.read()
            async with http.get(f"{server.url}/v1/usage", params={"token": credential}) as resp:
                await resp.read()
            try:
                async with http.ws_connect(f"{server.ws_url}/v1/stream",
                                           params={"token": credential}) as ws:
                    await ws.close()
            except aiohttp.WSServerHandshakeError:
                pass
            async with http.ws_connect(
                    f"{server.ws_url}/v1/text-to-speech/piper:joe/stream-input") as ws:
                await ws.send_str(json.dumps({"text": " ", "xi_api_key": credential}))
                await ws.send_str(json.dumps({"text": ""}))  # end of input: the socket ends
                await ws.receive(timeout=10)
        # requests aiohttp cannot parse, quoted by its own logger: a key in an oversized query,
        # an oversized header, and a broken request line
        async with http.get(f"{server.url}/v1/usage?token={key}&pad={'x' * 9000}") as resp:
            assert resp.status == 400
        async with http.get(f"{server.url}/v1/usage",
                            headers={"Authorization": f"Bearer {key}{'x' * 9000}"}) as resp:
            assert resp.status == 400
    await _raw(server, f"GET /v1/usage?token={key} HTTP/1.1\r\nHost: x\r\nBad Header\r\n\r\n")
    await _raw(server, f"GET /v1/stream?token={token}\x00 HTTP/1.1\r\n\r\n")
    quoted = [r for r in logs.records if r.name.startswith("aiohttp")]
    assert quoted, "aiohttp logged none of the broken requests: the test proves nothing"
    assert_absent(logs.text, key, wrong_key, token, expired, server.key, JWT_SECRET)


async def _raw(server: RunningServer, request: str) -> None:
    """Send bytes no HTTP client would, and read the answer."""
    host, port = server.url.removeprefix("http://").split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    writer.write(request.encode("latin-1"))
    await writer.drain()
    try:
        await asyncio.wait_for(reader.read(1024), 5)  # its 400, if it answers at all
    except TimeoutError:
        pass
    writer.close()


async def test_minting_tokens_logs_none(server: RunningServer,
                                        logs: pytest.LogCaptureFixture) -> None:
    async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {server.key}"}) as http:
        async with http.post(f"{server.url}/v1/tokens", json={"ttl_s": 60}) as resp:
            token = (await resp.json())["token"]
        async with http.post(f"{server.url}/v1/tokens", json={"scopes": ["nope"]}) as resp:
            assert resp.status == 400
        async with http.get(f"{server.url}/v1/usage", params={"token": token}) as resp:
            assert resp.status == 200
    assert_absent(logs.text, token, server.key, JWT_SECRET)


def test_admin_cli_shows_a_new_key_once_on_stdout_only(
        server: RunningServer, capsys: pytest.CaptureFixture[str],
        logs: pytest.LogCaptureFixture) -> None:
    capsys.readouterr()
    status = main(["admin", "create-key", "--tenant", "demo", "--name", "ci",
                   "--mongo-url", server.mongo_url])
    out, err = capsys.readouterr()
    assert status == 0
    key = out.splitlines()[0]
    assert key.startswith("tk_") and out.count(key) == 1
    assert_absent(err, key)
    assert_absent(logs.text, key)
    assert "key_" in err  # what the operator needs later (to revoke it) is the key's id


# -- the access log and the filter -----------------------------------------------------------------


@pytest.mark.parametrize(("path", "shown"), [
    ("/v1/stream?token=tk_secret&voice=joe", "/v1/stream?token=[redacted]&voice=joe"),
    ("/x?voice=a&xi_api_key=K&authorization=Bearer%20K2",
     "/x?voice=a&xi_api_key=[redacted]&authorization=[redacted]"),
    ("/x?%74oken=K&TOKEN=K", "/x?%74oken=[redacted]&TOKEN=[redacted]"),
    ("/x?token", "/x?token"), ("/plain", "/plain"), ("/x?a=b=c&key=", "/x?a=b=c&key=[redacted]"),
])
def test_query_credentials_are_redacted(path: str, shown: str) -> None:
    assert redact_query(path) == shown


def test_credentials_in_free_text_are_redacted() -> None:
    key = "tk_" + "k" * 43
    token = jwt.encode({"a": 1}, "s" * 32, algorithm="HS256")
    text = (f"Got more than 8190 bytes: b'/v1/usage?token={key}&x=1' Authorization: Bearer "
            f"{token} xi-api-key={key[:20]} raw {token}")
    redacted = redact_secrets(text)
    assert_absent(redacted, key, token)
    assert key[:20] not in redacted
    assert "Got more than 8190 bytes" in redacted and "x=1" in redacted


@pytest.fixture
async def logged_app() -> AsyncIterator[TestClient[web.Request, web.Application]]:
    """A real server with the access log ``timbre serve`` writes under ``[server] access_log``."""
    async def hello(request: web.Request) -> web.Response:
        return web.json_response({"ok": True})

    app = web.Application()
    app.router.add_get("/v1/hello", hello)
    client = TestClient(TestServer(app, access_log=logging.getLogger("aiohttp.access"),
                                   access_log_class=RedactingAccessLogger))
    await client.start_server()
    yield client
    await client.close()


async def test_the_access_log_redacts_query_tokens(
        logged_app: TestClient[web.Request, web.Application],
        logs: pytest.LogCaptureFixture) -> None:
    key = "tk_" + "a" * 43
    async with logged_app.get("/v1/hello", params={"token": key, "voice": "joe"},
                              headers={"Authorization": f"Bearer {key}"}) as resp:
        assert resp.status == 200
    lines = [r.getMessage() for r in logs.records if r.name == "aiohttp.access"]
    assert len(lines) == 1
    assert "/v1/hello?token=[redacted]&voice=joe" in lines[0] and " 200 " in lines[0]
    assert_absent(logs.text, key)


def test_log_redaction_is_installed_once() -> None:
    install_log_redaction()
    install_log_redaction()
    filters = logging.getLogger("aiohttp.server").filters
    assert sum(isinstance(f, RedactingFilter) for f in filters) == 1
