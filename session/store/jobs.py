"""Asynchronous jobs (voice cloning, long synthesis): status, progress and result, read by clients.

Lifecycle (guarded; an invalid move raises InvalidState naming the current state)::

    queued  -> running | failed
    running -> succeeded | failed
    succeeded, failed  (final)

A finished job gets ``expires_at = finished + finished_ttl_s``; a TTL index lets MongoDB delete it
after that. Clients read jobs tenant-scoped; the worker that runs a job updates it by id alone.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from types import MappingProxyType
from typing import Any

from pymongo import ReturnDocument

from session.ids import JobId, TenantId, new_job_id
from session.quota_errors import InvalidState
from session.store._common import Database, Document, as_utc, opt_utc, transition, utcnow

DEFAULT_FINISHED_TTL_S = 7 * 24 * 3600.0


class JobKind(enum.Enum):
    CLONE = "clone"
    SYNTHESIZE = "synthesize"


class JobStatus(enum.Enum):
    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"

    @property
    def finished(self) -> bool:
        return self in (JobStatus.SUCCEEDED, JobStatus.FAILED)


JOB_TRANSITIONS: Mapping[JobStatus, frozenset[JobStatus]] = MappingProxyType({
    JobStatus.QUEUED: frozenset({JobStatus.RUNNING, JobStatus.FAILED}),
    JobStatus.RUNNING: frozenset({JobStatus.SUCCEEDED, JobStatus.FAILED}),
    JobStatus.SUCCEEDED: frozenset(),
    JobStatus.FAILED: frozenset(),
})


@dataclass(frozen=True)
class JobError:
    code: str
    message: str


@dataclass(frozen=True)
class Job:
    job_id: JobId
    tenant: TenantId
    kind: JobKind
    status: JobStatus
    progress: float
    """0..1."""
    subject: str | None
    """What the job works on, e.g. the voice id a clone job builds."""
    error: JobError | None
    result: Mapping[str, Any] | None
    created_at: datetime
    updated_at: datetime
    expires_at: datetime | None
    """When MongoDB may delete the finished job; None while it runs."""


def _job(doc: Document) -> Job:
    error = doc.get("error")
    result = doc.get("result")
    return Job(
        JobId(doc["_id"]), TenantId(doc["tenant"]), JobKind(doc["kind"]), JobStatus(doc["status"]),
        float(doc["progress"]), doc.get("subject"),
        None if error is None else JobError(error["code"], error["message"]),
        None if result is None else MappingProxyType(dict(result)),
        as_utc(doc["created_at"]), as_utc(doc["updated_at"]), opt_utc(doc.get("expires_at")))


class JobStore:
    COLLECTION = "jobs"

    def __init__(self, db: Database, finished_ttl_s: float = DEFAULT_FINISHED_TTL_S) -> None:
        self._c = db[self.COLLECTION]
        self.finished_ttl_s = finished_ttl_s

    async def create_indexes(self) -> None:
        await self._c.create_index([("tenant", 1), ("created_at", -1)], name="tenant_created")
        # expireAfterSeconds=0: each document carries its own deletion time in expires_at.
        await self._c.create_index("expires_at", expireAfterSeconds=0, name="expires_at_ttl")

    async def create(self, tenant: TenantId, kind: JobKind, subject: str | None = None) -> Job:
        """A new ``queued`` job."""
        now = utcnow()
        doc: Document = {
            "_id": new_job_id(), "tenant": tenant, "kind": kind.value,
            "status": JobStatus.QUEUED.value, "progress": 0.0, "subject": subject, "error": None,
            "result": None, "created_at": now, "updated_at": now, "expires_at": None,
        }
        await self._c.insert_one(doc)
        return _job(doc)

    async def get(self, tenant: TenantId, job_id: JobId) -> Job | None:
        """The tenant's job; None for an unknown id, another tenant's, or an expired one."""
        doc = await self._c.find_one({"_id": job_id, "tenant": tenant})
        return None if doc is None else _job(doc)

    async def list(self, tenant: TenantId, limit: int = 100) -> list[Job]:
        """The tenant's most recent jobs, newest first."""
        cursor = self._c.find({"tenant": tenant}).sort([("created_at", -1), ("_id", -1)])
        return [_job(doc) async for doc in cursor.limit(limit)]

    # the worker's side: by id alone

    async def unfinished(self) -> tuple[Job, ...]:
        """Every queued or running job of every tenant (what a restarted runner must settle)."""
        statuses = [JobStatus.QUEUED.value, JobStatus.RUNNING.value]
        return tuple([_job(doc) async for doc in self._c.find({"status": {"$in": statuses}})])

    async def start(self, job_id: JobId) -> Job | None:
        """queued -> running. None for an unknown job; InvalidState when not queued."""
        return await self._move(job_id, JobStatus.RUNNING, {"updated_at": utcnow()})

    async def update_progress(self, job_id: JobId, progress: float) -> Job | None:
        """Set progress (0..1) of a running job. None for an unknown job; InvalidState when it is not
        running; ValueError outside 0..1."""
        if not 0.0 <= progress <= 1.0:
            raise ValueError(f"progress must be within 0..1, not {progress}")
        doc = await self._c.find_one_and_update(
            {"_id": job_id, "status": JobStatus.RUNNING.value},
            {"$set": {"progress": float(progress), "updated_at": utcnow()}},
            return_document=ReturnDocument.AFTER)
        if doc is not None:
            return _job(doc)
        current = await self._c.find_one({"_id": job_id}, {"status": 1})
        if current is None:
            return None
        raise InvalidState(f"job {job_id} is {current['status']}; only a running job makes progress",
                           current=current["status"])

    async def finish(self, job_id: JobId, result: Mapping[str, Any] | None = None) -> Job | None:
        """running -> succeeded with ``result`` and progress 1. None / InvalidState as ``start``."""
        return await self._move(job_id, JobStatus.SUCCEEDED,
                                {"progress": 1.0, "result": dict(result or {}), **self._expiry()})

    async def fail(self, job_id: JobId, code: str, message: str) -> Job | None:
        """queued/running -> failed with a client-visible error. None / InvalidState as ``start``."""
        return await self._move(job_id, JobStatus.FAILED,
                                {"error": {"code": code, "message": message}, **self._expiry()})

    def _expiry(self) -> Document:
        now = utcnow()
        return {"updated_at": now, "expires_at": now + timedelta(seconds=self.finished_ttl_s)}

    async def _move(self, job_id: JobId, status: JobStatus, fields: Document) -> Job | None:
        doc = await transition(self._c, {"_id": job_id}, JOB_TRANSITIONS, status,
                               {"$set": {"status": status.value, **fields}}, what=f"job {job_id}")
        return None if doc is None else _job(doc)
