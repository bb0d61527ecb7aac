"""``POST /v1/tokens`` behind the real auth middleware, on real stores: an API key mints a
short-lived token a browser then authenticates with (``?token=``)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient

from realtime.app import auth_middleware
from realtime.appkeys import AUTHENTICATOR, METRICS, PRINCIPAL
from realtime.metrics import Metrics
from realtime.rest_tokens import TokenRequest, create_token, parse_token_request
from session.authn import AuthConfig, Authenticator, load_jwt_keys
from session.db import Stores
from session.errors import BadRequest

AnyClient = TestClient[Any, Any]


async def whoami(request: web.Request) -> web.Response:
    principal = request[PRINCIPAL]
    return web.json_response({"tenant": principal.tenant, "via": principal.via,
                              "scopes": sorted(principal.scopes)})


@pytest.fixture
async def client(aiohttp_client: Any, stores: Stores) -> AnyClient:
    config = AuthConfig(jwt_secret="s" * 40, token_ttl_s=300, max_token_ttl_s=900)
    app = web.Application(middlewares=[auth_middleware])
    app[METRICS] = Metrics()
    app[AUTHENTICATOR] = Authenticator(stores.api_keys, stores.tenants,
                                       load_jwt_keys(config, Path(".")), config)
    app.router.add_post("/v1/tokens", create_token)
    app.router.add_get("/v1/whoami", whoami)
    result: AnyClient = await aiohttp_client(app)
    return result


@pytest.fixture
async def key(stores: Stores) -> tuple[str, str]:
    """(API key limited to tts + voices:read, its tenant id)."""
    tenant = await stores.tenants.create("acme", "pro")
    plaintext, _ = await stores.api_keys.create(tenant.tenant_id, scopes=["tts", "voices:read"])
    return plaintext, tenant.tenant_id


def bearer(credential: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {credential}"}


async def test_minted_token_opens_the_api_with_narrowed_scopes(
        client: AnyClient, key: tuple[str, str]) -> None:
    plaintext, tenant = key
    response = await client.post("/v1/tokens", headers=bearer(plaintext))
    assert response.status == 200 and response.headers["Cache-Control"] == "no-store"
    body = await response.json()
    assert set(body) == {"token", "expires_at", "tenant"} and body["tenant"] == tenant
    assert abs(body["expires_at"] - (time.time() + 300)) < 5
    me = await (await client.get("/v1/whoami", params={"token": body["token"]})).json()
    assert me == {"tenant": tenant, "via": "jwt", "scopes": ["tts", "voices:read"]}

    response = await client.post("/v1/tokens", headers=bearer(plaintext),
                                 json={"ttl_s": 60, "scopes": ["tts"]})
    body = await response.json()
    assert abs(body["expires_at"] - (time.time() + 60)) < 5
    me = await (await client.get("/v1/whoami", headers=bearer(body["token"]))).json()
    assert me["scopes"] == ["tts"]


async def test_token_endpoint_needs_a_credential(client: AnyClient) -> None:
    response = await client.post("/v1/tokens")
    assert response.status == 401
    assert (await response.json())["error"]["code"] == "unauthorized"


@pytest.mark.parametrize(("body", "status", "words"), [
    (b"{not json", 400, "not valid JSON"),
    (b"[1, 2]", 400, "JSON object"),
    (b'{"ttl": 60}', 400, "unknown fields ['ttl']"),
    (b'{"ttl_s": "60"}', 400, "integer"),
    (b'{"ttl_s": 901}', 400, "between 1 and 900"),
    (b'{"ttl_s": 0}', 400, "between 1 and 900"),
    (b'{"scopes": "tts"}', 400, "list of scope names"),
    (b'{"scopes": ["tts", "root"]}', 400, "unknown scopes ['root']"),
    (b'{"scopes": []}', 400, "at least one scope"),
    (b'{"scopes": ["voices:write"]}', 403, "voices:write"),
])
async def test_bad_requests_are_refused_with_a_code_and_message(
        client: AnyClient, key: tuple[str, str], body: bytes, status: int, words: str) -> None:
    response = await client.post("/v1/tokens", headers=bearer(key[0]), data=body)
    assert response.status == status
    error = (await response.json())["error"]
    assert error["code"] == ("forbidden" if status == 403 else "bad_request")
    assert words in error["message"]


def test_request_body_parsing() -> None:
    assert parse_token_request(b"") == TokenRequest()
    assert parse_token_request(b"  \n") == TokenRequest()
    assert parse_token_request(b'{"ttl_s": 30, "scopes": ["tts"]}') == TokenRequest(30, ("tts",))
    assert parse_token_request(b'{"ttl_s": null}') == TokenRequest()
    for bad in (b'{"ttl_s": true}', b'{"ttl_s": 1.5}', b'{"scopes": [1]}', b"\xff",
                b'{"scopes": ["tts"], "x": ' + b"1" * 5000 + b"}"):
        with pytest.raises(BadRequest):
            parse_token_request(bad)
