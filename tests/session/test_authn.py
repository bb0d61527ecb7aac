"""Authentication against the real stores (SecantusDB through motor): API keys, JWTs, minting."""

from __future__ import annotations

import base64
import hmac
import json
import os
import stat
import statistics
import time
from pathlib import Path
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from session.authn import (
    ALL_SCOPES,
    AuthConfig,
    Authenticator,
    Forbidden,
    JwtKeys,
    MintingUnavailable,
    Principal,
    Scope,
    TtlCache,
    ensure_jwt_secret,
    load_jwt_keys,
    parse_scopes,
)
from session.db import Stores
from session.errors import BadRequest, Unauthorized
from session.ids import KeyId, TenantId
from session.store._common import Database
from session.store.api_keys import ApiKey, ApiKeyStore
from session.store.tenants import TenantStore

SECRET = "s" * 40
HS256 = load_jwt_keys(AuthConfig(jwt_secret=SECRET), Path("/nonexistent"))


class Clock:
    """Monotonic time the test moves by hand (drives the caches)."""

    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


class CountingKeys(ApiKeyStore):
    """The real key store, counting lookups."""

    finds = 0

    async def find(self, plaintext: str) -> ApiKey | None:
        self.finds += 1
        return await super().find(plaintext)


class CountingTenants(TenantStore):
    gets = 0

    async def get(self, tenant_id: TenantId) -> Any:
        self.gets += 1
        return await super().get(tenant_id)


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def keys(stores: Stores, mongo_db: Database) -> CountingKeys:
    return CountingKeys(mongo_db)  # `stores` has created the indexes


@pytest.fixture
def tenants(stores: Stores, mongo_db: Database) -> CountingTenants:
    return CountingTenants(mongo_db)


