"""Running asynchronous jobs (voice cloning, long-text synthesis) in this process.

A job is a document in the jobs store (``session.store.jobs``: ``queued -> running -> succeeded |
failed``) plus an asyncio task here that does the work. ``JobRunner.submit`` starts the task; it
waits for one of its kind's slots (bounded concurrency per ``JobKind``, so long synthesis jobs never
hold up clone jobs), moves the job to ``running``, calls the work function with a ``JobContext``
(progress reporting, an executor for CPU-heavy steps) and records the outcome:

* the work returns a result mapping: ``succeeded`` with that result;
* it raises a ``TimbreError``: ``failed`` with the error's code and message (what the client sees);
* it raises anything else: ``failed`` with ``internal_error`` and a generic message (the traceback
  goes to the log, never to the client) and the runner goes on with other jobs;
* it is cancelled (``cancel``, or ``close`` at shutdown): ``failed`` with the reason given
  (``cancelled``, ``interrupted``).

Failure hooks registered per kind (``on_failure``) run after a job failed for any reason, so the
object a job works on never stays half-done (a clone job's profile goes ``failed``).

At start-up ``recover`` fails the jobs a previous process left ``queued`` or ``running``
(``interrupted``): their tasks died with it. This assumes one process runs the jobs of a
deployment (the embedded default); a scale-out deployment must run jobs on one node until jobs
carry the node that owns them.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, TypeVar

from session.errors import TimbreError
from session.ids import JobId
from session.quota_errors import InvalidState
from session.store.jobs import Job, JobError, JobKind, JobStore

log = logging.getLogger(__name__)

T = TypeVar("T")

JobResult = Mapping[str, Any] | None
JobWork = Callable[["JobContext"], Awaitable[JobResult]]
FailureHook = Callable[[Job, JobError], Awaitable[None]]

INTERRUPTED = JobError("interrupted", "the server stopped while this job was running; "
                                      "submit it again")
CANCELLED = JobError("cancelled", "the job was cancelled")
INTERNAL = JobError("internal_error", "the job failed unexpectedly; the error was logged")


@dataclass(frozen=True)
class JobsConfig:
    """``[jobs]``: how many jobs of each kind run at once in this process, the threads for their
    CPU-heavy steps, and how often progress is written to the store."""

    max_clone_jobs: int = 2
    max_synthesis_jobs: int = 2
    worker_threads: int = 2
    progress_interval_s: float = 1.0
    """A job's progress is written at most this often (and always at 0 and 1)."""
    shutdown_timeout_s: float = 10.0
    """``close`` waits this long for cancelled jobs to record that they were interrupted."""

    def __post_init__(self) -> None:
        if min(self.max_clone_jobs, self.max_synthesis_jobs, self.worker_threads) < 1:
            raise ValueError("job concurrency and worker threads must be at least 1")
        if self.progress_interval_s < 0 or self.shutdown_timeout_s < 0:
            raise ValueError("job intervals must not be negative")

    def slots(self, kind: JobKind) -> int:
        return self.max_clone_jobs if kind is JobKind.CLONE else self.max_synthesis_jobs


class JobContext:
    """What a running job's work function gets: its job, progress reporting and the executor."""

    def __init__(self, runner: JobRunner, job: Job) -> None:
        self.job = job
        self._runner = runner
        self._written = 0.0
        self._written_at = -float("inf")

    @property
    def job_id(self) -> JobId:
        return self.job.job_id

    async def progress(self, fraction: float) -> None:
        """Report progress (0..1, clamped; never moves backwards). The first report is written at
        once, later ones at most every ``progress_interval_s``; a step to 1.0 always."""
        fraction = min(1.0, max(self._written, fraction))
        now = time.monotonic()
        due = now - self._written_at >= self._runner.config.progress_interval_s
        if fraction > self._written and (due or fraction >= 1.0):
            self._written, self._written_at = fraction, now
            await self._runner.jobs.update_progress(self.job.job_id, fraction)

    async def run_blocking(self, fn: Callable[..., T], *args: Any) -> T:
        """Run a CPU-heavy or blocking call on the runner's worker threads."""
        return await self._runner.run_blocking(fn, *args)


@dataclass
class _Running:
    job: Job
    task: asyncio.Task[None]
    reason: JobError | None = None
    """Why it was cancelled, once it was."""


