"""Authentication: a bearer credential (API key or JWT) becomes a `Principal`.

Credentials arrive as ``Authorization: Bearer ...`` or, for browsers' WebSockets, ``?token=``:

* API keys (``tk_...``) are long-lived and stored in MongoDB as a SHA-256 hash only. A key is looked
  up by its hash and the stored hash is compared again in constant time; a revoked key is refused.
* JWTs are short-lived. One deployment accepts exactly one algorithm: HS256 with a shared secret
  or RS256 with an RSA public key, never both, and ``jwt.decode`` is always called with that one
  algorithm, so ``alg: none`` and an RS256 public key used as an HS256 secret both fail. Required
  claims: ``tenant`` (an existing tenant's id), ``exp`` and ``aud`` (the configured audience; and
  ``iss`` when an issuer is configured). Optional: ``scopes`` (a list, or a space-separated string)
  and ``sub``. ``POST /v1/tokens`` mints such tokens (`Authenticator.mint_token`).

Caching. Opening a stream must not wait on MongoDB: a verified API key and an existing tenant are
remembered in-process for ``key_cache_ttl_s`` (default 5 s, LRU-bounded by ``key_cache_size``).
Only successes are cached. Revoking through `Authenticator.revoke_key` drops the key from this
process's cache at once; a revocation made elsewhere (another node, the admin CLI) takes effect
here within ``key_cache_ttl_s``. Authentication happens when a connection opens: a stream opened
before a revocation is not cut by it.

Signing keys (`load_jwt_keys`). RS256 when ``jwt_public_key`` or ``jwt_private_key`` is configured
(with only the public key, the server verifies tokens but mints none); else HS256 with
``jwt_secret``; else HS256 with a random secret generated at first start and kept in
``DATA_DIR/jwt-secret`` (mode 0600), so tokens minted before a restart stay valid after it.
Every node of a deployment must share that secret (or configure one).
"""

from __future__ import annotations

import hmac
import logging
import os
import secrets
import time
from collections import OrderedDict
from collections.abc import Callable, Collection, Hashable
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any, Generic, Literal, NamedTuple, TypeVar

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from session.errors import BadRequest, TimbreError, Unauthorized
from session.ids import KeyId, TenantId
from session.store.api_keys import KEY_PREFIX, ApiKey, ApiKeyStore, hash_api_key
from session.store.tenants import TenantStore

log = logging.getLogger(__name__)

JWT_SECRET_FILE = "jwt-secret"
MIN_SECRET_BYTES = 32
MIN_RSA_BITS = 2048
MAX_CREDENTIAL_CHARS = 8192


class Scope(StrEnum):
    """What a credential may do. API keys default to all of them; a minted token may only narrow."""

    TTS = "tts"  # stream and synthesise speech (WebSocket, REST synthesis jobs)
    VOICES_READ = "voices:read"  # list and read voice profiles and their jobs
    VOICES_WRITE = "voices:write"  # create, revoke and delete voice profiles


ALL_SCOPES: frozenset[Scope] = frozenset(Scope)
EVERY_SCOPE = "*"  # stored on a key that may do whatever its tenant may (the store's default)


class Forbidden(TimbreError):
    """Authenticated, but the credential lacks the scope the operation needs."""

    code = "forbidden"
    http_status = 403
    close_code = 4403


class MintingUnavailable(TimbreError):
    """This server verifies tokens but holds no key to sign them (RS256 with a public key only)."""

    code = "token_minting_unavailable"
    http_status = 501
    close_code = None


@dataclass(frozen=True)
class Principal:
    """Who is calling, and what they may do. ``expires_at`` (unix seconds) is a JWT's ``exp``."""

    tenant: TenantId
    key_id: str
    scopes: frozenset[Scope] = ALL_SCOPES
    via: Literal["api_key", "jwt"] = "api_key"
    expires_at: int | None = None

    def require(self, scope: Scope) -> None:
        """Raises Forbidden unless this principal holds ``scope``."""
        if scope not in self.scopes:
            raise Forbidden(f"this credential lacks the '{scope}' scope")


def parse_scopes(names: Collection[str]) -> frozenset[Scope]:
    """Scope names from a client; raises BadRequest naming any unknown one."""
    unknown = sorted(set(names) - {s.value for s in Scope})
    if unknown:
        known = ", ".join(s.value for s in Scope)
        raise BadRequest(f"unknown scopes {unknown}; known: {known}")
    return frozenset(Scope(name) for name in names)


# --- configuration and signing keys ---------------------------------------------------------------


