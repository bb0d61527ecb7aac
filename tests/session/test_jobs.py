"""The job runner against a real SecantusDB: progress, outcomes, bounded concurrency, cancellation,
shutdown and recovery of jobs a dead process left behind."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Mapping
from typing import Any

import pytest

from session.db import Stores
from session.errors import SynthesisFailed
from session.ids import TenantId
from session.jobs import JobContext, JobRunner, JobsConfig
from session.store.jobs import Job, JobError, JobKind, JobStatus

A = TenantId("t_a")


async def settle(stores: Stores, runner: JobRunner, job: Job) -> Job:
    await asyncio.wait_for(runner.wait(job.job_id), 10)
    final = await stores.jobs.get(job.tenant, job.job_id)
    assert final is not None
    return final


async def eventually(predicate: Any, timeout_s: float = 5.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while not await predicate():
        assert loop.time() < deadline, "condition not reached in time"
        await asyncio.sleep(0.01)


@pytest.fixture
async def runner(stores: Stores):
    runner = JobRunner(stores.jobs, JobsConfig(progress_interval_s=0.0, max_synthesis_jobs=1))
    yield runner
    await runner.close()


async def test_a_job_reports_progress_and_succeeds_with_its_result(
        stores: Stores, runner: JobRunner) -> None:
    halfway, go_on = asyncio.Event(), asyncio.Event()

    async def work(context: JobContext) -> Mapping[str, Any]:
        await context.progress(0.5)
        halfway.set()
        await go_on.wait()
        return {"answer": 42}

    job = await stores.jobs.create(A, JobKind.CLONE, subject="v_0000000000000000")
    runner.submit(job, work)
    await asyncio.wait_for(halfway.wait(), 5)
    running = await stores.jobs.get(A, job.job_id)
    assert running is not None
    assert (running.status, running.progress) == (JobStatus.RUNNING, 0.5)
    go_on.set()
    done = await settle(stores, runner, job)
    assert (done.status, done.progress, dict(done.result or {})) == (JobStatus.SUCCEEDED, 1.0,
                                                                     {"answer": 42})
    assert done.expires_at is not None


async def test_progress_never_goes_back_and_is_written_at_most_every_interval(
        stores: Stores) -> None:
    runner = JobRunner(stores.jobs, JobsConfig(progress_interval_s=3600))
    seen: list[float] = []

    async def work(context: JobContext) -> None:
        for fraction in (0.2, 0.6, 0.4, 0.9):
            await context.progress(fraction)
            current = await stores.jobs.get(A, context.job_id)
            assert current is not None
            seen.append(current.progress)
        await context.progress(1.0)
        current = await stores.jobs.get(A, context.job_id)
        assert current is not None
        seen.append(current.progress)

    job = await stores.jobs.create(A, JobKind.SYNTHESIZE)
    runner.submit(job, work)
    assert (await settle(stores, runner, job)).status is JobStatus.SUCCEEDED
    await runner.close()
    # the first report is written; within the interval no other is, except the final 1.0
    assert seen == [0.2, 0.2, 0.2, 0.2, 1.0]


async def test_a_client_visible_error_fails_the_job_with_its_code(
        stores: Stores, runner: JobRunner) -> None:
    async def work(context: JobContext) -> None:
        raise SynthesisFailed("nothing in the text could be spoken")

    job = await stores.jobs.create(A, JobKind.SYNTHESIZE)
    runner.submit(job, work)
    failed = await settle(stores, runner, job)
    assert failed.status is JobStatus.FAILED
    assert failed.error == JobError("synthesis_failed", "nothing in the text could be spoken")


async def test_a_bug_fails_only_its_job_and_hides_the_details(
        stores: Stores, runner: JobRunner, caplog: pytest.LogCaptureFixture) -> None:
    async def broken(context: JobContext) -> None:
        raise KeyError("secret internal detail")

    async def fine(context: JobContext) -> Mapping[str, Any]:
        return {"ok": True}

    first = await stores.jobs.create(A, JobKind.CLONE)
    runner.submit(first, broken)
    failed = await settle(stores, runner, first)
    second = await stores.jobs.create(A, JobKind.CLONE)
    runner.submit(second, fine)
    assert (await settle(stores, runner, second)).status is JobStatus.SUCCEEDED
    assert failed.status is JobStatus.FAILED and failed.error is not None
    assert failed.error.code == "internal_error"
    assert "secret" not in failed.error.message
    assert "secret internal detail" in caplog.text  # but the log has it


async def test_concurrency_is_bounded_per_kind(stores: Stores, runner: JobRunner) -> None:
    release = asyncio.Event()
    started: list[str] = []

    async def hold(context: JobContext) -> None:
        started.append(context.job_id)
        await release.wait()

    long_one = await stores.jobs.create(A, JobKind.SYNTHESIZE)
    waiting = await stores.jobs.create(A, JobKind.SYNTHESIZE)
    clone = await stores.jobs.create(A, JobKind.CLONE)
    for job in (long_one, waiting, clone):
        runner.submit(job, hold)

    async def two_started() -> bool:
        return len(started) == 2

    await eventually(two_started)
    await asyncio.sleep(0.1)
    assert set(started) == {long_one.job_id, clone.job_id}  # one synthesis slot; clones apart
    queued = await stores.jobs.get(A, waiting.job_id)
    assert queued is not None and queued.status is JobStatus.QUEUED
    release.set()
    for job in (long_one, waiting, clone):
        assert (await settle(stores, runner, job)).status is JobStatus.SUCCEEDED
    assert started[-1] == waiting.job_id


async def test_cancel_fails_the_job_with_the_reason_and_runs_failure_hooks(
        stores: Stores, runner: JobRunner) -> None:
    failures: list[tuple[str, str]] = []

    async def hook(job: Job, error: JobError) -> None:
        failures.append((job.job_id, error.code))

    runner.on_failure(JobKind.CLONE, hook)
    started = asyncio.Event()

    async def forever(context: JobContext) -> None:
        started.set()
        await asyncio.Event().wait()

    job = await stores.jobs.create(A, JobKind.CLONE, subject="v_0123456789abcdef")
    runner.submit(job, forever)
    await asyncio.wait_for(started.wait(), 5)
    assert runner.running_for("v_0123456789abcdef") == [job.job_id]
    assert runner.cancel(job.job_id, JobError("voice_revoked", "the voice was revoked"))
    failed = await settle(stores, runner, job)
    assert failed.error == JobError("voice_revoked", "the voice was revoked")
    assert failures == [(job.job_id, "voice_revoked")]
    assert not runner.cancel(job.job_id)  # no longer running here


async def test_close_interrupts_running_and_queued_jobs(stores: Stores) -> None:
    runner = JobRunner(stores.jobs, JobsConfig(max_clone_jobs=1))
    started = asyncio.Event()

    async def forever(context: JobContext) -> None:
        started.set()
        await asyncio.Event().wait()

    running = await stores.jobs.create(A, JobKind.CLONE)
    queued = await stores.jobs.create(A, JobKind.CLONE)
    runner.submit(running, forever)
    runner.submit(queued, forever)
    await asyncio.wait_for(started.wait(), 5)
    await runner.close()
    for job in (running, queued):
        final = await stores.jobs.get(A, job.job_id)
        assert final is not None and final.status is JobStatus.FAILED
        assert final.error is not None and final.error.code == "interrupted"
    with pytest.raises(RuntimeError, match="closed"):
        runner.submit(await stores.jobs.create(A, JobKind.CLONE), forever)


async def test_recover_fails_what_a_dead_process_left_unfinished(stores: Stores) -> None:
    other = TenantId("t_b")
    left_running = await stores.jobs.create(A, JobKind.CLONE, subject="v_0123456789abcdef")
    await stores.jobs.start(left_running.job_id)
    left_queued = await stores.jobs.create(other, JobKind.SYNTHESIZE)
    finished = await stores.jobs.create(A, JobKind.CLONE)
    await stores.jobs.start(finished.job_id)
    await stores.jobs.finish(finished.job_id, {"done": True})
    hooked: list[str] = []

    async def hook(job: Job, error: JobError) -> None:
        hooked.append(f"{job.subject}:{error.code}")

    runner = JobRunner(stores.jobs)
    runner.on_failure(JobKind.CLONE, hook)
    recovered = await runner.recover()
    assert {job.job_id for job in recovered} == {left_running.job_id, left_queued.job_id}
    for tenant, job in ((A, left_running), (other, left_queued)):
        final = await stores.jobs.get(tenant, job.job_id)
        assert final is not None and final.error is not None
        assert (final.status, final.error.code) == (JobStatus.FAILED, "interrupted")
    untouched = await stores.jobs.get(A, finished.job_id)
    assert untouched is not None and untouched.status is JobStatus.SUCCEEDED
    assert hooked == ["v_0123456789abcdef:interrupted"]
    assert await runner.recover() == []
    await runner.close()


async def test_blocking_work_runs_off_the_event_loop(stores: Stores, runner: JobRunner) -> None:
    loop_thread = threading.current_thread()

    async def work(context: JobContext) -> Mapping[str, Any]:
        name = await context.run_blocking(lambda: threading.current_thread().name)
        return {"thread": name}

    job = await stores.jobs.create(A, JobKind.CLONE)
    runner.submit(job, work)
    done = await settle(stores, runner, job)
    assert done.result is not None
    assert done.result["thread"].startswith("job-worker")
    assert done.result["thread"] != loop_thread.name