@pytest.fixture(scope="module")
def rsa_pair() -> tuple[str, str]:
    """(private PEM, public PEM)."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    private = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption()).decode()
    public = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo).decode()
    return private, public


def make(keys: ApiKeyStore, tenants: TenantStore, clock: Clock, jwt_keys: JwtKeys = HS256,
         **config: Any) -> Authenticator:
    cfg = AuthConfig(jwt_secret=SECRET, **config) if jwt_keys is HS256 else AuthConfig(**config)
    return Authenticator(keys, tenants, jwt_keys, cfg, clock=clock)


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def forge(header: dict[str, Any], claims: dict[str, Any], key: bytes | None) -> str:
    """A JWT put together by hand (pyjwt refuses to sign some of these), HMAC-SHA256 with ``key``
    or unsigned."""
    signing_input = f"{b64(json.dumps(header).encode())}.{b64(json.dumps(claims).encode())}"
    signature = b"" if key is None else hmac.new(key, signing_input.encode(), "sha256").digest()
    return f"{signing_input}.{b64(signature)}"


def claims_for(tenant: str, **extra: Any) -> dict[str, Any]:
    return {"tenant": tenant, "aud": "timbre", "exp": int(time.time()) + 300, **extra}


async def refusal(auth: Authenticator, credential: str | None) -> str:
    with pytest.raises(Unauthorized) as info:
        await auth.authenticate(credential)
    assert (info.value.http_status, info.value.close_code) == (401, 4401)
    return info.value.message


# --- API keys ----------------------------------------------------------------------------------


async def test_api_key_becomes_its_tenants_principal(
        keys: CountingKeys, tenants: CountingTenants, clock: Clock) -> None:
    tenant = await tenants.create("acme", "pro")
    plaintext, record = await keys.create(tenant.tenant_id, name="ci")
    auth = make(keys, tenants, clock)
    principal = await auth.authenticate(plaintext)
    assert principal == Principal(tenant.tenant_id, record.key_id, ALL_SCOPES, via="api_key")

    narrow_key, _ = await keys.create(tenant.tenant_id, scopes=["voices:read"])
    assert (await auth.authenticate(narrow_key)).scopes == {Scope.VOICES_READ}


async def test_unknown_missing_and_malformed_credentials_are_refused(
        keys: CountingKeys, tenants: CountingTenants, clock: Clock) -> None:
    auth = make(keys, tenants, clock)
    assert "missing credential" in await refusal(auth, None)
    assert "missing credential" in await refusal(auth, "")
    assert "invalid API key" in await refusal(auth, "tk_" + "x" * 43)
    assert "neither an API key" in await refusal(auth, "hunter2")
    assert "too long" in await refusal(auth, "tk_" + "x" * 9000)


async def test_cache_hit_costs_no_database_round_trip(
        keys: CountingKeys, tenants: CountingTenants, clock: Clock) -> None:
    tenant = await tenants.create("acme", "pro")
    plaintext, _ = await keys.create(tenant.tenant_id)
    auth = make(keys, tenants, clock, key_cache_ttl_s=5.0)
    first = await auth.authenticate(plaintext)
    for _ in range(10):
        assert await auth.authenticate(plaintext) == first
    assert keys.finds == 1
    clock.t += 5.0  # the entry expires: the next connect asks the store again
    await auth.authenticate(plaintext)
    assert keys.finds == 2


async def test_key_revoked_elsewhere_is_refused_once_the_cache_ttl_passes(
        keys: CountingKeys, tenants: CountingTenants, clock: Clock) -> None:
    tenant = await tenants.create("acme", "pro")
    plaintext, record = await keys.create(tenant.tenant_id)
    auth = make(keys, tenants, clock, key_cache_ttl_s=5.0)
    await auth.authenticate(plaintext)
    await keys.revoke(record.key_id)  # another node, or the admin CLI
    clock.t += 4.9
    await auth.authenticate(plaintext)  # still cached: the documented window
    clock.t += 0.1
    assert "unknown or revoked" in await refusal(auth, plaintext)


async def test_key_revoked_through_the_authenticator_is_refused_at_once(
        keys: CountingKeys, tenants: CountingTenants, clock: Clock) -> None:
    tenant = await tenants.create("acme", "pro")
    other = await tenants.create("other", "pro")
    plaintext, record = await keys.create(tenant.tenant_id)
    auth = make(keys, tenants, clock, key_cache_ttl_s=60.0)
    await auth.authenticate(plaintext)
    assert await auth.revoke_key(record.key_id, tenant=other.tenant_id) is None
    await auth.authenticate(plaintext)  # another tenant cannot revoke it
    revoked = await auth.revoke_key(record.key_id, tenant=tenant.tenant_id)
    assert revoked is not None and not revoked.active
    await refusal(auth, plaintext)
    assert await auth.revoke_key(KeyId("key_nope")) is None


def test_cache_is_bounded_and_evicts_the_least_recently_used() -> None:
    clock = Clock()
    cache: TtlCache[str, int] = TtlCache(ttl_s=5.0, max_entries=2, clock=clock)
    cache.put("a", 1)
    cache.put("b", 2)
    assert cache.get("a") == 1  # a is now the most recently used
    cache.put("c", 3)
    assert (cache.get("a"), cache.get("b"), cache.get("c"), len(cache)) == (1, None, 3, 2)
    assert cache.discard_if(lambda v: v == 3) == 1 and cache.get("c") is None
    clock.t += 5.0
    assert cache.get("a") is None and len(cache) == 0


async def test_cached_connect_costs_well_under_the_stream_open_budget(
        keys: CountingKeys, tenants: CountingTenants, clock: Clock) -> None:
    """The issue's budget is 5 ms extra per stream open; a cached credential costs microseconds."""
    tenant = await tenants.create("acme", "pro")
    plaintext, _ = await keys.create(tenant.tenant_id)
    auth = make(keys, tenants, clock)
    token, _ = auth.mint_token(await auth.authenticate(plaintext))
    await auth.authenticate(token)
    for credential in (plaintext, token):
        samples = []
        for _ in range(200):
            start = time.perf_counter()
            await auth.authenticate(credential)
            samples.append(time.perf_counter() - start)
        assert statistics.median(samples) < 0.005
    assert (keys.finds, tenants.gets) == (1, 1)


# --- JWTs: acceptance --------------------------------------------------------------------------


async def test_minted_token_round_trip_names_tenant_scopes_and_key(
        keys: CountingKeys, tenants: CountingTenants, clock: Clock) -> None:
    tenant = await tenants.create("acme", "pro")
    plaintext, record = await keys.create(tenant.tenant_id)
    auth = make(keys, tenants, clock)
    caller = await auth.authenticate(plaintext)
    before = int(time.time())
    token, expires_at = auth.mint_token(caller, ttl_s=120, scopes=frozenset({Scope.TTS}))
    assert before + 120 <= expires_at <= int(time.time()) + 120
    principal = await auth.authenticate(token)
    assert principal == Principal(tenant.tenant_id, record.key_id, frozenset({Scope.TTS}),
                                  via="jwt", expires_at=expires_at)
    principal.require(Scope.TTS)
    with pytest.raises(Forbidden) as info:
        principal.require(Scope.VOICES_WRITE)
    assert (info.value.http_status, info.value.close_code) == (403, 4403)
    default_token, _ = auth.mint_token(caller)
    assert (await auth.authenticate(default_token)).scopes == ALL_SCOPES