@dataclass(frozen=True)
class AuthConfig:
    """``jwt_secret`` (HS256) or ``jwt_public_key``/``jwt_private_key`` (RS256, PEM text; the
    private key only where this server mints tokens). Neither: a generated HS256 secret."""

    jwt_secret: str | None = field(default=None, repr=False)
    jwt_public_key: str | None = None
    jwt_private_key: str | None = field(default=None, repr=False)
    audience: str = "timbre"
    issuer: str | None = None
    token_ttl_s: int = 300
    max_token_ttl_s: int = 3600
    leeway_s: int = 10
    key_cache_ttl_s: float = 5.0
    key_cache_size: int = 4096

    def __post_init__(self) -> None:
        if self.jwt_secret and (self.jwt_public_key or self.jwt_private_key):
            raise ValueError("configure either jwt_secret (HS256) or an RSA key pair (RS256), "
                             "not both")
        if self.jwt_secret is not None and len(self.jwt_secret.encode()) < MIN_SECRET_BYTES:
            raise ValueError(f"jwt_secret must be at least {MIN_SECRET_BYTES} bytes")
        if not 1 <= self.max_token_ttl_s <= 86400:
            raise ValueError("max_token_ttl_s must be between 1 and 86400")
        if not 1 <= self.token_ttl_s <= self.max_token_ttl_s:
            raise ValueError(f"token_ttl_s must be between 1 and {self.max_token_ttl_s}")
        if self.key_cache_ttl_s < 0 or self.key_cache_size < 0 or self.leeway_s < 0:
            raise ValueError("cache and leeway settings must not be negative")


HmacSecret = bytes
VerifyKey = HmacSecret | rsa.RSAPublicKey
SigningKey = HmacSecret | rsa.RSAPrivateKey


@dataclass(frozen=True)
class JwtKeys:
    """The one algorithm this deployment accepts and its keys. ``signing_key`` is None when the
    server only verifies. ``source`` says where the key came from (for the start-up log)."""

    algorithm: Literal["HS256", "RS256"]
    verify_key: VerifyKey = field(repr=False)
    signing_key: SigningKey | None = field(repr=False)
    source: str = ""


def load_jwt_keys(config: AuthConfig, data_dir: Path) -> JwtKeys:
    """Resolve the signing keys (see the module docstring). Raises ValueError for a key that is not
    RSA, too short, encrypted, or a public key that does not match the private key."""
    if config.jwt_public_key or config.jwt_private_key:
        return _rsa_keys(config.jwt_public_key, config.jwt_private_key)
    if config.jwt_secret:
        secret = config.jwt_secret.encode()
        return JwtKeys("HS256", secret, secret, "configured secret")
    secret_text, created = ensure_jwt_secret(data_dir)
    where = data_dir / JWT_SECRET_FILE
    secret = secret_text.encode()
    return JwtKeys("HS256", secret, secret, f"{'generated' if created else 'loaded'} {where}")


def ensure_jwt_secret(data_dir: Path) -> tuple[str, bool]:
    """Return the secret in ``data_dir/jwt-secret`` (0600), creating it if absent. Two processes
    starting at once agree: the file appears whole, and the first one linked in wins.

    Returns ``(secret, created)``."""
    data_dir.mkdir(parents=True, exist_ok=True)
    path = data_dir / JWT_SECRET_FILE
    if not path.exists():
        tmp = data_dir / f".{JWT_SECRET_FILE}.{os.getpid()}.{secrets.token_hex(4)}"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(secrets.token_urlsafe(48) + "\n")
        try:
            os.link(tmp, path)
            created = True
        except FileExistsError:
            created = False
        finally:
            os.unlink(tmp)
    else:
        created = False
    os.chmod(path, 0o600)
    secret = path.read_text(encoding="utf-8").strip()
    if len(secret.encode()) < MIN_SECRET_BYTES:
        raise ValueError(f"{path} holds a secret shorter than {MIN_SECRET_BYTES} bytes")
    return secret, created


def _rsa_keys(public_pem: str | None, private_pem: str | None) -> JwtKeys:
    private = None
    if private_pem:
        loaded = serialization.load_pem_private_key(private_pem.encode(), password=None)
        if not isinstance(loaded, rsa.RSAPrivateKey):
            raise ValueError("jwt_private_key is not an RSA private key")
        private = loaded
    public = private.public_key() if private is not None else None
    if public_pem:
        given = serialization.load_pem_public_key(public_pem.encode())
        if not isinstance(given, rsa.RSAPublicKey):
            raise ValueError("jwt_public_key is not an RSA public key")
        if public is not None and given.public_numbers() != public.public_numbers():
            raise ValueError("jwt_public_key does not belong to jwt_private_key")
        public = given
    assert public is not None
    if public.key_size < MIN_RSA_BITS:
        raise ValueError(f"the RSA key has {public.key_size} bits; at least {MIN_RSA_BITS} needed")
    source = "configured RSA key pair" if private is not None else "configured RSA public key"
    return JwtKeys("RS256", public, private, source)


# --- the cache --------------------------------------------------------------------------------------

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


