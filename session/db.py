"""MongoDB for Timbre: the embedded SecantusDB server, the database handle, indexes and the stores.

With ``MONGO_URL`` set the app uses that server; otherwise it runs an ``EmbeddedMongo`` (a SecantusDB
process speaking the MongoDB wire protocol, data under ``DATA_DIR/mongo``) for its lifetime. Nothing
here connects at import time; the app factory opens and closes everything in a cleanup context::

    mongo = EmbeddedMongo(data_dir); await mongo.start()
    db = open_database(mongo.url); stores = await Stores.open(db)
    ...
    db.client.close(); await mongo.close()

The server must not outlive Timbre, even a Timbre killed with SIGKILL (no cleanup runs then): an
orphan keeps the data dir's WiredTiger lock, so the next start fails. Two guards: on Linux the
kernel sends the server SIGTERM when its parent dies (``PR_SET_PDEATHSIG``), and everywhere a pid
file (``DATA_DIR/mongo.pid``) lets the next start find a server whose owner is gone and stop it.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import functools
import json
import logging
import os
import signal
import socket
import subprocess
import sys
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Protocol, Self

import psutil
from motor.motor_asyncio import AsyncIOMotorClient
from pymongo.errors import PyMongoError

from session.store._common import Database, Document
from session.store.api_keys import ApiKeyStore
from session.store.audit import AuditStore
from session.store.consents import ConsentStore
from session.store.jobs import DEFAULT_FINISHED_TTL_S, JobStore
from session.store.tenants import TenantStore
from session.store.usage import UsageStore
from session.store.voices import VoiceStore

log = logging.getLogger(__name__)

DEFAULT_DATABASE = "timbre"
SERVER_COMMAND = "secantusd-py"
PID_FILE = "mongo.pid"
PARENT_DEATH_SIGNAL = signal.SIGTERM  # the server flushes and exits on it (about 4 s)
_PR_SET_PDEATHSIG = 1  # <linux/prctl.h>


def open_database(url: str, name: str = DEFAULT_DATABASE) -> Database:
    """A motor database handle (connects lazily). Datetimes come back timezone-aware (UTC). Close
    with ``db.client.close()``."""
    client: AsyncIOMotorClient[Document] = AsyncIOMotorClient(url, tz_aware=True)
    return client[name]


class _Store(Protocol):
    async def create_indexes(self) -> None: ...


@dataclass(frozen=True)
class Stores:
    """Every store over one database, for the app factory to hand around."""

    tenants: TenantStore
    api_keys: ApiKeyStore
    voices: VoiceStore
    consents: ConsentStore
    usage: UsageStore
    jobs: JobStore
    audit: AuditStore

    @classmethod
    def over(cls, db: Database, *, job_ttl_s: float = DEFAULT_FINISHED_TTL_S) -> Stores:
        """The stores, without touching the server."""
        return cls(TenantStore(db), ApiKeyStore(db), VoiceStore(db), ConsentStore(db),
                   UsageStore(db), JobStore(db, finished_ttl_s=job_ttl_s), AuditStore(db))

    @classmethod
    async def open(cls, db: Database, *, job_ttl_s: float = DEFAULT_FINISHED_TTL_S) -> Stores:
        """The stores, with their indexes ensured. ``job_ttl_s``: how long finished jobs are kept."""
        stores = cls.over(db, job_ttl_s=job_ttl_s)
        await stores.ensure_indexes()
        return stores

    async def ensure_indexes(self) -> None:
        store: _Store
        for store in (self.tenants, self.api_keys, self.voices, self.consents, self.usage,
                      self.jobs, self.audit):
            await store.create_indexes()


async def ensure_indexes(db: Database) -> None:
    """Create every index the stores need (idempotent: existing ones are left as they are)."""
    await Stores.over(db).ensure_indexes()


def server_command() -> Path:
    """The SecantusDB console script of this environment (it sits next to the Python executable)."""
    path = Path(sys.executable).parent / SERVER_COMMAND
    if not path.exists():
        raise FileNotFoundError(f"{SERVER_COMMAND} not found next to {sys.executable}; "
                                "install the 'secantusdb' package")
    return path


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def _die_with_parent(parent_pid: int) -> Callable[[], None] | None:
    """A ``preexec_fn`` that has Linux send the child ``PARENT_DEATH_SIGNAL`` when its parent
    dies; None elsewhere (the pid file is the only guard there).

    ``prctl`` is looked up here, in the parent: the hook runs between fork and exec of a
    multi-threaded process, where it must not load libraries, import, log or take any lock another
    thread could have held at the fork; it makes two system calls and nothing else. If the parent
    died before the hook ran, no signal will ever come, so the child exits at once instead.
    """
    if not sys.platform.startswith("linux"):
        return None
    prctl = ctypes.CDLL(None, use_errno=True).prctl
    prctl.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong,
                      ctypes.c_ulong]
    prctl.restype = ctypes.c_int

    def hook() -> None:
        if prctl(_PR_SET_PDEATHSIG, int(PARENT_DEATH_SIGNAL), 0, 0, 0) != 0:
            raise OSError(ctypes.get_errno(), "prctl(PR_SET_PDEATHSIG) failed")
        if os.getppid() != parent_pid:
            os._exit(1)

    return hook


@functools.cache
def _spawner() -> ThreadPoolExecutor:
    """The one thread that forks every server. ``PR_SET_PDEATHSIG`` fires when the *thread* that
    forked the child exits, not its process: a server started from a loop in a short-lived thread
    (``asyncio.run`` in an executor thread, as the test fixtures do) would be killed as soon as
    that thread ended. This worker lives as long as the process."""
    return ThreadPoolExecutor(max_workers=1, thread_name_prefix="secantus-spawner")


def _process_started(pid: int) -> float | None:
    """The process's start time (psutil's ``create_time``), None when no such process runs; with
    the pid it names one process, even after the pid is reused."""
    try:
        process = psutil.Process(pid)
        return None if process.status() == psutil.STATUS_ZOMBIE else process.create_time()
    except psutil.Error:
        return None


class EmbeddedMongo:
    """A SecantusDB server process on a free loopback port, data under ``data_dir/mongo``, output
    in ``data_dir/mongo.log``, pid (with its owner's) in ``data_dir/mongo.pid``.

    ``start`` first stops a server that a dead Timbre left holding the data dir, then returns once
    the new server answers a ping (raises RuntimeError if it exits or does not answer within
    ``start_timeout_s``); ``close`` sends SIGTERM (the server takes about 4 s to flush and exit)
    and kills it after ``stop_timeout_s``. The process runs in its own session, so a Ctrl-C on
    the terminal reaches only Timbre, which then stops it in order; on Linux it gets SIGTERM
    when this process dies without stopping it (SIGKILL, a crash).
    """

    START_ATTEMPTS = 3  # a free port can be taken between choosing and binding it

    def __init__(self, data_dir: Path, *, host: str = "127.0.0.1", start_timeout_s: float = 30.0,
                 stop_timeout_s: float = 10.0) -> None:
        self.storage_path = data_dir / "mongo"
        self.log_path = data_dir / "mongo.log"
        self.pid_path = data_dir / PID_FILE
        self.host = host
        self.start_timeout_s = start_timeout_s
        self.stop_timeout_s = stop_timeout_s
        self._process: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None
        self._url: str | None = None

    @property
    def url(self) -> str:
        """``mongodb://host:port``; RuntimeError before ``start``."""
        if self._url is None:
            raise RuntimeError("EmbeddedMongo is not started")
        return self._url

    @property
    def pid(self) -> int | None:
        return None if self._process is None else self._process.pid

    async def start(self) -> str:
        """Start the server and wait until it answers; returns its URL."""
        if self._process is not None:
            raise RuntimeError("EmbeddedMongo already started")
        await self._stop_orphan()
        for attempt in range(1, self.START_ATTEMPTS + 1):
            port = free_port(self.host)
            process = self._process = await self._spawn(port)
            url = f"mongodb://{self.host}:{port}"
            try:
                answered = await self._answers(url, process)
            except BaseException:  # cancelled while starting: leave no orphan behind
                process.kill()
                self._process = None
                self._close_log()
                self.pid_path.unlink(missing_ok=True)
                raise
            if answered:
                self._url = url
                log.info("embedded SecantusDB at %s (pid %d, data %s)", url, process.pid,
                         self.storage_path)
                return url
            exited = process.poll() is not None
            await self._stop(graceful=False)
            if not exited or attempt == self.START_ATTEMPTS:
                break
        self._close_log()
        self.pid_path.unlink(missing_ok=True)
        raise RuntimeError(f"SecantusDB did not start; see {self.log_path}")

    async def _spawn(self, port: int) -> subprocess.Popen[bytes]:
        """Launch the server on ``port`` from the spawner thread and record it in the pid file;
        returns without waiting for it to answer."""
        spawning = _spawner().submit(self._popen, port)
        try:
            process = await asyncio.shield(asyncio.wrap_future(spawning))
        except BaseException:  # cancelled: the fork goes on in its thread; leave no orphan
            spawning.add_done_callback(self._discard)
            raise
        self._write_pid_file(process.pid)
        return process

    def _discard(self, spawning: Future[subprocess.Popen[bytes]]) -> None:
        """Kill a server whose start was cancelled while it was being forked."""
        if not spawning.cancelled() and spawning.exception() is None:
            spawning.result().kill()
        self._close_log()

    def _popen(self, port: int) -> subprocess.Popen[bytes]:
        """Runs in the spawner thread (see ``_spawner``)."""
        self.storage_path.mkdir(parents=True, exist_ok=True)
        if self._log is None:
            self._log = open(self.log_path, "ab")  # noqa: SIM115 (open while the server runs)
        return subprocess.Popen(
            [str(server_command()), "--host", self.host, "--port", str(port),
             "--storage-path", str(self.storage_path)],
            stdin=subprocess.DEVNULL, stdout=self._log, stderr=subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=_die_with_parent(os.getpid()))  # noqa: PLW1509 (lock-free, see there)

    def _write_pid_file(self, pid: int) -> None:
        """``{"pid", "started", "owner", "owner_started"}``: start times pin both processes, so a
        reused pid is never taken for either."""
        record = {"pid": pid, "started": _process_started(pid), "owner": os.getpid(),
                  "owner_started": _process_started(os.getpid())}
        self.pid_path.write_text(json.dumps(record) + "\n", encoding="utf-8")

    async def _stop_orphan(self) -> None:
        """Stop the server the pid file names if it still runs and its owner does not (a Timbre
        killed before it could stop it). A server whose owner lives is left alone: that is
        another Timbre on this data dir, and this start will fail on the data dir's lock."""
        try:
            record = json.loads(self.pid_path.read_text(encoding="utf-8"))
            pid, started = int(record["pid"]), record["started"]
            owner, owner_started = int(record["owner"]), record["owner_started"]
        except (OSError, ValueError, KeyError, TypeError):
            return
        if started is None or _process_started(pid) != started:
            self.pid_path.unlink(missing_ok=True)
            return
        if owner_started is not None and _process_started(owner) == owner_started:
            log.warning("SecantusDB (pid %d) on %s belongs to the running process %d; leaving it",
                        pid, self.storage_path, owner)
            return
        log.warning("stopping SecantusDB (pid %d) left running on %s by process %d, which is gone",
                    pid, self.storage_path, owner)
        with contextlib.suppress(psutil.NoSuchProcess):  # it may exit while being stopped
            orphan = psutil.Process(pid)
            orphan.terminate()
            gone, _ = await asyncio.to_thread(psutil.wait_procs, [orphan], self.stop_timeout_s)
            if not gone:
                orphan.kill()
                await asyncio.to_thread(psutil.wait_procs, [orphan], 5.0)
        self.pid_path.unlink(missing_ok=True)

    async def _answers(self, url: str, process: subprocess.Popen[bytes]) -> bool:
        """Ping until the server answers (True), exits or the start timeout passes (False)."""
        client: AsyncIOMotorClient[Document] = AsyncIOMotorClient(
            url, serverSelectionTimeoutMS=250, connectTimeoutMS=250, directConnection=True)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.start_timeout_s
        try:
            while loop.time() < deadline and process.poll() is None:
                try:
                    await client.admin.command("ping")
                    return True
                except PyMongoError:
                    await asyncio.sleep(0.1)
            return False
        finally:
            client.close()

    async def close(self, *, graceful: bool = True) -> None:
        """Stop the server (idempotent). ``graceful=False`` kills it at once (throwaway test data)."""
        await self._stop(graceful=graceful)
        self._url = None
        self._close_log()
        self.pid_path.unlink(missing_ok=True)

    async def _stop(self, *, graceful: bool = True) -> None:
        process, self._process = self._process, None
        if process is None or process.poll() is not None:
            return
        if graceful:
            process.send_signal(signal.SIGTERM)
            if await _wait(process, self.stop_timeout_s):
                return
            log.warning("SecantusDB (pid %d) ignored SIGTERM for %.0f s; killing it",
                        process.pid, self.stop_timeout_s)
        process.kill()
        await _wait(process, 5.0)

    def _close_log(self) -> None:
        if self._log is not None:
            self._log.close()
            self._log = None

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()


async def _wait(process: subprocess.Popen[bytes], timeout_s: float) -> bool:
    """Wait for the process to exit without blocking the loop; False on timeout."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while process.poll() is None:
        if loop.time() >= deadline:
            return False
        await asyncio.sleep(0.05)
    return True
