"""The embedded SecantusDB server, the database handle and the indexes every store relies on."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import psutil
import pytest

from session.db import (
    PID_FILE,
    EmbeddedMongo,
    Stores,
    ensure_indexes,
    free_port,
    open_database,
    server_command,
)
from session.store._common import Database
from tests.services import run_sync

EXPECTED_INDEXES = {
    "tenants": {"_id_", "name_unique"},
    "api_keys": {"_id_", "key_hash_unique", "tenant_created"},
    "voices": {"_id_", "tenant_created", "tenant_consent"},
    "consents": {"_id_", "tenant_created"},
    "usage": {"_id_", "tenant_month"},
    "jobs": {"_id_", "tenant_created", "expires_at_ttl"},
    "audit": {"_id_", "tenant_subject_at", "tenant_at"},
}


def port_open(url: str) -> bool:
    host, port = url.removeprefix("mongodb://").split(":")
    with socket.socket() as s:
        return s.connect_ex((host, int(port))) == 0


@pytest.mark.slow
async def test_embedded_server_keeps_data_under_the_data_dir_across_restarts(tmp_path: Path) -> None:
    mongo = EmbeddedMongo(tmp_path)
    url = await mongo.start()
    db = open_database(url)
    await db["tenants"].insert_one({"_id": "t_1", "name": "acme"})
    db.client.close()
    await mongo.close()  # graceful: SecantusDB flushes on SIGTERM (about 4 s)
    assert not port_open(url)
    with pytest.raises(RuntimeError):
        _ = mongo.url
    assert (tmp_path / "mongo").is_dir() and (tmp_path / "mongo.log").stat().st_size > 0

    again = EmbeddedMongo(tmp_path)
    db = open_database(await again.start())
    try:
        assert await db["tenants"].find_one({"_id": "t_1"}) == {"_id": "t_1", "name": "acme"}
    finally:
        db.client.close()
        await again.close(graceful=False)


async def test_every_index_is_created_and_creating_again_changes_nothing(
        mongo_db: Database) -> None:
    await ensure_indexes(mongo_db)
    first = {name: await mongo_db[name].index_information() for name in EXPECTED_INDEXES}
    await ensure_indexes(mongo_db)
    second = {name: await mongo_db[name].index_information() for name in EXPECTED_INDEXES}
    assert {name: set(info) for name, info in first.items()} == EXPECTED_INDEXES
    assert first == second


async def test_datetimes_come_back_in_utc(mongo_db: Database) -> None:
    stamp = datetime(2026, 3, 1, 12, 30, tzinfo=UTC)
    await mongo_db["scratch"].insert_one({"_id": 1, "at": stamp})
    doc = await mongo_db["scratch"].find_one({"_id": 1})
    assert doc is not None and doc["at"] == stamp and doc["at"].tzinfo is not None


async def test_stores_bundle_shares_one_database(mongo_db: Database) -> None:
    stores = await Stores.open(mongo_db, job_ttl_s=60)
    tenant = await stores.tenants.create("acme", "free")
    _, key = await stores.api_keys.create(tenant.tenant_id)
    assert key.tenant == tenant.tenant_id
    assert stores.jobs.finished_ttl_s == 60


# -- the server never outlives its owner ----------------------------------------------------------

REPO = Path(__file__).resolve().parents[2]
GONE_WITHIN_S = 20.0  # SIGTERM, then SecantusDB flushes for about 4 s (more on a busy machine)


def running(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def wait_gone(pid: int, timeout_s: float = GONE_WITHIN_S) -> bool:
    deadline = time.monotonic() + timeout_s
    while running(pid):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.1)
    return True


def _still_there(pid: int, data_dir: Path) -> str:
    """What a server that outlived its owner is doing, and the end of its log, for a failure
    message."""
    try:
        process = psutil.Process(pid)
        state = f"status {process.status()}, cpu {process.cpu_times()}"
    except psutil.Error as exc:
        state = repr(exc)
    log = data_dir / "mongo.log"
    tail = log.read_text(errors="replace")[-2000:] if log.exists() else "(no log)"
    return f"server {pid} still there after {GONE_WITHIN_S} s: {state}\n{tail}"


def kill_stray(*pids: int | None) -> None:
    """Leave no server behind, whatever the test's outcome."""
    for pid in pids:
        if pid is not None and running(pid):
            with contextlib.suppress(psutil.NoSuchProcess):
                psutil.Process(pid).kill()


