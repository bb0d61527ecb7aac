"""Usage per tenant per month: atomic increments, month boundaries in UTC, tenant isolation."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta, timezone

import pytest

from session.db import Stores
from session.ids import TenantId
from session.store.usage import Usage, month_of

A, B = TenantId("t_a"), TenantId("t_b")


async def test_adds_accumulate_and_return_the_totals(stores: Stores) -> None:
    assert await stores.usage.get(A) == Usage(A, month_of(datetime.now(UTC)))
    await stores.usage.add(A, characters=100, audio_s=6.5)
    total = await stores.usage.add(A, characters=20, audio_s=1.0, requests=2)
    assert (total.characters, total.audio_s, total.requests) == (120, 7.5, 3)
    assert await stores.usage.get(A) == total


async def test_fifty_concurrent_adds_all_count(stores: Stores) -> None:
    answers = await asyncio.gather(*(stores.usage.add(A, characters=i, audio_s=0.5)
                                     for i in range(50)))
    total = await stores.usage.get(A)
    assert (total.characters, total.audio_s, total.requests) == (sum(range(50)), 25.0, 50)
    assert max(answer.requests for answer in answers) == 50  # every add answers with totals


async def test_months_are_separate_and_in_utc(stores: Stores) -> None:
    january = datetime(2026, 1, 31, 23, 59, tzinfo=UTC)
    await stores.usage.add(A, 10, at=january)
    await stores.usage.add(A, 5, at=january + timedelta(minutes=2))
    # 01:00 on 1 February in UTC+2 is still January in UTC
    await stores.usage.add(A, 1, at=datetime(2026, 2, 1, 1, 0, tzinfo=timezone(timedelta(hours=2))))
    assert (await stores.usage.get(A, "2026-01")).characters == 11
    assert (await stores.usage.get(A, "2026-02")).characters == 5
    assert [u.month for u in await stores.usage.history(A)] == ["2026-02", "2026-01"]


async def test_tenants_never_see_each_others_usage(stores: Stores) -> None:
    await stores.usage.add(A, 500)
    assert (await stores.usage.get(B)).characters == 0
    assert await stores.usage.history(B) == []


async def test_usage_only_grows(stores: Stores) -> None:
    with pytest.raises(ValueError):
        await stores.usage.add(A, -1)
