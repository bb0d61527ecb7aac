"""The embedded SecantusDB server, the database handle and the indexes every store relies on."""

from __future__ import annotations

import socket
from datetime import UTC, datetime
from pathlib import Path

import pytest

from session.db import EmbeddedMongo, Stores, ensure_indexes, open_database
from session.store._common import Database

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