async def test_tenant_lookup_is_cached_for_tokens(
        keys: CountingKeys, tenants: CountingTenants, clock: Clock) -> None:
    tenant = await tenants.create("acme", "pro")
    auth = make(keys, tenants, clock, key_cache_ttl_s=5.0)
    token = jwt.encode(claims_for(tenant.tenant_id), SECRET, algorithm="HS256")
    for _ in range(5):
        await auth.authenticate(token)
    assert tenants.gets == 1
    clock.t += 5.0
    await auth.authenticate(token)
    assert tenants.gets == 2


async def test_token_scopes_claim_list_string_or_absent(
        keys: CountingKeys, tenants: CountingTenants, clock: Clock) -> None:
    tenant = await tenants.create("acme", "pro")
    auth = make(keys, tenants, clock)

    async def scopes_of(**extra: Any) -> frozenset[Scope]:
        token = jwt.encode(claims_for(tenant.tenant_id, **extra), SECRET, algorithm="HS256")
        return (await auth.authenticate(token)).scopes

    assert await scopes_of() == ALL_SCOPES
    assert await scopes_of(scopes=["tts", "voices:read"]) == {Scope.TTS, Scope.VOICES_READ}
    assert await scopes_of(scopes="tts voices:write") == {Scope.TTS, Scope.VOICES_WRITE}
    principal = await auth.authenticate(
        jwt.encode(claims_for(tenant.tenant_id, sub="user-7"), SECRET, algorithm="HS256"))
    assert (principal.key_id, principal.via) == ("user-7", "jwt")


async def test_rs256_tokens_signed_by_the_private_key_are_accepted(
        keys: CountingKeys, tenants: CountingTenants, clock: Clock,
        rsa_pair: tuple[str, str]) -> None:
    private, public = rsa_pair
    tenant = await tenants.create("acme", "pro")
    pair = load_jwt_keys(AuthConfig(jwt_private_key=private, jwt_public_key=public), Path("."))
    auth = make(keys, tenants, clock, pair)
    assert auth.algorithm == "RS256" and auth.can_mint
    caller = Principal(tenant.tenant_id, "key_x")
    token, _ = auth.mint_token(caller)
    assert jwt.get_unverified_header(token)["alg"] == "RS256"
    assert (await auth.authenticate(token)).tenant == tenant.tenant_id
    external = jwt.encode(claims_for(tenant.tenant_id), private, algorithm="RS256")
    assert (await auth.authenticate(external)).tenant == tenant.tenant_id


# --- JWTs: every refusal -----------------------------------------------------------------------


async def test_alg_none_is_refused(
        keys: CountingKeys, tenants: CountingTenants, clock: Clock) -> None:
    tenant = await tenants.create("acme", "pro")
    auth = make(keys, tenants, clock)
    for alg in ("none", "None", "NONE"):
        token = forge({"alg": alg, "typ": "JWT"}, claims_for(tenant.tenant_id), key=None)
        assert "algorithm not accepted" in await refusal(auth, token)


async def test_rs256_public_key_used_as_hs256_secret_is_refused(
        keys: CountingKeys, tenants: CountingTenants, clock: Clock,
        rsa_pair: tuple[str, str]) -> None:
    """The classic algorithm confusion: the attacker knows the public key and signs HS256 with it."""
    _, public = rsa_pair
    tenant = await tenants.create("acme", "pro")
    auth = make(keys, tenants, clock, load_jwt_keys(AuthConfig(jwt_public_key=public), Path(".")))
    for key in (public.encode(), public.strip().encode()):
        token = forge({"alg": "HS256", "typ": "JWT"}, claims_for(tenant.tenant_id), key)
        assert "accepts RS256 only" in await refusal(auth, token)


async def test_rs256_token_is_refused_by_an_hs256_server(
        keys: CountingKeys, tenants: CountingTenants, clock: Clock,
        rsa_pair: tuple[str, str]) -> None:
    private, _ = rsa_pair
    tenant = await tenants.create("acme", "pro")
    auth = make(keys, tenants, clock)
    token = jwt.encode(claims_for(tenant.tenant_id), private, algorithm="RS256")
    assert "accepts HS256 only" in await refusal(auth, token)


