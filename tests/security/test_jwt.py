"""JWTs an attacker could bring, refused end to end on the real server (HS256 with a known secret,
so the tests can sign tokens that are right in every respect but one), on a REST call, a native
WebSocket's ``?token=`` and an ElevenLabs first message; and the RS256 deployment's confusion
attack against the authenticator itself.

What each test forges: ``alg: none``; algorithm confusion (another HMAC size with the right
secret, RS256/ES256 with the attacker's own key embedded as ``jwk``, and, on an RS256 server, HS256
keyed with the public key); expiry; audience; issuer-less claims; and tenants (unknown, injected
as a query operator, and another tenant's resources).
"""

from __future__ import annotations

import base64
import hmac
import json
import time
from pathlib import Path
from typing import Any

import aiohttp
import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from jwt.algorithms import RSAAlgorithm

from realtime.appkeys import STORES
from session.authn import AuthConfig, Authenticator, load_jwt_keys
from session.errors import Unauthorized
from session.ids import TenantId
from tests.security.conftest import JWT_SECRET, new_tenant, on_server
from tests.server import RunningServer


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def forge(header: dict[str, Any], claims: dict[str, Any], key: bytes | None,
          digest: str = "sha256") -> str:
    """A JWT put together by hand (pyjwt refuses to sign some of these): HMAC with ``key``, or
    no signature at all."""
    signing_input = f"{b64(json.dumps(header).encode())}.{b64(json.dumps(claims).encode())}"
    signature = b"" if key is None else hmac.new(key, signing_input.encode(), digest).digest()
    return f"{signing_input}.{b64(signature)}"


def claims(tenant: str, **extra: Any) -> dict[str, Any]:
    return {"tenant": tenant, "aud": "timbre", "exp": int(time.time()) + 300, "scopes": ["tts"],
            **extra}


def good(tenant: str, **extra: Any) -> str:
    return jwt.encode(claims(tenant, **extra), JWT_SECRET, algorithm="HS256")


async def rest_status(server: RunningServer, token: str) -> tuple[int, dict[str, Any]]:
    async with aiohttp.ClientSession() as http, http.get(
            f"{server.url}/v1/usage", headers={"Authorization": f"Bearer {token}"}) as resp:
        return resp.status, await resp.json()


async def ws_status(server: RunningServer, token: str) -> int:
    async with aiohttp.ClientSession() as http:
        try:
            async with http.ws_connect(f"{server.ws_url}/v1/stream?token={token}") as ws:
                await ws.close()
                return 101
        except aiohttp.WSServerHandshakeError as err:
            return err.status


async def elevenlabs_error(server: RunningServer, token: str) -> str | None:
    """The error an ElevenLabs socket answers a first message carrying ``token`` with."""
    async with aiohttp.ClientSession() as http, http.ws_connect(
            f"{server.ws_url}/v1/text-to-speech/piper:joe/stream-input") as ws:
        await ws.send_str(json.dumps({"text": " ", "xi_api_key": token}))
        msg = await ws.receive(timeout=10)
        if msg.type != aiohttp.WSMsgType.TEXT:
            return None
        return str(json.loads(msg.data)["error"])


async def assert_refused(server: RunningServer, token: str, why: str) -> None:
    status, body = await rest_status(server, token)
    assert (status, body["error"]["code"]) == (401, "unauthorized")
    assert why in body["error"]["message"]
    assert await ws_status(server, token) == 401
    assert await elevenlabs_error(server, token) == "invalid_api_key"


@pytest.fixture(scope="module")
def tenant(server: RunningServer) -> TenantId:
    return new_tenant(server, "single")[0]


async def test_a_correct_token_is_accepted(server: RunningServer, tenant: TenantId) -> None:
    """The control: the forgeries below differ from this token in one respect each."""
    status, body = await rest_status(server, good(tenant))
    assert (status, body["tenant"]) == (200, tenant)
    assert await ws_status(server, good(tenant)) == 101


@pytest.mark.parametrize("alg", ["none", "None", "NONE", "nOnE"])
async def test_alg_none_is_refused(server: RunningServer, tenant: TenantId, alg: str) -> None:
    await assert_refused(server, forge({"alg": alg, "typ": "JWT"}, claims(tenant), None),
                         "algorithm not accepted")


@pytest.mark.parametrize(("alg", "digest"), [("HS384", "sha384"), ("HS512", "sha512")])
async def test_only_the_configured_algorithm_is_accepted(
        server: RunningServer, tenant: TenantId, alg: str, digest: str) -> None:
    """Even with the right secret, a token in another algorithm is refused: the server pins one."""
    token = forge({"alg": alg, "typ": "JWT"}, claims(tenant), JWT_SECRET.encode(), digest)
    await assert_refused(server, token, "accepts HS256 only")