class JobRunner:
    """Runs jobs as asyncio tasks of the loop that calls ``submit``. Create it in the app factory,
    ``await recover()`` once the stores are open, ``await close()`` at shutdown."""

    def __init__(self, jobs: JobStore, config: JobsConfig | None = None) -> None:
        self.jobs = jobs
        self.config = config or JobsConfig()
        self._slots = {kind: asyncio.Semaphore(self.config.slots(kind)) for kind in JobKind}
        self._executor = ThreadPoolExecutor(self.config.worker_threads,
                                            thread_name_prefix="job-worker")
        self._running: dict[JobId, _Running] = {}
        self._hooks: dict[JobKind, list[FailureHook]] = {kind: [] for kind in JobKind}
        self._closed = False

    # -- set-up and shutdown -----------------------------------------------------------------------

    def on_failure(self, kind: JobKind, hook: FailureHook) -> None:
        """Call ``hook(job, error)`` after any job of ``kind`` failed (errors, cancellation,
        interruption found by ``recover``). A failing hook is logged and does not stop others."""
        self._hooks[kind].append(hook)

    async def recover(self) -> list[Job]:
        """Fail the jobs a previous process left unfinished (``interrupted``) and run their
        failure hooks; returns them. Call once at start-up, before ``submit``."""
        failed: list[Job] = []
        for job in await self.jobs.unfinished():
            if job.job_id in self._running:
                continue
            done = await self._record_failure(job, INTERRUPTED)
            if done is not None:
                failed.append(done)
        if failed:
            log.warning("marked %d job(s) left unfinished by a previous process as interrupted",
                        len(failed))
        return failed

    async def close(self) -> None:
        """Cancel every job still queued or running (each is failed as ``interrupted``), wait up
        to ``shutdown_timeout_s`` for them to record it, and stop the worker threads."""
        self._closed = True
        running = list(self._running.values())
        for entry in running:
            entry.reason = entry.reason or INTERRUPTED
            entry.task.cancel()
        if running:
            await asyncio.wait([e.task for e in running], timeout=self.config.shutdown_timeout_s)
        self._executor.shutdown(wait=False, cancel_futures=True)

    # -- running -----------------------------------------------------------------------------------

    def submit(self, job: Job, work: JobWork) -> None:
        """Start running ``job`` (a ``queued`` job just created in the store) in the background.
        Raises RuntimeError after ``close``."""
        if self._closed:
            raise RuntimeError("the job runner is closed")
        task = asyncio.get_running_loop().create_task(self._run(job, work),
                                                      name=f"job-{job.job_id}")
        self._running[job.job_id] = _Running(job, task)
        task.add_done_callback(lambda _: self._running.pop(job.job_id, None))

    def cancel(self, job_id: JobId, reason: JobError = CANCELLED) -> bool:
        """Stop a job of this process; it is failed with ``reason``. False when it is not
        running here."""
        entry = self._running.get(job_id)
        if entry is None:
            return False
        entry.reason = entry.reason or reason
        entry.task.cancel()
        return True

    def running_for(self, subject: str) -> list[JobId]:
        """Jobs of this process working on ``subject`` (e.g. a voice id)."""
        return [job_id for job_id, e in self._running.items() if e.job.subject == subject]

    async def wait(self, job_id: JobId) -> None:
        """Until the job's task is done (returns at once when it is not running here)."""
        entry = self._running.get(job_id)
        if entry is not None:
            await asyncio.wait([entry.task])

    @property
    def active(self) -> int:
        return len(self._running)

    async def run_blocking(self, fn: Callable[..., T], *args: Any) -> T:
        """Run ``fn(*args)`` on the worker threads (shared with request-time checks)."""
        return await asyncio.get_running_loop().run_in_executor(self._executor, fn, *args)

    async def _run(self, job: Job, work: JobWork) -> None:
        try:
            async with self._slots[job.kind]:
                started = await self.jobs.start(job.job_id)
                if started is None:
                    return  # deleted (expired) before it could start
                result = await work(JobContext(self, started))
                await self.jobs.finish(job.job_id, result)
        except asyncio.CancelledError:
            entry = self._running.get(job.job_id)
            await self._record_failure(job, entry.reason if entry and entry.reason else CANCELLED)
        except TimbreError as err:
            await self._record_failure(job, JobError(err.code, err.message))
        except Exception:
            log.exception("job %s (%s) failed", job.job_id, job.kind.value)
            await self._record_failure(job, INTERNAL)

    async def _record_failure(self, job: Job, error: JobError) -> Job | None:
        """Fail the job in the store (unless it already finished) and run the kind's hooks.
        Never raises: a store that cannot be reached leaves the job for ``recover``."""
        try:
            failed = await self.jobs.fail(job.job_id, error.code, error.message)
        except InvalidState:
            return None  # finished meanwhile (e.g. succeeded just before a cancel)
        except Exception:
            log.exception("could not record the failure of job %s", job.job_id)
            return None
        for hook in self._hooks[job.kind]:
            try:
                await hook(failed or job, error)
            except Exception:
                log.exception("failure hook for job %s failed", job.job_id)
        return failed