async def test_tampered_and_foreign_signatures_are_refused(
        keys: CountingKeys, tenants: CountingTenants, clock: Clock) -> None:
    tenant = await tenants.create("acme", "pro")
    other = await tenants.create("other", "pro")
    auth = make(keys, tenants, clock)
    token, _ = auth.mint_token(Principal(tenant.tenant_id, "key_x", frozenset({Scope.TTS})))
    header, payload, signature = token.split(".")
    flipped = signature[:-2] + ("A" if signature[-2] != "A" else "B") + signature[-1]
    assert "signature invalid" in await refusal(auth, f"{header}.{payload}.{flipped}")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    claims.update(tenant=other.tenant_id, scopes=[s.value for s in Scope])
    assert "signature invalid" in await refusal(
        auth, f"{header}.{b64(json.dumps(claims).encode())}.{signature}")
    foreign = jwt.encode(claims_for(tenant.tenant_id), "x" * 40, algorithm="HS256")
    assert "signature invalid" in await refusal(auth, foreign)
    assert "invalid token" in await refusal(auth, "not.a.jwt")


async def test_expired_token_is_refused(
        keys: CountingKeys, tenants: CountingTenants, clock: Clock) -> None:
    tenant = await tenants.create("acme", "pro")
    auth = make(keys, tenants, clock, leeway_s=10)
    expired = claims_for(tenant.tenant_id, exp=int(time.time()) - 11)
    assert await refusal(auth, jwt.encode(expired, SECRET, algorithm="HS256")) == "token expired"
    within_leeway = claims_for(tenant.tenant_id, exp=int(time.time()) - 2)
    await auth.authenticate(jwt.encode(within_leeway, SECRET, algorithm="HS256"))


async def test_wrong_audience_or_issuer_is_refused(
        keys: CountingKeys, tenants: CountingTenants, clock: Clock) -> None:
    tenant = await tenants.create("acme", "pro")
    auth = make(keys, tenants, clock)
    wrong = jwt.encode(claims_for(tenant.tenant_id, aud="elsewhere"), SECRET, algorithm="HS256")
    assert await refusal(auth, wrong) == "token audience is not 'timbre'"
    strict = make(keys, tenants, clock, issuer="https://timbre.example")
    assert await refusal(strict, jwt.encode(claims_for(tenant.tenant_id), SECRET,
                                            algorithm="HS256")) == "token has no 'iss' claim"
    other_iss = claims_for(tenant.tenant_id, iss="https://evil.example")
    assert "issuer is not" in await refusal(strict, jwt.encode(other_iss, SECRET,
                                                               algorithm="HS256"))
    minted, _ = strict.mint_token(Principal(tenant.tenant_id, "key_x"))
    assert (await strict.authenticate(minted)).tenant == tenant.tenant_id


@pytest.mark.parametrize("claim", ["tenant", "exp", "aud"])
async def test_token_missing_a_required_claim_is_refused(
        keys: CountingKeys, tenants: CountingTenants, clock: Clock, claim: str) -> None:
    tenant = await tenants.create("acme", "pro")
    auth = make(keys, tenants, clock)
    claims = claims_for(tenant.tenant_id)
    del claims[claim]
    token = jwt.encode(claims, SECRET, algorithm="HS256")
    assert await refusal(auth, token) == f"token has no '{claim}' claim"


async def test_unknown_tenant_and_bad_claims_are_refused(
        keys: CountingKeys, tenants: CountingTenants, clock: Clock) -> None:
    tenant = await tenants.create("acme", "pro")
    auth = make(keys, tenants, clock)

    def token(**claims: Any) -> str:
        return jwt.encode({**claims_for(tenant.tenant_id), **claims}, SECRET, algorithm="HS256")

    assert await refusal(auth, token(tenant="t_ghost")) == "token names unknown tenant 't_ghost'"
    assert "non-empty string" in await refusal(auth, token(tenant=["t_a"]))
    assert "unknown scopes ['admin']" in await refusal(auth, token(scopes=["tts", "admin"]))
    assert "list of scope names" in await refusal(auth, token(scopes={"tts": True}))


# --- minting -----------------------------------------------------------------------------------


async def test_minting_only_narrows_and_never_outlives_the_caller(
        keys: CountingKeys, tenants: CountingTenants, clock: Clock) -> None:
    tenant = await tenants.create("acme", "pro")
    auth = make(keys, tenants, clock, token_ttl_s=300, max_token_ttl_s=3600)
    reader = Principal(tenant.tenant_id, "key_x", frozenset({Scope.TTS, Scope.VOICES_READ}))
    with pytest.raises(Forbidden, match="voices:write"):
        auth.mint_token(reader, scopes=frozenset({Scope.TTS, Scope.VOICES_WRITE}))
    with pytest.raises(BadRequest, match="at least one scope"):
        auth.mint_token(reader, scopes=frozenset())
    for ttl in (0, 3601, -5):
        with pytest.raises(BadRequest, match="between 1 and 3600"):
            auth.mint_token(reader, ttl_s=ttl)
    _, expires_at = auth.mint_token(reader)
    assert abs(expires_at - (time.time() + 300)) < 5

    short, short_exp = auth.mint_token(reader, ttl_s=60, scopes=frozenset({Scope.TTS}))
    via_token = await auth.authenticate(short)
    chained, chained_exp = auth.mint_token(via_token, ttl_s=3600)
    assert chained_exp == short_exp
    assert (await auth.authenticate(chained)).scopes == {Scope.TTS}
    with pytest.raises(Forbidden):
        auth.mint_token(via_token, scopes=frozenset({Scope.VOICES_READ}))


