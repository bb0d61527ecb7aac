"""MongoDB for Timbre: the embedded SecantusDB server, the database handle, indexes and the stores.

With ``MONGO_URL`` set the app uses that server; otherwise it runs an ``EmbeddedMongo`` (a SecantusDB
process speaking the MongoDB wire protocol, data under ``DATA_DIR/mongo``) for its lifetime. Nothing
here connects at import time; the app factory opens and closes everything in a cleanup context::

    mongo = EmbeddedMongo(data_dir); await mongo.start()
    db = open_database(mongo.url); stores = await Stores.open(db)
    ...
    db.client.close(); await mongo.close()
"""

from __future__ import annotations

import asyncio
import logging
import signal
import socket
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Protocol, Self

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


class EmbeddedMongo:
    """A SecantusDB server process on a free loopback port, data under ``data_dir/mongo``, output
    in ``data_dir/mongo.log``.

    ``start`` returns once the server answers a ping (raises RuntimeError if it exits or does not
    answer within ``start_timeout_s``); ``close`` sends SIGTERM (the server takes about 4 s to flush
    and exit) and kills it after ``stop_timeout_s``. The process runs in its own session, so a
    Ctrl-C on the terminal reaches only Timbre, which then stops it in order.
    """

    START_ATTEMPTS = 3  # a free port can be taken between choosing and binding it

    def __init__(self, data_dir: Path, *, host: str = "127.0.0.1", start_timeout_s: float = 30.0,
                 stop_timeout_s: float = 10.0) -> None:
        self.storage_path = data_dir / "mongo"
        self.log_path = data_dir / "mongo.log"
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
        for attempt in range(1, self.START_ATTEMPTS + 1):
            port = free_port(self.host)
            process = self._process = self._spawn(port)
            url = f"mongodb://{self.host}:{port}"
            try:
                answered = await self._answers(url, process)
            except BaseException:  # cancelled while starting: leave no orphan behind
                process.kill()
                self._process = None
                self._close_log()
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
        raise RuntimeError(f"SecantusDB did not start; see {self.log_path}")

    def _spawn(self, port: int) -> subprocess.Popen[bytes]:
        """Launch the server on ``port``; returns at once."""
        self.storage_path.mkdir(parents=True, exist_ok=True)
        if self._log is None:
            self._log = open(self.log_path, "ab")  # noqa: SIM115 (open while the server runs)
        return subprocess.Popen(
            [str(server_command()), "--host", self.host, "--port", str(port),
             "--storage-path", str(self.storage_path)],
            stdin=subprocess.DEVNULL, stdout=self._log, stderr=subprocess.STDOUT,
            start_new_session=True)

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