class TtlCache(Generic[K, V]):
    """A small LRU map whose entries expire ``ttl_s`` after they were put (``clock`` seconds).
    Not thread-safe: used from the event loop only."""

    def __init__(self, ttl_s: float, max_entries: int, clock: Callable[[], float]) -> None:
        self._ttl_s = ttl_s
        self._max = max_entries
        self._clock = clock
        self._entries: OrderedDict[K, tuple[float, V]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, key: K) -> V | None:
        entry = self._entries.get(key)
        if entry is None:
            return None
        expires, value = entry
        if self._clock() >= expires:
            del self._entries[key]
            return None
        self._entries.move_to_end(key)
        return value

    def put(self, key: K, value: V) -> None:
        if self._max == 0 or self._ttl_s == 0:
            return
        self._entries[key] = (self._clock() + self._ttl_s, value)
        self._entries.move_to_end(key)
        while len(self._entries) > self._max:
            self._entries.popitem(last=False)

    def discard_if(self, predicate: Callable[[V], bool]) -> int:
        """Drop every entry whose value matches; returns how many were dropped."""
        doomed = [k for k, (_, v) in self._entries.items() if predicate(v)]
        for key in doomed:
            del self._entries[key]
        return len(doomed)


# --- the authenticator ------------------------------------------------------------------------------


class MintedToken(NamedTuple):
    token: str
    expires_at: int  # unix seconds


