"""API keys: only a SHA-256 hash of each key is stored; the plaintext is shown once, at creation.

A key is looked up by its hash (unique index), so the database never sees a usable key and the lookup
time says nothing about how close a guess was. Revoked keys stay listed but are never found.
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from pymongo import ReturnDocument
from pymongo.errors import DuplicateKeyError

from session.ids import KeyId, TenantId, new_key_id
from session.quota_errors import AlreadyExists
from session.store._common import Database, Document, as_utc, opt_utc, utcnow

KEY_PREFIX = "tk_"
ALL_SCOPES: tuple[str, ...] = ("*",)
"""A key with scope ``*`` may do everything its tenant may."""


def new_api_key() -> str:
    return KEY_PREFIX + secrets.token_urlsafe(32)


def hash_api_key(plaintext: str) -> str:
    """Hex SHA-256 of the key, the only form stored (same as ``session.auth.hash_key``)."""
    return hashlib.sha256(plaintext.encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class ApiKey:
    key_id: KeyId
    tenant: TenantId
    name: str | None
    scopes: tuple[str, ...]
    created_at: datetime
    revoked_at: datetime | None
    key_hash: str

    @property
    def active(self) -> bool:
        return self.revoked_at is None


def _key(doc: Document) -> ApiKey:
    return ApiKey(KeyId(doc["_id"]), TenantId(doc["tenant"]), doc.get("name"),
                  tuple(doc["scopes"]), as_utc(doc["created_at"]), opt_utc(doc.get("revoked_at")),
                  doc["key_hash"])


class ApiKeyStore:
    COLLECTION = "api_keys"

    def __init__(self, db: Database) -> None:
        self._c = db[self.COLLECTION]

    async def create_indexes(self) -> None:
        await self._c.create_index("key_hash", unique=True, name="key_hash_unique")
        await self._c.create_index([("tenant", 1), ("created_at", 1)], name="tenant_created")

    async def create(self, tenant: TenantId, name: str | None = None,
                     scopes: Sequence[str] = ALL_SCOPES) -> tuple[str, ApiKey]:
        """A new key for ``tenant``: ``(plaintext, record)``. The plaintext is not kept anywhere;
        show it to the caller once."""
        plaintext = new_api_key()
        return plaintext, await self._insert(tenant, plaintext, name, scopes)

    async def ensure(self, tenant: TenantId, plaintext: str, name: str | None = "bootstrap",
                     scopes: Sequence[str] = ALL_SCOPES) -> ApiKey:
        """Register a key whose plaintext the caller already has (the bootstrap demo key read from
        ``DATA_DIR/demo-api-key``); idempotent. An existing record is returned as it stands, revoked
        or not. Raises AlreadyExists when the key belongs to another tenant, ValueError when the
        plaintext is not a Timbre key."""
        if not plaintext.startswith(KEY_PREFIX):
            raise ValueError(f"API keys start with {KEY_PREFIX!r}")
        existing = await self._c.find_one({"key_hash": hash_api_key(plaintext)})
        if existing is None:
            try:
                return await self._insert(tenant, plaintext, name, scopes)
            except AlreadyExists:
                existing = await self._c.find_one({"key_hash": hash_api_key(plaintext)})
                if existing is None:
                    raise
        record = _key(existing)
        if record.tenant != tenant:
            raise AlreadyExists("this API key is registered to another tenant")
        return record

    async def _insert(self, tenant: TenantId, plaintext: str, name: str | None,
                      scopes: Sequence[str]) -> ApiKey:
        doc: Document = {"_id": new_key_id(), "tenant": tenant, "name": name,
                         "scopes": list(scopes), "key_hash": hash_api_key(plaintext),
                         "created_at": utcnow(), "revoked_at": None}
        try:
            await self._c.insert_one(doc)
        except DuplicateKeyError:
            raise AlreadyExists("this API key is already registered") from None
        return _key(doc)

    async def find(self, plaintext: str) -> ApiKey | None:
        """The active key with this plaintext; None for an unknown or revoked key."""
        doc = await self._c.find_one({"key_hash": hash_api_key(plaintext), "revoked_at": None})
        return None if doc is None else _key(doc)

    async def revoke(self, key_id: KeyId, *, tenant: TenantId | None = None) -> ApiKey | None:
        """Revoke a key (idempotent: a revoked key keeps its first revocation time). With ``tenant``
        only that tenant's key can be revoked. None when no such key."""
        query: Document = {"_id": key_id} if tenant is None else {"_id": key_id, "tenant": tenant}
        doc = await self._c.find_one_and_update(
            {**query, "revoked_at": None}, {"$set": {"revoked_at": utcnow()}},
            return_document=ReturnDocument.AFTER)
        if doc is None:
            doc = await self._c.find_one(query)
        return None if doc is None else _key(doc)

    async def list(self, tenant: TenantId) -> list[ApiKey]:
        """The tenant's keys, oldest first, revoked ones included."""
        cursor = self._c.find({"tenant": tenant}).sort([("created_at", 1), ("_id", 1)])
        return [_key(doc) async for doc in cursor]
