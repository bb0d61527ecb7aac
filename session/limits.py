"""Per-tenant limits enforced on the request path: concurrent streams, monthly characters, profiles
and output formats. Each refusal is a typed error the client sees (see ``session.quota_errors``).

Concurrent streams
------------------
A stream holds a ``Lease`` from a ``StreamLimiter`` from the moment it opens until it ends::

    lease = await limiter.acquire(tenant, tier.max_concurrent_streams)  # or TooManyStreams
    try: ...stream...
    finally: await lease.release()

``LocalStreamLimiter`` counts in process memory (one node, no Redis). ``RedisStreamLimiter`` shares the
count across nodes through Redis: each tenant has a sorted set whose members are lease ids scored by
their expiry time (Redis server clock, so nodes' clocks do not matter). Acquiring is one Lua script:
drop expired members, compare the count with the limit, add. Leases expire after ``lease_ttl_s``
unless their node's heartbeat extends them every ``heartbeat_s``, so the streams of a node that
crashed stop counting within ``lease_ttl_s`` instead of blocking the tenant forever. We chose a
sorted set with per-lease expiry over a counter (INCR/DECR): a counter cannot tell which increments
belonged to a dead node, so a crash would leak slots permanently.

If Redis cannot be reached, ``acquire`` raises the Redis client's error (the caller decides whether to
fail open); a heartbeat that cannot reach Redis is retried at the next beat, and a lease whose expiry
passed before it could be extended is marked ``lost`` (its stream goes on, no longer counted).
"""

from __future__ import annotations

import abc
import asyncio
import logging
import secrets
from collections.abc import Awaitable, Callable
from typing import Any, Self

from redis.asyncio import Redis
from redis.exceptions import RedisError

from session.ids import TenantId
from session.quota_errors import FormatNotAllowed, ProfileLimit, QuotaExceeded, TooManyStreams
from session.store.usage import Usage
from session.tiers import Tier

log = logging.getLogger(__name__)


class Lease:
    """One open stream, counted against its tenant's limit until released."""

    def __init__(self, tenant: TenantId, lease_id: str,
                 on_release: Callable[[Lease], Awaitable[None]]) -> None:
        self.tenant = tenant
        self.lease_id = lease_id
        self.lost = False
        """Set when the lease expired before its heartbeat could extend it (Redis only)."""
        self._on_release = on_release
        self._released = False

    @property
    def released(self) -> bool:
        return self._released

    async def release(self) -> None:
        """Stop counting this stream. Idempotent; if Redis cannot be reached the lease still ends
        within the limiter's ``lease_ttl_s``."""
        if self._released:
            return
        self._released = True
        await self._on_release(self)

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.release()

    def __repr__(self) -> str:
        return f"Lease({self.tenant}, {self.lease_id}{', released' if self._released else ''})"


class StreamLimiter(abc.ABC):
    """Counts a tenant's open streams against its tier's limit."""

    @abc.abstractmethod
    async def acquire(self, tenant: TenantId, limit: int) -> Lease:
        """A lease for one more stream; raises TooManyStreams when ``limit`` are already open."""

    @abc.abstractmethod
    async def active(self, tenant: TenantId) -> int:
        """Streams the tenant has open now (across all nodes for Redis)."""

    @abc.abstractmethod
    async def close(self) -> None:
        """Release what this limiter still holds and stop background work (app shutdown)."""


def _new_lease_id() -> str:
    return secrets.token_hex(8)


class LocalStreamLimiter(StreamLimiter):
    """In-process counting for a single node. Must be used from one event loop."""

    def __init__(self) -> None:
        self._open: dict[TenantId, set[str]] = {}

    async def acquire(self, tenant: TenantId, limit: int) -> Lease:
        leases = self._open.setdefault(tenant, set())
        if len(leases) >= limit:
            raise TooManyStreams.at_limit(limit)
        lease = Lease(tenant, _new_lease_id(), self._release)
        leases.add(lease.lease_id)
        return lease

    async def _release(self, lease: Lease) -> None:
        leases = self._open.get(lease.tenant)
        if leases is not None:
            leases.discard(lease.lease_id)
            if not leases:
                del self._open[lease.tenant]

    async def active(self, tenant: TenantId) -> int:
        return len(self._open.get(tenant, ()))

    async def close(self) -> None:
        self._open.clear()


_NOW_MS = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
"""

# KEYS[1]: the tenant's lease set. ARGV: limit, ttl_ms, lease id. Returns 1 if acquired, else 0.
_ACQUIRE = _NOW_MS + """
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[1]) then
  return 0
end
redis.call('ZADD', KEYS[1], now + tonumber(ARGV[2]), ARGV[3])
redis.call('PEXPIRE', KEYS[1], tonumber(ARGV[2]))
return 1
"""

# KEYS[i] holds lease ARGV[i + 1]; ARGV[1]: ttl_ms. Extends live leases; returns the positions
# (1-based) of leases that had already expired or vanished.
_REFRESH = _NOW_MS + """
local ttl = tonumber(ARGV[1])
local lost = {}
for i, key in ipairs(KEYS) do
  local score = redis.call('ZSCORE', key, ARGV[i + 1])
  if score and tonumber(score) > now then
    redis.call('ZADD', key, now + ttl, ARGV[i + 1])
    redis.call('PEXPIRE', key, ttl)
  else
    redis.call('ZREM', key, ARGV[i + 1])
    table.insert(lost, i)
  end
