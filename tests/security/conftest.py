"""One real server for the whole security suite (engine start-up costs seconds), configured the way
the suite needs: an allow-listed browser origin, a known JWT secret (so tests can forge tokens the
way an attacker with a wrong key would), small tiers that make caps quick to reach, and no
CPU-load admission (which would refuse streams before the caps under test)."""

from __future__ import annotations

import asyncio
import dataclasses
import uuid
from collections.abc import Coroutine, Iterator
from typing import Any, TypeVar

import pytest

from realtime.appkeys import STORES
from session.ids import TenantId
from session.tiers import TierTable
from tests.security.fuzzing import Tally
from tests.server import RunningServer, ServerThread

T = TypeVar("T")

JWT_SECRET = "security-suite-7f3a9c51e0b24d86a1c5f9e2b3d47a08"
ALLOWED_ORIGIN = "https://app.example.com"
TIERS = {
    # one stream at a time, plenty of characters: the concurrent-stream cap on every transport
    "single": {"characters_per_month": 1_000_000, "max_profiles": 1, "max_concurrent_streams": 1},
    # nothing to speak: the fuzzer reaches every handler's parsing without synthesising audio
    "mute": {"characters_per_month": 0, "max_profiles": 0, "max_concurrent_streams": 4},
}


@pytest.fixture(scope="session")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    # No CPU-based admission: on a shared test machine it would refuse streams (server_busy)
    # before the caps under test are reached; max_streams still bounds the scheduler.
    thread = ServerThread(tmp_path_factory.mktemp("security"),
                          server={"allowed_origins": (ALLOWED_ORIGIN,)},
                          auth={"jwt_secret": JWT_SECRET},
                          scheduler={"admission_utilization": None})
    thread.config = dataclasses.replace(thread.config, tiers=TierTable.from_mapping(TIERS))
    yield thread.start()
    thread.stop()


def on_server(server: RunningServer, coroutine: Coroutine[Any, Any, T]) -> T:
    """Run ``coroutine`` on the server's loop (its MongoDB client lives there) and wait for it."""
    return asyncio.run_coroutine_threadsafe(coroutine, server.loop).result(timeout=30)


def new_tenant(server: RunningServer, tier: str, scopes: tuple[str, ...] | None = None,
               ) -> tuple[TenantId, str]:
    """A fresh tenant of ``tier`` and an API key for it (every scope unless ``scopes``)."""
    stores = server.app[STORES]

    async def create() -> tuple[TenantId, str]:
        tenant = await stores.tenants.create(f"sec-{uuid.uuid4().hex[:10]}", tier)
        if scopes is None:
            key, _ = await stores.api_keys.create(tenant.tenant_id)
        else:
            key, _ = await stores.api_keys.create(tenant.tenant_id, scopes=scopes)
        return tenant.tenant_id, key

    return on_server(server, create())


@pytest.fixture
def tally(request: pytest.FixtureRequest) -> Iterator[Tally]:
    """Counts a fuzz test's cases (``tally.hit()`` per example) for the benchmark's report."""
    counter = Tally(request.node.nodeid)
    yield counter
    assert counter.cases > 0, "the fuzz test ran no example"
    counter.report()