class Authenticator:
    """Verifies API keys and JWTs and mints short-lived JWTs. One per app, built in the app factory
    once MongoDB is up; used from the event loop only. ``clock`` drives the caches, ``now`` (unix
    seconds) the minted tokens' ``iat``/``exp``."""

    def __init__(
        self,
        keys: ApiKeyStore,
        tenants: TenantStore,
        jwt_keys: JwtKeys,
        config: AuthConfig,
        *,
        clock: Callable[[], float] = time.monotonic,
        now: Callable[[], float] = time.time,
    ) -> None:
        self._keys = keys
        self._tenants = tenants
        self._jwt = jwt_keys
        self._config = config
        self._now = now
        self._key_cache: TtlCache[str, Principal] = TtlCache(
            config.key_cache_ttl_s, config.key_cache_size, clock)
        self._tenant_cache: TtlCache[TenantId, bool] = TtlCache(
            config.key_cache_ttl_s, config.key_cache_size, clock)

    @property
    def algorithm(self) -> str:
        return self._jwt.algorithm

    @property
    def can_mint(self) -> bool:
        return self._jwt.signing_key is not None

    async def authenticate(self, credential: str | None) -> Principal:
        """The principal behind an API key or JWT. Raises Unauthorized (HTTP 401, WS 4401) with a
        message saying why: missing, malformed, unknown, revoked, expired, wrong audience, ..."""
        if not credential:
            raise Unauthorized(
                "missing credential: send 'Authorization: Bearer <API key or token>' or ?token=")
        if len(credential) > MAX_CREDENTIAL_CHARS:
            raise Unauthorized("credential too long")
        if credential.startswith(KEY_PREFIX):
            return await self._api_key(credential)
        if credential.count(".") == 2:
            return await self._token(credential)
        raise Unauthorized(f"credential is neither an API key ({KEY_PREFIX}...) nor a JWT")

    async def revoke_key(self, key_id: KeyId, *, tenant: TenantId | None = None) -> ApiKey | None:
        """Revoke a key in the store (only ``tenant``'s, when given) and forget it here at once.
        Returns the revoked record, None for an unknown key."""
        record = await self._keys.revoke(key_id, tenant=tenant)
        if record is not None:
            self.forget_key(record.key_id)
        return record

    def forget_key(self, key_id: str) -> None:
        """Drop a key from this process's cache (after it was revoked by other means)."""
        self._key_cache.discard_if(lambda p: p.key_id == key_id)

    def mint_token(
        self,
        principal: Principal,
        ttl_s: int | None = None,
        scopes: frozenset[Scope] | None = None,
    ) -> MintedToken:
        """A JWT for ``principal``'s tenant, valid ``ttl_s`` seconds (default ``token_ttl_s``) but
        never longer than the caller's own token. ``scopes`` default to the caller's and may only
        narrow them. Raises BadRequest (ttl out of range, no scope), Forbidden (a scope the caller
        lacks) or MintingUnavailable."""
        if self._jwt.signing_key is None:
            raise MintingUnavailable(
                "this server verifies RS256 tokens but holds no private key to mint them")
        ttl = self._config.token_ttl_s if ttl_s is None else ttl_s
        if not 1 <= ttl <= self._config.max_token_ttl_s:
            raise BadRequest(f"ttl_s must be between 1 and {self._config.max_token_ttl_s}")
        granted = principal.scopes if scopes is None else scopes
        beyond = sorted(granted - principal.scopes)
        if beyond:
            raise Forbidden(f"a token cannot grant scopes its caller lacks: {beyond}")
        if not granted:
            raise BadRequest("a token needs at least one scope")
        issued = int(self._now())
        expires = issued + ttl
        if principal.expires_at is not None:
            expires = min(expires, principal.expires_at)
        claims: dict[str, Any] = {
            "tenant": principal.tenant, "sub": principal.key_id, "aud": self._config.audience,
            "scopes": sorted(granted), "iat": issued, "exp": expires,
            "jti": secrets.token_urlsafe(12),
        }
        if self._config.issuer:
            claims["iss"] = self._config.issuer
        token = jwt.encode(claims, self._jwt.signing_key, algorithm=self._jwt.algorithm)
        return MintedToken(token, expires)

    async def _api_key(self, key: str) -> Principal:
        digest = hash_api_key(key)
        cached = self._key_cache.get(digest)
        if cached is not None:
            return cached
        record = await self._keys.find(key)  # None for unknown and revoked keys alike
        # The store found the record by this hash; comparing again in constant time keeps a store
        # that matched loosely (a prefix, a collation) from letting a wrong key in.
        if record is None or not hmac.compare_digest(record.key_hash, digest):
            raise Unauthorized("invalid API key (unknown or revoked)")
        if not record.active:
            raise Unauthorized("API key revoked")
        principal = Principal(record.tenant, record.key_id, _stored_scopes(record), via="api_key")
        self._key_cache.put(digest, principal)
        return principal

    async def _token(self, token: str) -> Principal:
        claims = self._decode(token)
        tenant = claims["tenant"]
        if not isinstance(tenant, str) or not tenant:
            raise Unauthorized("token claim 'tenant' must be a non-empty string")
        scopes = _claimed_scopes(claims.get("scopes"))
        await self._require_tenant(TenantId(tenant))
        subject = claims.get("sub")
        key_id = subject if isinstance(subject, str) and subject else "jwt"
        return Principal(TenantId(tenant), key_id, scopes, via="jwt",
                         expires_at=int(claims["exp"]))

    def _decode(self, token: str) -> dict[str, Any]:
        required = ["exp", "aud", "tenant"] + (["iss"] if self._config.issuer else [])
        try:
            claims: dict[str, Any] = jwt.decode(
                token, self._jwt.verify_key, algorithms=[self._jwt.algorithm],
                audience=self._config.audience, issuer=self._config.issuer,
                leeway=self._config.leeway_s, options={"require": required})
        except jwt.ExpiredSignatureError:
            raise Unauthorized("token expired") from None
        except jwt.InvalidAudienceError:
            raise Unauthorized(f"token audience is not '{self._config.audience}'") from None
        except jwt.InvalidIssuerError:
            raise Unauthorized(f"token issuer is not '{self._config.issuer}'") from None
        except jwt.MissingRequiredClaimError as err:
            raise Unauthorized(f"token has no '{err.claim}' claim") from None
        except jwt.InvalidAlgorithmError:
            raise Unauthorized(
                f"token algorithm not accepted: this server accepts {self._jwt.algorithm} only"
            ) from None
        except jwt.InvalidSignatureError:
            raise Unauthorized("token signature invalid") from None
        except jwt.ImmatureSignatureError:
            raise Unauthorized("token not valid yet") from None
        except jwt.InvalidTokenError as err:
            raise Unauthorized(f"invalid token: {err}") from None
        return claims

    async def _require_tenant(self, tenant: TenantId) -> None:
        if self._tenant_cache.get(tenant):
            return
        if await self._tenants.get(tenant) is None:
            raise Unauthorized(f"token names unknown tenant '{tenant}'")
        self._tenant_cache.put(tenant, True)


def _stored_scopes(record: ApiKey) -> frozenset[Scope]:
    """A key's scopes; ``*`` (the store's default) stands for every scope."""
    if EVERY_SCOPE in record.scopes:
        return ALL_SCOPES
    known = {s.value for s in Scope}
    unknown = [s for s in record.scopes if s not in known]
    if unknown:  # a record written by a newer version: grant what this version knows
        log.warning("API key %s has scopes unknown to this server: %s", record.key_id, unknown)
    return frozenset(Scope(s) for s in record.scopes if s in known)


def _claimed_scopes(claim: object) -> frozenset[Scope]:
    """A token's ``scopes``: absent means every scope (like an API key); a list of names or one
    space-separated string otherwise. Unknown names refuse the token."""
    if claim is None:
        return ALL_SCOPES
    names = claim.split() if isinstance(claim, str) else claim
    if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
        raise Unauthorized("token claim 'scopes' must be a list of scope names")
    try:
        return parse_scopes(names)
    except BadRequest as err:
        raise Unauthorized(f"token {err.message}") from None

