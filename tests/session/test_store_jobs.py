"""Jobs: lifecycle guards, progress, tenant isolation, expiry of finished jobs."""

from __future__ import annotations

from datetime import timedelta

import pytest

from session.db import Stores
from session.ids import JobId, TenantId
from session.quota_errors import InvalidState
from session.store._common import Database
from session.store.jobs import JobError, JobKind, JobStatus

A, B = TenantId("t_a"), TenantId("t_b")


async def test_a_job_runs_reports_progress_and_succeeds(stores: Stores) -> None:
    job = await stores.jobs.create(A, JobKind.CLONE, subject="v_1")
    assert (job.status, job.progress, job.expires_at) == (JobStatus.QUEUED, 0.0, None)
    await stores.jobs.start(job.job_id)
    halfway = await stores.jobs.update_progress(job.job_id, 0.5)
    assert halfway is not None and (halfway.status, halfway.progress) == (JobStatus.RUNNING, 0.5)
    done = await stores.jobs.finish(job.job_id, {"voice_id": "v_1"})
    assert done is not None and done.status is JobStatus.SUCCEEDED and done.status.finished
    assert (done.progress, dict(done.result or {}), done.error) == (1.0, {"voice_id": "v_1"}, None)
    assert await stores.jobs.get(A, job.job_id) == done


async def test_failure_carries_a_code_and_message(stores: Stores) -> None:
    job = await stores.jobs.create(A, JobKind.SYNTHESIZE)
    failed = await stores.jobs.fail(job.job_id, "synthesis_failed", "engine crashed")
    assert failed is not None and failed.status is JobStatus.FAILED
    assert failed.error == JobError("synthesis_failed", "engine crashed")


async def test_invalid_moves_name_the_current_state(stores: Stores) -> None:
    job = await stores.jobs.create(A, JobKind.CLONE)
    with pytest.raises(InvalidState, match="is queued; it cannot become succeeded"):
        await stores.jobs.finish(job.job_id)
    with pytest.raises(InvalidState, match="is queued; only a running job"):
        await stores.jobs.update_progress(job.job_id, 0.1)
    await stores.jobs.start(job.job_id)
    await stores.jobs.finish(job.job_id)
    with pytest.raises(InvalidState, match="is succeeded") as caught:
        await stores.jobs.fail(job.job_id, "late", "too late")
    assert caught.value.current == "succeeded"
    with pytest.raises(ValueError):
        await stores.jobs.update_progress(job.job_id, 1.5)
    assert await stores.jobs.start(JobId("job_nope")) is None


async def test_another_tenant_cannot_read_or_list_jobs(stores: Stores) -> None:
    job = await stores.jobs.create(A, JobKind.CLONE)
    assert await stores.jobs.get(B, job.job_id) is None
    assert await stores.jobs.list(B) == []
    assert await stores.jobs.list(A) == [job]


async def test_finished_jobs_expire_through_a_ttl_index(mongo_db: Database) -> None:
    stores = await Stores.open(mongo_db, job_ttl_s=3600)
    indexes = await mongo_db["jobs"].index_information()
    ttl = indexes["expires_at_ttl"]
    assert ttl["key"] == [("expires_at", 1)] and ttl["expireAfterSeconds"] == 0
    job = await stores.jobs.create(A, JobKind.SYNTHESIZE)
    await stores.jobs.start(job.job_id)
    done = await stores.jobs.finish(job.job_id)
    assert done is not None and done.expires_at == done.updated_at + timedelta(hours=1)
