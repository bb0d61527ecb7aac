"""Per-tenant limits: concurrent streams (in process, and across nodes through a real redis-server),
monthly characters, profiles and output formats."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
import redis.asyncio

from session.errors import TimbreError
from session.ids import TenantId
from session.limits import (
    LocalStreamLimiter,
    RedisStreamLimiter,
    StreamLimiter,
    check_characters,
    check_output_format,
    check_profiles,
    open_stream_limiter,
    remaining_characters,
)
from session.quota_errors import FormatNotAllowed, ProfileLimit, QuotaExceeded, TooManyStreams
from session.store.usage import Usage
from session.tiers import Tier, TierTable
from tests.services import RedisService

A, B = TenantId("t_a"), TenantId("t_b")


@pytest.fixture(params=["local", "redis"])
async def nodes(request: pytest.FixtureRequest) -> AsyncIterator[tuple[StreamLimiter, ...]]:
    """Two limiters that must agree: one in-process limiter used twice (one node), or two Redis
    limiters sharing one redis-server (two nodes)."""
    if request.param == "local":
        local = LocalStreamLimiter()
        yield local, local
        await local.close()
        return
    server: RedisService = request.getfixturevalue("redis_server")  # only the Redis case needs it
    clients = [redis.asyncio.Redis.from_url(server.url) for _ in range(2)]
    await clients[0].flushdb()
    first, second = (RedisStreamLimiter(client) for client in clients)
    yield first, second
    for limiter, client in zip((first, second), clients, strict=True):
        await limiter.close()
        await client.aclose()


async def test_the_limit_holds_across_nodes_and_release_frees_a_slot(
        nodes: tuple[StreamLimiter, StreamLimiter]) -> None:
    one, two = nodes
    first = await one.acquire(A, 2)
    await two.acquire(A, 2)
    with pytest.raises(TooManyStreams) as caught:
        await one.acquire(A, 2)
    error: TimbreError = caught.value
    assert (error.code, error.http_status, error.close_code, error.retryable) == (
        "too_many_streams", 429, 4429, True)
    assert "2 concurrent streams" in error.message
    assert await two.active(A) == 2
    await first.release()
    await first.release()  # idempotent: frees one slot, not two
    assert await one.active(A) == 1
    await two.acquire(A, 2)
    with pytest.raises(TooManyStreams):
        await two.acquire(A, 2)


async def test_tenants_have_separate_counts(nodes: tuple[StreamLimiter, StreamLimiter]) -> None:
    one, two = nodes
    async with await one.acquire(A, 1):
        await two.acquire(B, 1)
        with pytest.raises(TooManyStreams):
            await two.acquire(A, 1)
    assert await one.active(A) == 0 and await one.active(B) == 1


async def test_a_zero_limit_refuses_every_stream(nodes: tuple[StreamLimiter, StreamLimiter]) -> None:
    with pytest.raises(TooManyStreams):
        await nodes[0].acquire(A, 0)


async def test_concurrent_acquires_never_exceed_the_limit(
        nodes: tuple[StreamLimiter, StreamLimiter]) -> None:
    results = await asyncio.gather(*(nodes[i % 2].acquire(A, 3) for i in range(20)),
                                   return_exceptions=True)
    assert sum(not isinstance(r, BaseException) for r in results) == 3
    assert all(isinstance(r, TooManyStreams) for r in results if isinstance(r, BaseException))


def stop_heartbeat(limiter: RedisStreamLimiter) -> None:
    """Simulate the node dying: its leases stay in Redis but are no longer extended."""
    assert limiter._heartbeat is not None
    limiter._heartbeat.cancel()


async def test_a_crashed_nodes_leases_expire(redis_client: redis.asyncio.Redis) -> None:
    crashed = RedisStreamLimiter(redis_client, lease_ttl_s=1.0, heartbeat_s=0.1)
    survivor = RedisStreamLimiter(redis_client, lease_ttl_s=1.0, heartbeat_s=0.1)
    orphan = await crashed.acquire(A, 1)
    stop_heartbeat(crashed)
    with pytest.raises(TooManyStreams):
        await survivor.acquire(A, 1)
    await asyncio.sleep(1.1)
    assert await survivor.active(A) == 0
    await survivor.acquire(A, 1)
    await crashed.refresh()  # the node comes back: its lease is gone and it knows
    assert orphan.lost
    await survivor.close()


async def test_heartbeats_keep_live_leases_past_their_ttl(redis_client: redis.asyncio.Redis) -> None:
    one = RedisStreamLimiter(redis_client, lease_ttl_s=1.0, heartbeat_s=0.1)
    two = RedisStreamLimiter(redis_client, lease_ttl_s=1.0, heartbeat_s=0.1)
    lease = await one.acquire(A, 1)
    await asyncio.sleep(1.5)
    with pytest.raises(TooManyStreams):
        await two.acquire(A, 1)
    assert not lease.lost
    await one.close()  # shutdown releases what the node holds
    assert lease.released
    await two.acquire(A, 1)
    await two.close()


async def test_open_stream_limiter_picks_redis_only_with_a_url(redis_server: RedisService) -> None:
    assert isinstance(open_stream_limiter(None), LocalStreamLimiter)
    limiter = open_stream_limiter(redis_server.url)
    assert isinstance(limiter, RedisStreamLimiter)
    lease = await limiter.acquire(TenantId("t_url"), 1)
    await lease.release()
    await limiter.close()


FREE = TierTable().get("free")


def test_characters_are_refused_once_the_month_is_used_up() -> None:
    assert check_characters(FREE, Usage(A, "2026-03", characters=9_999)) == 1
    with pytest.raises(QuotaExceeded, match="used up") as caught:
        check_characters(FREE, Usage(A, "2026-03", characters=10_000))
    assert (caught.value.code, caught.value.http_status, caught.value.close_code) == (
        "quota_exceeded", 402, 4402)
    with pytest.raises(QuotaExceeded, match="needs 500 characters but only 100"):
        check_characters(FREE, Usage(A, "2026-03", characters=9_900), requested=500)
    unlimited = TierTable().get("enterprise")
    assert check_characters(unlimited, Usage(A, "2026-03", characters=10**9), 10**6) is None
    assert remaining_characters(FREE, Usage(A, "2026-03", characters=12_000)) == 0


def test_profile_and_format_checks() -> None:
    check_profiles(FREE, 0)
    with pytest.raises(ProfileLimit, match="1 voice profile;"):
        check_profiles(FREE, 1)
    check_profiles(TierTable().get("enterprise"), 10_000)
    narrow = Tier("narrow", 100, 1, 1, output_formats=("pcm_s16le",))
    check_output_format(narrow, "pcm_s16le")
    with pytest.raises(FormatNotAllowed, match="'opus'.*allowed: pcm_s16le"):
        check_output_format(narrow, "opus")