async def test_attacker_keys_embedded_in_the_header_are_ignored(
        server: RunningServer, tenant: TenantId) -> None:
    """``jwk`` / ``jku`` / ``kid`` header injection: a token signed with the attacker's own key
    that carries (or points to) that key is refused; no header ever chooses the key."""
    rsa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    jwk = json.loads(RSAAlgorithm.to_jwk(rsa_key.public_key()))
    token = jwt.encode(claims(tenant), rsa_key, algorithm="RS256",
                       headers={"jwk": jwk, "jku": "https://evil.example/jwks.json",
                                "kid": "../../../../dev/null"})
    await assert_refused(server, token, "accepts HS256 only")
    ec_key = ec.generate_private_key(ec.SECP256R1())
    await assert_refused(server, jwt.encode(claims(tenant), ec_key, algorithm="ES256"),
                         "accepts HS256 only")
    await assert_refused(server, forge({"alg": "HS256", "kid": "/dev/null"}, claims(tenant), b""),
                         "signature invalid")


async def test_expired_tokens_are_refused(server: RunningServer, tenant: TenantId) -> None:
    await assert_refused(server, good(tenant, exp=int(time.time()) - 60), "expired")


async def test_tokens_for_another_audience_are_refused(
        server: RunningServer, tenant: TenantId) -> None:
    await assert_refused(server, good(tenant, aud="someone-else"), "audience")
    await assert_refused(server, good(tenant, aud=["someone-else", "other"]), "audience")


async def test_tokens_missing_a_required_claim_are_refused(
        server: RunningServer, tenant: TenantId) -> None:
    for missing in ("exp", "aud", "tenant"):
        body = {k: v for k, v in claims(tenant).items() if k != missing}
        token = jwt.encode(body, JWT_SECRET, algorithm="HS256")
        await assert_refused(server, token, f"no '{missing}' claim")


async def test_tokens_with_a_wrong_tenant_are_refused(server: RunningServer) -> None:
    await assert_refused(server, good("t_doesnotexist"), "unknown tenant")
    injected = jwt.encode(claims("x") | {"tenant": {"$ne": ""}}, JWT_SECRET, algorithm="HS256")
    await assert_refused(server, injected, "'tenant' must be a non-empty string")


async def test_a_token_reaches_only_its_own_tenants_resources(server: RunningServer) -> None:
    """A valid token of tenant A asking for tenant B's voice profile gets the same 404 as for an
    id that does not exist: tenants cannot even learn what the others have."""
    tenant_a, _ = new_tenant(server, "single")
    tenant_b, _ = new_tenant(server, "single")
    stores = server.app[STORES]

    async def profile_of_b() -> str:
        consent = await stores.consents.create(
            tenant_b, owner_name="B", statement="I agree.", accepted=True, purpose="tests",
            expires_at=None, uploaded_by="test")
        profile = await stores.voices.create(tenant_b, "b-voice", engine="piper",
                                             consent_id=consent.consent_id)
        return str(profile.voice_id)

    voice_b = on_server(server, profile_of_b())
    token_a = jwt.encode(claims(tenant_a, scopes=["tts", "voices:read", "voices:write"]),
                         JWT_SECRET, algorithm="HS256")
    async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {token_a}"}) as http:
        for method, path in (("GET", f"/v1/voices/{voice_b}"),
                             ("DELETE", f"/v1/voices/{voice_b}"),
                             ("POST", f"/v1/voices/{voice_b}/revoke")):
            async with http.request(method, server.url + path) as resp:
                assert resp.status == 404, (method, path)
        async with http.ws_connect(f"{server.ws_url}/v1/stream?voice={voice_b}") as ws:
            reply = json.loads((await ws.receive(timeout=10)).data)
            assert reply["code"] == "unknown_voice"


# -- an RS256 deployment ---------------------------------------------------------------------------


async def test_rs256_server_refuses_hs256_keyed_with_its_public_key(
        server: RunningServer, tenant: TenantId) -> None:
    """The classic confusion: the public key is public, so an attacker HMACs with it."""
    private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    public_pem = private.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    public_der = private.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    config = AuthConfig(jwt_public_key=public_pem.decode())
    stores = server.app[STORES]
    auth = Authenticator(stores.api_keys, stores.tenants, load_jwt_keys(config, Path(".")), config)

    async def verdict(token: str) -> str:
        try:
            return (await auth.authenticate(token)).tenant
        except Unauthorized as err:
            return err.message

    assert on_server(server, verdict(jwt.encode(claims(tenant), private,
                                                algorithm="RS256"))) == tenant  # the control
    for key in (public_pem, public_pem.strip(), public_der):
        forged = forge({"alg": "HS256", "typ": "JWT"}, claims(tenant), key)
        assert "accepts RS256 only" in on_server(server, verdict(forged))
    other = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    foreign = jwt.encode(claims(tenant), other, algorithm="RS256")
    assert on_server(server, verdict(foreign)) == "token signature invalid"
