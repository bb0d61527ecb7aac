"""Shared fixtures of the session tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from inference.scheduler import Scheduler, SchedulerConfig
from session.voices import VoiceCatalog
from tests.inference.fake_engine import FakeEngine


@pytest.fixture
def catalog() -> Iterator[VoiceCatalog]:
    """A catalog with one instant fake engine (``FakeEngine``) behind a running scheduler, for
    tests of what sessions and contexts do rather than of audio; a module with real engines
    defines its own ``catalog``."""
    scheduler = Scheduler(FakeEngine(prefill_cost_s=0, decode_cost_s=0),
                          SchedulerConfig(max_lead_s=100, max_streams=3,
                                          admission_utilization=None))
    scheduler.start()
    assert scheduler.ready.wait(5)
    catalog = VoiceCatalog()
    catalog.add_engine(scheduler)
    yield catalog
    scheduler.stop()
