"""Usage per tenant per calendar month (UTC): characters synthesised, audio seconds, requests.

One document per (tenant, month), bumped with atomic ``$inc`` upserts, so any number of concurrent
writers on any number of nodes add up exactly.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from pymongo import ReturnDocument
from pymongo.errors import DuplicateKeyError

from session.ids import TenantId
from session.store._common import Database, Document, as_utc, utcnow


def month_of(at: datetime) -> str:
    """``YYYY-MM`` of ``at`` in UTC (a naive datetime is taken as UTC)."""
    return as_utc(at).astimezone(UTC).strftime("%Y-%m")


@dataclass(frozen=True)
class Usage:
    tenant: TenantId
    month: str
    """``YYYY-MM``, UTC."""
    characters: int = 0
    audio_s: float = 0.0
    requests: int = 0


def _usage_id(tenant: TenantId, month: str) -> str:
    return f"{tenant}/{month}"


def _usage(doc: Document) -> Usage:
    return Usage(TenantId(doc["tenant"]), doc["month"], int(doc.get("characters", 0)),
                 float(doc.get("audio_s", 0.0)), int(doc.get("requests", 0)))


class UsageStore:
    COLLECTION = "usage"

    def __init__(self, db: Database) -> None:
        self._c = db[self.COLLECTION]

    async def create_indexes(self) -> None:
        await self._c.create_index([("tenant", 1), ("month", -1)], unique=True, name="tenant_month")

    async def add(self, tenant: TenantId, characters: int, audio_s: float = 0.0, requests: int = 1,
                  *, at: datetime | None = None) -> Usage:
        """Add to the tenant's month (that of ``at``, default now) atomically; returns the month's
        totals including this addition (and possibly concurrent ones). Raises ValueError for
        negative amounts."""
        if characters < 0 or audio_s < 0 or requests < 0:
            raise ValueError("usage only grows")
        month = month_of(at or utcnow())
        query: Document = {"_id": _usage_id(tenant, month)}
        update: Document = {
            "$inc": {"characters": characters, "audio_s": float(audio_s), "requests": requests},
            "$setOnInsert": {"tenant": tenant, "month": month},
        }
        try:
            doc = await self._c.find_one_and_update(
                query, update, upsert=True, return_document=ReturnDocument.AFTER)
        except DuplicateKeyError:
            # Two first-of-the-month upserts raced; the document exists now, so this is an update.
            doc = await self._c.find_one_and_update(
                query, update, upsert=True, return_document=ReturnDocument.AFTER)
        if doc is None:
            # SecantusDB 0.7.0b3 applies an upsert that lost the insert race as an update but
            # answers value=null; the addition is counted, so read the totals back.
            doc = await self._c.find_one(query)
        if doc is None:
            raise RuntimeError(f"usage document {query['_id']} vanished")
        return _usage(doc)

    async def get(self, tenant: TenantId, month: str | None = None) -> Usage:
        """The tenant's usage in ``month`` (default: this month); zeros when nothing was used."""
        month = month or month_of(utcnow())
        doc = await self._c.find_one({"_id": _usage_id(tenant, month)})
        return Usage(tenant, month) if doc is None else _usage(doc)

    async def history(self, tenant: TenantId, months: int = 12) -> list[Usage]:
        """The tenant's most recent months with any usage, newest first."""
        cursor = self._c.find({"tenant": tenant}).sort("month", -1).limit(months)
        return [_usage(doc) async for doc in cursor]
