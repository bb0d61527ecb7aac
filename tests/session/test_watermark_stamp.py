"""Every context of a session gets its own watermark stream id and a provenance record for the
tenant bound by the request that created the session (real scheduler thread, fake engine, real
SecantusDB)."""

from __future__ import annotations

import asyncio

import numpy as np

from inference.scheduler import Scheduler, SchedulerConfig
from session.context import ContextEvent
from session.ids import TenantId
from session.session import Session, SessionConfig, SessionDefaults
from session.store._common import Database
from session.store.provenance import ProvenanceStore
from session.voices import VoiceCatalog
from session.watermark.stamp import API_VERSION, Stamper, bind, claim, current
from tests.inference.fake_engine import FakeEngine


async def test_contexts_are_marked_and_recorded_for_the_bound_tenant(mongo_db: Database) -> None:
    scheduler = Scheduler(FakeEngine(prefill_cost_s=0, decode_cost_s=0),
                          SchedulerConfig(max_lead_s=100, admission_utilization=None))
    scheduler.start()
    try:
        assert scheduler.ready.wait(5)
        catalog = VoiceCatalog()
        catalog.add_engine(scheduler)
        store = ProvenanceStore(mongo_db)
        stamper = Stamper(store)
        events: list[ContextEvent] = []
        with bind(stamper, TenantId("t_owner")):
            session = Session(catalog, SessionConfig(default_voice="fake:v"),
                              SessionDefaults(catalog.resolve("fake:v")), events.append,
                              asyncio.get_running_loop())
        assert current().tenant is None  # the binding ends with the request
        first, second = session.start_context("a"), session.start_context("b")
        assert first.mark is not None and second.mark is not None
        assert first.mark.stream_id != second.mark.stream_id
        await stamper.drain()
        record = await store.get(first.mark.stream_id)
        assert record is not None
        assert (record.tenant, record.voice_id, record.api_version) == (
            "t_owner", "fake:v", API_VERSION)
        assert await store.recent_ids(TenantId("t_owner")) != []
        chunk = np.linspace(-0.5, 0.5, 256, dtype=np.float32)
        assert first.mark.process(chunk).shape == chunk.shape
        session.close()
    finally:
        scheduler.stop()


async def test_sessions_outside_a_request_are_marked_without_a_record() -> None:
    binding = current()
    assert binding.tenant is None and binding.stamper.store is None
    mark = binding.stamper.mark(None, "piper:joe", 22050)
    assert 0 <= mark.stream_id < 1 << 32


async def test_a_transport_that_authenticates_itself_claims_the_tenant() -> None:
    stamper = Stamper(None)
    with bind(stamper, None):
        claim(TenantId("t_late"))
        assert current().tenant == "t_late" and current().stamper is stamper
    assert current().tenant is None
