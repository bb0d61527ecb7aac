"""Consent records: the voice owner's permission that a voice profile must point to.

A record is never edited; revoking it stamps ``revoked_at`` (the profiles built on it must then be
revoked too: see ``VoiceStore.revoke_for_consent``).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from pymongo import ReturnDocument

from session.ids import ConsentId, TenantId, new_consent_id
from session.store._common import Database, Document, as_utc, opt_utc, utcnow


@dataclass(frozen=True)
class ConsentRecord:
    consent_id: ConsentId
    tenant: TenantId
    owner_name: str
    """The person whose voice it is."""
    statement: str
    """The text they accepted."""
    accepted: bool
    purpose: str
    expires_at: datetime | None
    uploaded_by: str
    """Who recorded it: the key id or principal that made the request."""
    created_at: datetime
    revoked_at: datetime | None

    def valid_at(self, now: datetime) -> bool:
        """True while the consent was accepted, is not revoked and has not expired."""
        expired = self.expires_at is not None and now >= self.expires_at
        return self.accepted and self.revoked_at is None and not expired


def _consent(doc: Document) -> ConsentRecord:
    return ConsentRecord(
        ConsentId(doc["_id"]), TenantId(doc["tenant"]), doc["owner_name"], doc["statement"],
        doc["accepted"], doc["purpose"], opt_utc(doc.get("expires_at")), doc["uploaded_by"],
        as_utc(doc["created_at"]), opt_utc(doc.get("revoked_at")))


class ConsentStore:
    COLLECTION = "consents"

    def __init__(self, db: Database) -> None:
        self._c = db[self.COLLECTION]

    async def create_indexes(self) -> None:
        await self._c.create_index([("tenant", 1), ("created_at", 1)], name="tenant_created")

    async def create(self, tenant: TenantId, *, owner_name: str, statement: str, accepted: bool,
                     purpose: str, expires_at: datetime | None, uploaded_by: str) -> ConsentRecord:
        """Store a consent record as given (the REST layer refuses unaccepted statements)."""
        doc: Document = {
            "_id": new_consent_id(), "tenant": tenant, "owner_name": owner_name,
            "statement": statement, "accepted": accepted, "purpose": purpose,
            "expires_at": expires_at, "uploaded_by": uploaded_by, "created_at": utcnow(),
            "revoked_at": None,
        }
        await self._c.insert_one(doc)
        return _consent(doc)

    async def get(self, tenant: TenantId, consent_id: ConsentId) -> ConsentRecord | None:
        doc = await self._c.find_one({"_id": consent_id, "tenant": tenant})
        return None if doc is None else _consent(doc)

    async def delete(self, tenant: TenantId, consent_id: ConsentId) -> bool:
        """Remove a record that never backed a profile (a create that was refused after the
        consent was stored). Returns whether it existed. Records of real profiles are revoked,
        never deleted: the audit trail needs them."""
        result = await self._c.delete_one({"_id": consent_id, "tenant": tenant})
        return bool(result.deleted_count)

    async def revoke(self, tenant: TenantId, consent_id: ConsentId) -> ConsentRecord | None:
        """Revoke (idempotent: the first revocation time stays). None when the tenant has no such
        record."""
        query: Document = {"_id": consent_id, "tenant": tenant}
        doc = await self._c.find_one_and_update(
            {**query, "revoked_at": None}, {"$set": {"revoked_at": utcnow()}},
            return_document=ReturnDocument.AFTER)
        if doc is None:
            doc = await self._c.find_one(query)
        return None if doc is None else _consent(doc)