def test_scope_names_from_clients_are_checked() -> None:
    assert parse_scopes(["tts", "voices:read"]) == {Scope.TTS, Scope.VOICES_READ}
    with pytest.raises(BadRequest, match=r"unknown scopes \['admin', 'stream'\]"):
        parse_scopes(["tts", "stream", "admin"])


async def test_verify_only_rs256_server_mints_nothing(
        keys: CountingKeys, tenants: CountingTenants, clock: Clock,
        rsa_pair: tuple[str, str]) -> None:
    auth = make(keys, tenants, clock,
                load_jwt_keys(AuthConfig(jwt_public_key=rsa_pair[1]), Path(".")))
    assert not auth.can_mint
    with pytest.raises(MintingUnavailable) as info:
        auth.mint_token(Principal(TenantId("t_a"), "key_x"))
    assert info.value.http_status == 501


# --- configuration and the generated secret ----------------------------------------------------


def test_config_refuses_ambiguous_or_weak_settings(rsa_pair: tuple[str, str]) -> None:
    private, public = rsa_pair
    assert SECRET not in repr(AuthConfig(jwt_secret=SECRET))
    assert "PRIVATE" not in repr(AuthConfig(jwt_private_key=private))
    with pytest.raises(ValueError, match="not both"):
        AuthConfig(jwt_secret=SECRET, jwt_public_key=public)
    with pytest.raises(ValueError, match="at least 32 bytes"):
        AuthConfig(jwt_secret="short")
    with pytest.raises(ValueError, match="token_ttl_s"):
        AuthConfig(token_ttl_s=7200)
    other = rsa.generate_private_key(public_exponent=65537, key_size=2048).public_key()
    other_pem = other.public_bytes(serialization.Encoding.PEM,
                                   serialization.PublicFormat.SubjectPublicKeyInfo).decode()
    with pytest.raises(ValueError, match="does not belong"):
        load_jwt_keys(AuthConfig(jwt_private_key=private, jwt_public_key=other_pem), Path("."))
    small = rsa.generate_private_key(public_exponent=65537, key_size=1024)
    small_pem = small.private_bytes(serialization.Encoding.PEM,
                                    serialization.PrivateFormat.PKCS8,
                                    serialization.NoEncryption()).decode()
    with pytest.raises(ValueError, match="at least 2048"):
        load_jwt_keys(AuthConfig(jwt_private_key=small_pem), Path("."))
    derived = load_jwt_keys(AuthConfig(jwt_private_key=private), Path("."))
    assert derived.algorithm == "RS256" and derived.signing_key is not None


async def test_generated_secret_is_kept_0600_and_survives_a_restart(
        keys: CountingKeys, tenants: CountingTenants, clock: Clock, tmp_path: Path) -> None:
    tenant = await tenants.create("acme", "pro")
    first_keys = load_jwt_keys(AuthConfig(), tmp_path)
    assert first_keys.algorithm == "HS256" and first_keys.source.startswith("generated")
    path = tmp_path / "jwt-secret"
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    before = Authenticator(keys, tenants, first_keys, AuthConfig(), clock=clock)
    token, _ = before.mint_token(Principal(tenant.tenant_id, "key_x"))

    second_keys = load_jwt_keys(AuthConfig(), tmp_path)  # the server restarted
    assert second_keys.source.startswith("loaded")
    assert second_keys.verify_key == first_keys.verify_key
    assert "verify_key" not in repr(second_keys)  # a log line never shows the secret
    after = Authenticator(keys, tenants, second_keys, AuthConfig(), clock=clock)
    assert (await after.authenticate(token)).tenant == tenant.tenant_id
    secret, created = ensure_jwt_secret(tmp_path)
    assert not created and secret.encode() == first_keys.verify_key
    assert [p.name for p in tmp_path.iterdir()] == ["jwt-secret"]  # no temporary file left