end
return lost
"""

# KEYS[1]: the tenant's lease set. Returns the number of unexpired leases.
_ACTIVE = _NOW_MS + """
return redis.call('ZCOUNT', KEYS[1], '(' .. now, '+inf')
"""


class RedisStreamLimiter(StreamLimiter):
    """Counting shared by every node using the same Redis (and ``prefix``).

    ``lease_ttl_s`` bounds how long a crashed node's streams keep counting; ``heartbeat_s`` (well
    under the TTL) is how often a live node extends its leases."""

    def __init__(self, redis: Redis, *, lease_ttl_s: float = 30.0, heartbeat_s: float = 10.0,
                 prefix: str = "timbre:streams:", owns_client: bool = False) -> None:
        if not 0 < heartbeat_s < lease_ttl_s:
            raise ValueError("heartbeat_s must be positive and shorter than lease_ttl_s")
        self._redis = redis
        self._ttl_ms = max(1, round(lease_ttl_s * 1000))
        self._heartbeat_s = heartbeat_s
        self._prefix = prefix
        self._owns_client = owns_client
        self._acquire = redis.register_script(_ACQUIRE)
        self._refresh = redis.register_script(_REFRESH)
        self._active = redis.register_script(_ACTIVE)
        self._held: dict[str, Lease] = {}
        self._heartbeat: asyncio.Task[None] | None = None

    @classmethod
    def from_url(cls, url: str, **settings: Any) -> RedisStreamLimiter:
        """A limiter with its own client for ``url`` (closed by ``close``)."""
        return cls(Redis.from_url(url), owns_client=True, **settings)

    def _key(self, tenant: TenantId) -> str:
        return self._prefix + tenant

    async def acquire(self, tenant: TenantId, limit: int) -> Lease:
        lease = Lease(tenant, _new_lease_id(), self._release)
        acquired = await self._acquire(keys=[self._key(tenant)],
                                       args=[limit, self._ttl_ms, lease.lease_id])
        if not int(acquired):
            raise TooManyStreams.at_limit(limit)
        self._held[lease.lease_id] = lease
        if self._heartbeat is None or self._heartbeat.done():
            self._heartbeat = asyncio.create_task(self._beat(), name="stream-lease-heartbeat")
        return lease

    async def _release(self, lease: Lease) -> None:
        self._held.pop(lease.lease_id, None)
        try:
            await self._redis.zrem(self._key(lease.tenant), lease.lease_id)
        except RedisError:
            log.warning("could not release stream lease %s; it expires on its own", lease.lease_id)

    async def active(self, tenant: TenantId) -> int:
        return int(await self._active(keys=[self._key(tenant)]))

    async def _beat(self) -> None:
        while self._held:
            await asyncio.sleep(self._heartbeat_s)
            try:
                await self.refresh()
            except RedisError as err:
                log.warning("stream lease heartbeat failed (%s); retrying in %.1f s", err,
                            self._heartbeat_s)

    async def refresh(self) -> None:
        """Extend every lease this limiter holds now (the heartbeat calls it)."""
        leases = list(self._held.values())
        if not leases:
            return
        lost = await self._refresh(keys=[self._key(lease.tenant) for lease in leases],
                                   args=[self._ttl_ms, *(lease.lease_id for lease in leases)])
        for position in lost:
            lease = leases[int(position) - 1]
            lease.lost = True
            self._held.pop(lease.lease_id, None)
            log.warning("stream lease %s of tenant %s expired before its heartbeat; its stream "
                        "no longer counts", lease.lease_id, lease.tenant)

    async def close(self) -> None:
        if self._heartbeat is not None:
            self._heartbeat.cancel()
            await asyncio.gather(self._heartbeat, return_exceptions=True)
            self._heartbeat = None
        for lease in list(self._held.values()):
            await lease.release()
        if self._owns_client:
            await self._redis.aclose()


def open_stream_limiter(redis_url: str | None, **settings: Any) -> StreamLimiter:
    """Redis-backed when ``redis_url`` (``REDIS_URL``) is set, in-process otherwise."""
    if redis_url:
        return RedisStreamLimiter.from_url(redis_url, **settings)
    return LocalStreamLimiter()


# --- characters, profiles, formats ---------------------------------------------------------------


def remaining_characters(tier: Tier, usage: Usage) -> int | None:
    """Characters left this month; None when the tier is unlimited."""
    if tier.characters_per_month is None:
        return None
    return max(0, tier.characters_per_month - usage.characters)


def check_characters(tier: Tier, usage: Usage, requested: int = 0) -> int | None:
    """Refuse new synthesis when the month's characters are used up, or when ``requested`` more
    would go past them (e.g. a long-text job); returns the characters left (None: unlimited).

    Raises QuotaExceeded. Metering itself (``UsageStore.add``) happens when audio is synthesised, so
    a unit already being spoken may end slightly past the allowance."""
    remaining = remaining_characters(tier, usage)
    if remaining is None:
        return None
    if remaining <= 0 or requested > remaining:
        raise QuotaExceeded(
            f"this request needs {requested} characters but only {remaining} of your tier's "
            f"{tier.characters_per_month} per month are left" if requested > remaining > 0 else
            f"your tier's {tier.characters_per_month} characters for {usage.month} are used up")
    return remaining


def check_profiles(tier: Tier, existing: int) -> None:
    """Raise ProfileLimit when ``existing`` profiles (``VoiceStore.count``) leave no room for one
    more. A cheap early check before accepting uploads; ``VoiceStore.create`` enforces it exactly."""
    if tier.max_profiles is not None and existing >= tier.max_profiles:
        raise ProfileLimit.at_limit(tier.max_profiles)


def check_output_format(tier: Tier, output_format: str) -> None:
    """Raise FormatNotAllowed when the tier does not include ``output_format``."""
    if not tier.allows_format(output_format):
        allowed = ", ".join(tier.output_formats or ())
        raise FormatNotAllowed(f"output format {output_format!r} is not in your tier "
                               f"(allowed: {allowed})")
