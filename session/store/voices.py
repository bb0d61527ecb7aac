"""Voice profiles: a tenant's cloned voices, their lifecycle and what an engine needs to speak them.

Lifecycle (guarded; an invalid transition raises InvalidState naming the current state)::

    pending -> ready | failed | revoked
    ready   -> revoked
    failed  -> revoked
    revoked    (final)

Reference audio is kept as file names relative to ``DATA_DIR`` that the server derives from ids; the
store refuses absolute paths and ``..`` so a stored name can never point outside ``DATA_DIR``.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import PurePosixPath
from types import MappingProxyType
from typing import Any

from session.ids import ConsentId, TenantId, VoiceId, new_voice_id
from session.quota_errors import ProfileLimit
from session.store._common import Database, Document, as_utc, transition, utcnow


class VoiceStatus(enum.Enum):
    PENDING = "pending"
    """Reference audio accepted; the clone job has not finished."""
    READY = "ready"
    FAILED = "failed"
    REVOKED = "revoked"
    """Consent withdrawn or the tenant revoked it; never speaks again."""


VOICE_TRANSITIONS: Mapping[VoiceStatus, frozenset[VoiceStatus]] = MappingProxyType({
    VoiceStatus.PENDING: frozenset({VoiceStatus.READY, VoiceStatus.FAILED, VoiceStatus.REVOKED}),
    VoiceStatus.READY: frozenset({VoiceStatus.REVOKED}),
    VoiceStatus.FAILED: frozenset({VoiceStatus.REVOKED}),
    VoiceStatus.REVOKED: frozenset(),
})

COUNTED_STATUSES = (VoiceStatus.PENDING, VoiceStatus.READY)
"""Profiles that take up one of the tier's profile slots."""


@dataclass(frozen=True)
class VoiceProfile:
    voice_id: VoiceId
    tenant: TenantId
    name: str
    status: VoiceStatus
    engine: str
    engine_params: Mapping[str, Any]
    """Whatever the engine needs to speak the voice (e.g. a Kokoro style vector)."""
    embedding: tuple[float, ...] | None
    """Speaker embedding of the reference audio (256-dim GE2E), once computed."""
    reference_files: tuple[str, ...]
    """Relative to DATA_DIR."""
    consent_id: ConsentId
    created_at: datetime
    updated_at: datetime
    error: str | None


def _profile(doc: Document) -> VoiceProfile:
    embedding = doc.get("embedding")
    return VoiceProfile(
        VoiceId(doc["_id"]), TenantId(doc["tenant"]), doc["name"], VoiceStatus(doc["status"]),
        doc["engine"], MappingProxyType(dict(doc.get("engine_params") or {})),
        None if embedding is None else tuple(float(x) for x in embedding),
        tuple(doc["reference_files"]), ConsentId(doc["consent_id"]), as_utc(doc["created_at"]),
        as_utc(doc["updated_at"]), doc.get("error"))


def check_relative(path: str) -> str:
    """``path`` if it is a plain relative path; ValueError otherwise (a bug: names are generated)."""
    pure = PurePosixPath(path)
    if not path or pure.is_absolute() or ".." in pure.parts or "\\" in path:
        raise ValueError(f"reference file names must be relative paths under DATA_DIR: {path!r}")
    return path


