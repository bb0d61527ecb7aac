"""Provenance records: one per watermarked stream, keyed by its payload id."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from session.ids import TenantId
from session.store._common import Database
from session.store.provenance import ProvenanceStore

A, B = TenantId("t_a"), TenantId("t_b")


async def test_records_round_trip_and_ids_are_unique(mongo_db: Database) -> None:
    store = ProvenanceStore(mongo_db)
    await store.create_indexes()
    created = await store.create(0xFFFFFFFF, A, "piper:joe", "v1", "0.1.0")
    assert created is not None
    assert await store.get(0xFFFFFFFF) == created
    assert await store.create(0xFFFFFFFF, B, "piper:joe", "v1", "0.1.0") is None
    assert (await store.get(0xFFFFFFFF)) == created
    assert await store.get(1) is None
    unowned = await store.create(2, None, "piper:joe", "v1", "0.1.0")
    assert unowned is not None and unowned.tenant is None


async def test_recent_ids_are_the_tenants_own_newest_first(mongo_db: Database) -> None:
    store = ProvenanceStore(mongo_db)
    await store.create_indexes()
    start = datetime(2026, 11, 1, tzinfo=UTC)
    for i in range(5):
        await store.create(100 + i, A, "v_abc", "v1", "0.1.0", start + timedelta(minutes=i))
    await store.create(900, B, "piper:joe", "v1", "0.1.0", start)
    assert await store.recent_ids(A) == [104, 103, 102, 101, 100]
    assert await store.recent_ids(A, limit=2) == [104, 103]
    assert await store.recent_ids(B) == [900]
