"""The audit log: who did what to which voice (and its consent), kept with the tenant.

Entries are append-only; nothing in the service edits or deletes them.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from types import MappingProxyType
from typing import Any

from bson import ObjectId

from session.ids import TenantId
from session.store._common import Database, Document, as_utc, utcnow


class AuditAction(enum.Enum):
    VOICE_CREATE = "voice.create"
    VOICE_USE = "voice.use"
    VOICE_REVOKE = "voice.revoke"
    VOICE_DELETE = "voice.delete"
    CONSENT_CREATE = "consent.create"
    CONSENT_REVOKE = "consent.revoke"


@dataclass(frozen=True)
class AuditEntry:
    entry_id: str
    tenant: TenantId
    action: AuditAction
    subject: str
    """What was acted on: a voice id or consent id."""
    actor: str
    """Who acted: a key id, a JWT subject, or ``system``."""
    details: Mapping[str, Any]
    at: datetime


def _entry(doc: Document) -> AuditEntry:
    return AuditEntry(str(doc["_id"]), TenantId(doc["tenant"]), AuditAction(doc["action"]),
                      doc["subject"], doc["actor"], MappingProxyType(dict(doc.get("details") or {})),
                      as_utc(doc["at"]))


class AuditStore:
    COLLECTION = "audit"

    def __init__(self, db: Database) -> None:
        self._c = db[self.COLLECTION]

    async def create_indexes(self) -> None:
        await self._c.create_index([("tenant", 1), ("subject", 1), ("at", -1)],
                                   name="tenant_subject_at")
        await self._c.create_index([("tenant", 1), ("at", -1)], name="tenant_at")

    async def record(self, tenant: TenantId, action: AuditAction, subject: str, actor: str,
                     details: Mapping[str, Any] | None = None) -> AuditEntry:
        doc: Document = {"_id": ObjectId(), "tenant": tenant, "action": action.value,
                         "subject": subject, "actor": actor, "details": dict(details or {}),
                         "at": utcnow()}
        await self._c.insert_one(doc)
        return _entry(doc)

    async def list(self, tenant: TenantId, subject: str | None = None,
                   limit: int = 100) -> list[AuditEntry]:
        """The tenant's entries (about ``subject`` only, if given), newest first."""
        query: Document = {"tenant": tenant} if subject is None else {"tenant": tenant,
                                                                       "subject": subject}
        cursor = self._c.find(query).sort([("at", -1), ("_id", -1)]).limit(limit)
        return [_entry(doc) async for doc in cursor]