def wait_pid_file(data_dir: Path, owner: int, timeout_s: float) -> int:
    """The server pid that ``owner`` recorded in ``data_dir/mongo.pid`` (waits for it)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError, ValueError):
            record = json.loads((data_dir / PID_FILE).read_text())
            if record["owner"] == owner:
                return int(record["pid"])
        time.sleep(0.1)
    raise TimeoutError(f"no {PID_FILE} from process {owner} in {timeout_s:g} s")


def start_orphan(data_dir: Path) -> tuple[subprocess.Popen[bytes], str]:
    """A SecantusDB on ``data_dir/mongo`` that nothing owns (no parent-death signal), answering."""
    (data_dir / "mongo").mkdir(parents=True, exist_ok=True)
    port = free_port()
    orphan = subprocess.Popen(
        [str(server_command()), "--host", "127.0.0.1", "--port", str(port), "--storage-path",
         str(data_dir / "mongo")], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        start_new_session=True)
    url = f"mongodb://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while not port_open(url):
        assert orphan.poll() is None and time.monotonic() < deadline, "orphan did not start"
        time.sleep(0.1)
    return orphan, url


_OWNER = """
import sys, time
from pathlib import Path
from session.db import EmbeddedMongo
from tests.services import run_sync
mongo = EmbeddedMongo(Path(sys.argv[1]))
run_sync(mongo.start())  # started from a loop in a thread that is gone once this returns
print(mongo.pid, flush=True)
time.sleep(600)
"""


@pytest.mark.slow  # a server start and a flush: about 6 s
def test_a_sigkilled_owner_takes_its_server_along(tmp_path: Path) -> None:
    owner = subprocess.Popen([sys.executable, "-c", _OWNER, str(tmp_path)], cwd=REPO,
                             stdout=subprocess.PIPE, text=True)
    db_pid = None
    try:
        assert owner.stdout is not None
        db_pid = int(owner.stdout.readline())
        time.sleep(1.0)
        assert running(db_pid)  # the thread that started it ended: not a reason to stop
        owner.kill()
        owner.wait(10)
        assert wait_gone(db_pid), _still_there(db_pid, tmp_path)
    finally:
        owner.kill()
        kill_stray(db_pid)


@pytest.mark.slow  # `timbre serve` imports for several seconds, then a flush: about 15 s
def test_timbre_serve_killed_with_sigkill_takes_its_database_along(tmp_path: Path) -> None:
    config = tmp_path / "timbre.toml"
    config.write_text("[kokoro]\nenabled = false\n")
    script = Path(sys.executable).with_name("timbre")
    command = [str(script)] if script.exists() else [sys.executable, "-m", "realtime.cli"]
    serve = subprocess.Popen(
        [*command, "serve", "--data-dir", str(tmp_path / "data"), "--port", str(free_port()),
         "--config", str(config)], cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    db_pid = None
    try:
        db_pid = wait_pid_file(tmp_path / "data", serve.pid, timeout_s=120)
        assert running(db_pid)
        serve.send_signal(signal.SIGKILL)
        serve.wait(10)
        assert wait_gone(db_pid)
    finally:
        serve.kill()
        kill_stray(db_pid)


@pytest.mark.slow  # two server starts: about 6 s
def test_next_start_stops_a_server_whose_owner_is_gone(tmp_path: Path) -> None:
    orphan, _ = start_orphan(tmp_path)  # holds the data dir's lock: a new server cannot open it
    try:
        owner = subprocess.Popen(["true"])  # a Timbre that recorded the orphan, then died
        owner.wait()
        (tmp_path / PID_FILE).write_text(json.dumps({
            "pid": orphan.pid, "started": psutil.Process(orphan.pid).create_time(),
            "owner": owner.pid, "owner_started": time.time() - 1}))
        mongo = EmbeddedMongo(tmp_path, stop_timeout_s=1.0)
        url = run_sync(mongo.start())
        try:
            assert orphan.poll() is not None
            record = json.loads((tmp_path / PID_FILE).read_text())
            assert (record["pid"], record["owner"]) == (mongo.pid, os.getpid())
            assert port_open(url)
        finally:
            run_sync(mongo.close(graceful=False))
        assert not (tmp_path / PID_FILE).exists()
    finally:
        orphan.kill()
        orphan.wait()


def test_a_pid_file_never_stops_a_process_it_does_not_name(tmp_path: Path) -> None:
    """A live owner's server is left alone (another Timbre on this data dir), and so is a process
    that merely reuses the recorded pid (its start time differs)."""
    bystander = subprocess.Popen(["sleep", "60"])
    try:
        started = psutil.Process(bystander.pid).create_time()
        me = {"owner": os.getpid(), "owner_started": psutil.Process(os.getpid()).create_time()}
        (tmp_path / PID_FILE).write_text(json.dumps({"pid": bystander.pid, "started": started,
                                                     **me}))
        run_sync(EmbeddedMongo(tmp_path)._stop_orphan())
        assert running(bystander.pid) and (tmp_path / PID_FILE).exists()

        (tmp_path / PID_FILE).write_text(json.dumps({"pid": bystander.pid, "started": started - 5,
                                                     "owner": 1, "owner_started": 0.0}))
        run_sync(EmbeddedMongo(tmp_path)._stop_orphan())
        assert running(bystander.pid) and not (tmp_path / PID_FILE).exists()
    finally:
        bystander.kill()
        bystander.wait()
