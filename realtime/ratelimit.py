"""Requests-per-second limits: token buckets keyed by tenant or by client address.

Concurrent streams and characters are capped elsewhere (``session.limits``, the tiers); this caps
how *often* a caller may knock. Every API request (``/v1/...``: REST calls, speech requests,
WebSocket upgrades, WebRTC offers) costs one token from its tenant's bucket, which refills at
``requests_per_s`` up to ``burst``. Requests that fail to authenticate (or that carry no
credential the edge can see) cost one token from their client address's bucket instead, and an
address whose bucket is empty is refused *before* its credential is looked at, so a flood of bad
keys cannot keep the authenticator and the key store busy. The HTTP side is in
``realtime.ratelimit_guard``.

State is per process (per node): behind a load balancer with N nodes a tenant gets up to N times
the rate. That is deliberate: the limit protects each node's event loop, and the tenant-wide
guarantees (concurrent streams, characters per month) are the ones shared through Redis.

Memory is bounded: a bucket that has been idle long enough to refill completely is identical to a
new one, so it is dropped; and at most ``max_buckets`` are kept per kind (the least recently used
goes first, which can only make a limit looser for a caller idle the longest).
"""

from __future__ import annotations

import math
import socket
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class RateLimitConfig:
    """``[rate_limit]`` in the configuration file."""

    enabled: bool = True
    requests_per_s: float = 20.0
    """Sustained API requests per second per tenant (all its keys and tokens together, so minting
    more tokens does not buy more rate)."""
    burst: int = 40
    """Requests a tenant may make at once after being idle."""
    unauthenticated_per_s: float = 10.0
    """Sustained failed or credential-less API requests per second per client address (IPv6: per
    /64, which one host usually holds whole)."""
    unauthenticated_burst: int = 40
    max_buckets: int = 100_000
    """Buckets kept per kind (tenants, addresses); about 150 bytes each."""

    def __post_init__(self) -> None:
        if self.requests_per_s <= 0 or self.unauthenticated_per_s <= 0:
            raise ValueError("[rate_limit] rates must be positive")
        if self.burst < 1 or self.unauthenticated_burst < 1 or self.max_buckets < 1:
            raise ValueError("[rate_limit] burst and max_buckets must be at least 1")


class _Bucket:
    __slots__ = ("tokens", "updated")

    def __init__(self, tokens: float, updated: float) -> None:
        self.tokens = tokens
        self.updated = updated


class TokenBuckets:
    """One token bucket per key, all with the same rate and capacity, kept in least-recently-used
    order so idle ones can be found (and dropped) from the front in amortised constant time."""

    def __init__(self, rate_per_s: float, burst: int, max_buckets: int,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.rate_per_s = rate_per_s
        self.burst = burst
        self.max_buckets = max_buckets
        self._clock = clock
        self._refill_s = burst / rate_per_s
        """After this long untouched, a bucket is full again: the same as no bucket."""
        self._buckets: OrderedDict[str, _Bucket] = OrderedDict()

    def __len__(self) -> int:
        return len(self._buckets)

    def take(self, key: str) -> float:
        """Take one token for ``key``: 0.0 when granted, otherwise the seconds until one will be
        there (nothing is taken then)."""
        bucket = self._refilled(key)
        if bucket.tokens >= 1.0:
            bucket.tokens -= 1.0
            return 0.0
        return (1.0 - bucket.tokens) / self.rate_per_s

    def wait_s(self, key: str) -> float:
        """Seconds until ``key`` has a token (0.0: it has one now); takes nothing."""
        if key not in self._buckets:
            return 0.0
        bucket = self._refilled(key)
        return 0.0 if bucket.tokens >= 1.0 else (1.0 - bucket.tokens) / self.rate_per_s

    def _refilled(self, key: str) -> _Bucket:
        now = self._clock()
        bucket = self._buckets.get(key)
        if bucket is None:
            bucket = self._buckets[key] = _Bucket(float(self.burst), now)
        else:
            elapsed = max(0.0, now - bucket.updated)
            bucket.tokens = min(float(self.burst), bucket.tokens + elapsed * self.rate_per_s)
            bucket.updated = now
            self._buckets.move_to_end(key)
        self._evict(now)
        return bucket

    def _evict(self, now: float) -> None:
        buckets = self._buckets
        while len(buckets) > self.max_buckets:
            buckets.popitem(last=False)
        while buckets:
            oldest = next(iter(buckets.values()))
            if now - oldest.updated < self._refill_s:
                break
            buckets.popitem(last=False)


def address_key(remote: str | None) -> str:
    """The bucket key of a client address: the address itself for IPv4, its /64 for IPv6 (one
    host is routinely given a whole /64, so per-address buckets would be free to multiply). Runs
    on every API request, so it avoids ``ipaddress`` (tens of microseconds per call)."""
    if not remote:
        return "unknown"
    if ":" not in remote:
        return remote  # IPv4, as the socket reports it
    try:
        packed = socket.inet_pton(socket.AF_INET6, remote.partition("%")[0])  # no zone id
    except OSError:
        return remote  # not an address (a Unix socket path): one bucket per name
    if packed[:12] == _V4_MAPPED:
        return socket.inet_ntop(socket.AF_INET, packed[12:])
    return f"{packed[:8].hex()}/64"


_V4_MAPPED = bytes(10) + b"\xff\xff"


def retry_after_s(wait_s: float) -> int:
    """The ``Retry-After`` value (whole seconds, at least 1) for a wait of ``wait_s``."""
    return max(1, math.ceil(wait_s))


class RateLimits:
    """The two kinds of bucket of one app: per tenant and per client address."""

    def __init__(self, config: RateLimitConfig,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.config = config
        self.tenants = TokenBuckets(config.requests_per_s, config.burst, config.max_buckets,
                                    clock)
        self.addresses = TokenBuckets(config.unauthenticated_per_s,
                                      config.unauthenticated_burst, config.max_buckets, clock)


__all__ = ["RateLimitConfig", "RateLimits", "TokenBuckets", "address_key", "retry_after_s"]
