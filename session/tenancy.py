"""Who a request belongs to and what its tier allows, cached for the streaming path.

``TenantDirectory.account(tenant)`` answers the tenant's tier and this month's usage with one MongoDB
round trip at most every ``ttl_s`` per tenant, so opening a stream costs no database work in the
common case. ``StreamQuota`` is one streaming session's share of its tenant's limits: the lease on a
concurrent-stream slot, the character allowance checked before text is spoken, and the metering of
what was actually synthesised.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import Callable
from dataclasses import dataclass

from session.errors import Unauthorized
from session.ids import TenantId
from session.limits import Lease, StreamLimiter, check_characters, check_output_format
from session.quota_errors import QuotaExceeded
from session.store.tenants import TenantStore
from session.store.usage import Usage, UsageStore
from session.tiers import Tier, TierTable


@dataclass(frozen=True)
class Account:
    tenant: TenantId
    tier: Tier
    usage: Usage


class TenantDirectory:
    def __init__(self, tenants: TenantStore, usage: UsageStore, tiers: TierTable,
                 ttl_s: float = 5.0, clock: Callable[[], float] = time.monotonic) -> None:
        self._tenants = tenants
        self._usage = usage
        self.tiers = tiers
        self._ttl_s = ttl_s
        self._clock = clock
        self._cache: dict[TenantId, tuple[float, Account]] = {}
        self._pending: dict[TenantId, int] = {}
        """Characters metered by this node since the cached usage was read."""

    async def account(self, tenant: TenantId) -> Account:
        """The tenant's tier and usage (usage at most ``ttl_s`` old, plus what this node metered
        since). Raises Unauthorized for a tenant that no longer exists."""
        hit = self._cache.get(tenant)
        now = self._clock()
        if hit is not None and now - hit[0] < self._ttl_s:
            return self._with_pending(hit[1])
        record = await self._tenants.get(tenant)
        if record is None:
            raise Unauthorized(f"tenant {tenant!r} does not exist")
        usage = await self._usage.get(tenant)
        account = Account(tenant, self.tiers.get(record.tier), usage)
        self._cache[tenant] = (now, account)
        self._pending.pop(tenant, None)
        return account

    def _with_pending(self, account: Account) -> Account:
        extra = self._pending.get(account.tenant, 0)
        if not extra:
            return account
        usage = dataclasses.replace(account.usage, characters=account.usage.characters + extra)
        return Account(account.tenant, account.tier, usage)

    async def meter(self, tenant: TenantId, characters: int, audio_s: float) -> None:
        """Record synthesised characters and audio (atomic in MongoDB)."""
        if characters <= 0 and audio_s <= 0:
            return
        self._pending[tenant] = self._pending.get(tenant, 0) + characters
        await self._usage.add(tenant, characters, audio_s)

    def forget(self, tenant: TenantId) -> None:
        """Drop the cached account (after a tier change)."""
        self._cache.pop(tenant, None)


class StreamQuota:
    """One streaming session's hold on its tenant's limits. Create with ``open``; ``close`` when the
    session ends (idempotent)."""

    def __init__(self, directory: TenantDirectory, account: Account, lease: Lease) -> None:
        self._directory = directory
        self.account = account
        self._lease = lease
        self._spoken_here = 0
        self._meters: set[asyncio.Task[None]] = set()

    @classmethod
    async def open(cls, directory: TenantDirectory, limiter: StreamLimiter, tenant: TenantId,
                   output_format: str) -> StreamQuota:
        """Raises FormatNotAllowed, QuotaExceeded (characters used up) or TooManyStreams, each
        with the close code the connection ends with."""
        account = await directory.account(tenant)
        check_output_format(account.tier, output_format)
        check_characters(account.tier, account.usage)
        lease = await limiter.acquire(tenant, account.tier.max_concurrent_streams)
        return cls(directory, account, lease)

    def allow_text(self, characters: int) -> None:
        """Raise QuotaExceeded (fatal: close 4402) once the month's allowance is used up."""
        tier = self.account.tier
        if tier.characters_per_month is None:
            return
        used = self.account.usage.characters + self._spoken_here
        if used + characters > tier.characters_per_month:
            raise QuotaExceeded(
                f"your tier's {tier.characters_per_month} characters for "
                f"{self.account.usage.month} are used up")
        self._spoken_here += characters

    def meter(self, characters: int, audio_s: float) -> None:
        """Record what a finished context synthesised (in the background; never blocks audio)."""
        task = asyncio.get_running_loop().create_task(
            self._directory.meter(self.account.tenant, characters, audio_s))
        self._meters.add(task)
        task.add_done_callback(self._meters.discard)

    async def close(self) -> None:
        await self._lease.release()
        if self._meters:
            await asyncio.gather(*self._meters, return_exceptions=True)
