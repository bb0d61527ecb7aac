"""Real servers for tests: SecantusDB (the MongoDB wire protocol, through motor) and redis-server.

Each runs as a process on a free loopback port for the whole test session (see ``tests/conftest.py``);
tests isolate themselves with a fresh database name (Mongo) or a flushed database (Redis). A missing
``redis-server`` skips the tests that need it, except under CI (``CI`` set), where it fails them: CI
must run every test.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import time
import uuid
from collections.abc import Coroutine
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, NoReturn, TypeVar

import pytest
import redis

from session.db import EmbeddedMongo, free_port

T = TypeVar("T")


def missing(what: str, hint: str) -> NoReturn:
    """Skip (locally) or fail (under CI) a test whose server binary is not installed."""
    message = f"{what} is not installed ({hint})"
    if os.environ.get("CI"):
        pytest.fail(f"{message}; CI must run every test", pytrace=False)
    pytest.skip(message)


def run_sync(coroutine: Coroutine[Any, Any, T]) -> T:
    """Run a coroutine to completion on a private loop in another thread (safe to call whether or
    not the calling thread already runs a loop); its exception, if any, is raised here."""
    with ThreadPoolExecutor(max_workers=1) as executor:
        return executor.submit(asyncio.run, coroutine).result()


class MongoService:
    """A SecantusDB server for the test session (the app's own ``EmbeddedMongo``)."""

    def __init__(self, data_dir: Path) -> None:
        self._mongo = EmbeddedMongo(data_dir)
        self.url = run_sync(self._mongo.start())

    def stop(self) -> None:
        run_sync(self._mongo.close(graceful=False))  # test data is thrown away: no flush wait

    @staticmethod
    def database_name() -> str:
        """A fresh name per test, so tests never see each other's documents."""
        return "test_" + uuid.uuid4().hex[:12]


class RedisService:
    """A ``redis-server`` (Debian package ``redis-server``) without persistence."""

    def __init__(self, data_dir: Path, start_timeout_s: float = 10.0) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            missing("redis-server", "apt-get install redis-server")
        data_dir.mkdir(parents=True, exist_ok=True)
        for _ in range(3):  # the free port may be taken before the server binds it
            port = free_port()
            self._process = subprocess.Popen(
                [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                 "--appendonly", "no", "--dir", str(data_dir),
                 "--logfile", str(data_dir / "redis.log")],
                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
            self.url = f"redis://127.0.0.1:{port}/0"
            if self._wait_ready(start_timeout_s):
                return
            self.stop()
        raise RuntimeError(f"redis-server did not start; see {data_dir / 'redis.log'}")

    def _wait_ready(self, timeout_s: float) -> bool:
        client = redis.Redis.from_url(self.url, socket_connect_timeout=0.2)
        deadline = time.monotonic() + timeout_s
        try:
            while time.monotonic() < deadline and self._process.poll() is None:
                try:
                    return bool(client.ping())
                except redis.ConnectionError:
                    time.sleep(0.05)
            return False
        finally:
            client.close()

    def stop(self) -> None:
        if self._process.poll() is None:
            self._process.terminate()
            try:
                self._process.wait(5)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()
