"""Provenance records: which stream a watermark's payload belongs to.

One document per watermarked stream, keyed by its 32-bit stream id (the payload the audio carries):
when it was generated, for which tenant, in which voice (a stock voice id or a profile ``v_...``),
through which API version. Records are append-only. Ids are drawn at random by the embedder; on the
rare collision ``create`` reports it and the caller draws another.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from pymongo.errors import DuplicateKeyError

from session.ids import TenantId
from session.store._common import Database, Document, as_utc, utcnow


@dataclass(frozen=True)
class ProvenanceRecord:
    stream_id: int
    """The 32-bit id the watermark's payload carries."""
    tenant: TenantId | None
    """None when the stream was not opened by an authenticated tenant (e.g. an internal job)."""
    voice_id: str
    api_version: str
    server_version: str
    generated_at: datetime


def _record(doc: Document) -> ProvenanceRecord:
    tenant = doc.get("tenant")
    return ProvenanceRecord(int(doc["_id"]), None if tenant is None else TenantId(tenant),
                            doc["voice_id"], doc["api_version"], doc["server_version"],
                            as_utc(doc["generated_at"]))


class ProvenanceStore:
    COLLECTION = "provenance"

    def __init__(self, db: Database) -> None:
        self._c = db[self.COLLECTION]

    async def create_indexes(self) -> None:
        await self._c.create_index([("tenant", 1), ("generated_at", -1)],
                                   name="tenant_generated_at")

    async def create(self, stream_id: int, tenant: TenantId | None, voice_id: str,
                     api_version: str, server_version: str,
                     generated_at: datetime | None = None) -> ProvenanceRecord | None:
        """Insert the record; None when ``stream_id`` is already taken."""
        doc: Document = {"_id": stream_id, "tenant": tenant, "voice_id": voice_id,
                         "api_version": api_version, "server_version": server_version,
                         "generated_at": generated_at or utcnow()}
        try:
            await self._c.insert_one(doc)
        except DuplicateKeyError:
            return None
        return _record(doc)

    async def get(self, stream_id: int) -> ProvenanceRecord | None:
        doc = await self._c.find_one({"_id": stream_id})
        return None if doc is None else _record(doc)

    async def recent_ids(self, tenant: TenantId, limit: int = 10_000) -> list[int]:
        """The tenant's newest stream ids (candidates to match a short clip's payload against)."""
        cursor = self._c.find({"tenant": tenant}, {"_id": 1}).sort("generated_at", -1).limit(limit)
        return [int(doc["_id"]) async for doc in cursor]