class VoiceStore:
    COLLECTION = "voices"

    def __init__(self, db: Database) -> None:
        self._c = db[self.COLLECTION]

    async def create_indexes(self) -> None:
        await self._c.create_index([("tenant", 1), ("created_at", -1)], name="tenant_created")
        await self._c.create_index([("tenant", 1), ("consent_id", 1)], name="tenant_consent")

    async def create(
        self,
        tenant: TenantId,
        name: str,
        *,
        engine: str,
        consent_id: ConsentId,
        reference_files: Sequence[str] = (),
        voice_id: VoiceId | None = None,
        max_profiles: int | None = None,
    ) -> VoiceProfile:
        """A new ``pending`` profile.

        ``max_profiles`` is the tier's limit (None: unlimited). It is checked after the insert, so
        concurrent creates can never exceed it (under a race both may be refused); raises
        ProfileLimit with nothing left behind."""
        now = utcnow()
        doc: Document = {
            "_id": voice_id or new_voice_id(), "tenant": tenant, "name": name,
            "status": VoiceStatus.PENDING.value, "engine": engine, "engine_params": {},
            "embedding": None, "reference_files": [check_relative(p) for p in reference_files],
            "consent_id": consent_id, "created_at": now, "updated_at": now, "error": None,
        }
        await self._c.insert_one(doc)
        if max_profiles is not None and await self.count(tenant) > max_profiles:
            await self._c.delete_one({"_id": doc["_id"]})
            raise ProfileLimit.at_limit(max_profiles)
        return _profile(doc)

    async def get(self, tenant: TenantId, voice_id: VoiceId) -> VoiceProfile | None:
        """The tenant's profile; None for an unknown id or another tenant's."""
        doc = await self._c.find_one({"_id": voice_id, "tenant": tenant})
        return None if doc is None else _profile(doc)

    async def list(self, tenant: TenantId,
                   statuses: Sequence[VoiceStatus] | None = None) -> list[VoiceProfile]:
        """The tenant's profiles, newest first, optionally only in ``statuses``."""
        query: Document = {"tenant": tenant}
        if statuses is not None:
            query["status"] = {"$in": [s.value for s in statuses]}
        cursor = self._c.find(query).sort([("created_at", -1), ("_id", -1)])
        return [_profile(doc) async for doc in cursor]

    async def count(self, tenant: TenantId) -> int:
        """Profiles counted against the tier's limit: pending and ready ones."""
        return int(await self._c.count_documents(
            {"tenant": tenant, "status": {"$in": [s.value for s in COUNTED_STATUSES]}}))

    async def set_status(self, tenant: TenantId, voice_id: VoiceId, status: VoiceStatus,
                         error: str | None = None) -> VoiceProfile | None:
        """Move the profile to ``status`` (``error``, if given, says why, e.g. for ``failed``; use
        ``set_ready`` for ``ready``). None when the tenant has no such profile; raises InvalidState
        when the lifecycle forbids it."""
        fields: Document = {"status": status.value, "updated_at": utcnow()}
        if error is not None:
            fields["error"] = error
        update: Document = {"$set": fields}
        return await self._move(tenant, voice_id, status, update)

    async def set_ready(self, tenant: TenantId, voice_id: VoiceId, engine_params: Mapping[str, Any],
                        embedding: Sequence[float] | None) -> VoiceProfile | None:
        """pending -> ready with what the engine needs. None / InvalidState as ``set_status``."""
        update: Document = {"$set": {
            "status": VoiceStatus.READY.value, "engine_params": dict(engine_params),
            "embedding": None if embedding is None else [float(x) for x in embedding],
            "updated_at": utcnow(), "error": None,
        }}
        return await self._move(tenant, voice_id, VoiceStatus.READY, update)

    async def _move(self, tenant: TenantId, voice_id: VoiceId, status: VoiceStatus,
                    update: Document) -> VoiceProfile | None:
        doc = await transition(self._c, {"_id": voice_id, "tenant": tenant}, VOICE_TRANSITIONS,
                               status, update, what=f"voice {voice_id}")
        return None if doc is None else _profile(doc)

    async def revoke_for_consent(self, tenant: TenantId,
                                 consent_id: ConsentId) -> tuple[VoiceId, ...]:
        """Revoke every profile built on this consent that is not revoked yet; returns their ids
        (so live streams using them can be ended)."""
        query: Document = {"tenant": tenant, "consent_id": consent_id,
                           "status": {"$ne": VoiceStatus.REVOKED.value}}
        ids = tuple([VoiceId(doc["_id"]) async for doc in self._c.find(query, {"_id": 1})])
        if ids:
            await self._c.update_many(
                {**query, "_id": {"$in": list(ids)}},
                {"$set": {"status": VoiceStatus.REVOKED.value, "updated_at": utcnow()}})
        return ids

    async def delete(self, tenant: TenantId, voice_id: VoiceId) -> VoiceProfile | None:
        """Delete the record and return it (the caller removes its reference files and derived
        data); None when the tenant has no such profile."""
        doc = await self._c.find_one_and_delete({"_id": voice_id, "tenant": tenant})
        return None if doc is None else _profile(doc)
