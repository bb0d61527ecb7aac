"""Tenants: an organisation using Timbre, with a unique name and a tier (by name, see session.tiers)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from pymongo import ReturnDocument
from pymongo.errors import DuplicateKeyError

from session.ids import TenantId, new_tenant_id
from session.quota_errors import AlreadyExists
from session.store._common import Database, Document, as_utc, utcnow


@dataclass(frozen=True)
class Tenant:
    tenant_id: TenantId
    name: str
    tier: str
    created_at: datetime
    updated_at: datetime


def _tenant(doc: Document) -> Tenant:
    return Tenant(TenantId(doc["_id"]), doc["name"], doc["tier"], as_utc(doc["created_at"]),
                  as_utc(doc["updated_at"]))


class TenantStore:
    """Tier names are stored as given; validate them against the TierTable before calling."""

    COLLECTION = "tenants"

    def __init__(self, db: Database) -> None:
        self._c = db[self.COLLECTION]

    async def create_indexes(self) -> None:
        await self._c.create_index("name", unique=True, name="name_unique")

    async def create(self, name: str, tier: str, *, tenant_id: TenantId | None = None) -> Tenant:
        """A new tenant. Raises AlreadyExists when the name (or the given id) is taken."""
        now = utcnow()
        doc: Document = {"_id": tenant_id or new_tenant_id(), "name": name, "tier": tier,
                         "created_at": now, "updated_at": now}
        try:
            await self._c.insert_one(doc)
        except DuplicateKeyError:
            raise AlreadyExists(f"a tenant named {name!r} already exists") from None
        return _tenant(doc)

    async def ensure(self, tenant_id: TenantId, name: str, tier: str) -> Tenant:
        """The tenant with this id, created with ``name`` and ``tier`` if absent (bootstrap of the
        ``demo`` tenant; an existing tenant keeps its tier). Raises AlreadyExists when another tenant
        has the name."""
        existing = await self.get(tenant_id)
        if existing is not None:
            return existing
        try:
            return await self.create(name, tier, tenant_id=tenant_id)
        except AlreadyExists:
            raced = await self.get(tenant_id)  # a concurrent ensure created it
            if raced is None:
                raise
            return raced

    async def get(self, tenant_id: TenantId) -> Tenant | None:
        doc = await self._c.find_one({"_id": tenant_id})
        return None if doc is None else _tenant(doc)

    async def by_name(self, name: str) -> Tenant | None:
        doc = await self._c.find_one({"name": name})
        return None if doc is None else _tenant(doc)

    async def set_tier(self, tenant_id: TenantId, tier: str) -> Tenant | None:
        """The updated tenant, None when it does not exist."""
        doc = await self._c.find_one_and_update(
            {"_id": tenant_id}, {"$set": {"tier": tier, "updated_at": utcnow()}},
            return_document=ReturnDocument.AFTER)
        return None if doc is None else _tenant(doc)

    async def list(self) -> list[Tenant]:
        """All tenants by name (admin tooling)."""
        return [_tenant(doc) async for doc in self._c.find().sort("name", 1)]
