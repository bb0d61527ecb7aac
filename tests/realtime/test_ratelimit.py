"""Requests-per-second limits (``realtime.ratelimit``, ``realtime.ratelimit_guard``).

The buckets on their own, with a clock the test advances (so no test depends on how fast this
machine is), then a real server with tiny limits: a refill of one token per 100 s, so a test's
few requests always fall inside one refill period however loaded the machine. Each test uses its
own tenant and its own loopback source address (127.0.0.x: Linux routes all of 127/8 to lo), so
the tests do not drain each other's buckets.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import pytest

from realtime.appkeys import STORES
from realtime.config import load_config
from realtime.ratelimit import RateLimitConfig, RateLimits, TokenBuckets, address_key
from tests.security.conftest import on_server
from tests.server import RunningServer, ServerThread

BURST = 3
LIMITS = {"requests_per_s": 0.01, "burst": BURST, "unauthenticated_per_s": 0.01,
          "unauthenticated_burst": BURST}


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


# -- the buckets ---------------------------------------------------------------------------------


def test_a_bucket_grants_its_burst_then_says_how_long_to_wait() -> None:
    clock = Clock()
    buckets = TokenBuckets(rate_per_s=2.0, burst=4, max_buckets=10, clock=clock)
    assert [buckets.take("t") for _ in range(4)] == [0.0] * 4
    assert buckets.take("t") == pytest.approx(0.5)  # one token at 2 per second
    assert buckets.wait_s("t") == pytest.approx(0.5)
    assert buckets.take("other") == 0.0  # buckets are per key
    clock.now += 0.5
    assert buckets.take("t") == 0.0
    assert buckets.take("t") == pytest.approx(0.5)
    clock.now += 60.0  # refills to the burst, never beyond
    assert [buckets.take("t") for _ in range(5)][-2:] == [0.0, pytest.approx(0.5)]


def test_a_refused_request_takes_nothing() -> None:
    clock = Clock()
    buckets = TokenBuckets(rate_per_s=1.0, burst=1, max_buckets=10, clock=clock)
    assert buckets.take("t") == 0.0
    for _ in range(100):  # hammering while empty does not push the next token further away
        assert buckets.take("t") == pytest.approx(1.0)
    clock.now += 1.0
    assert buckets.take("t") == 0.0


def test_idle_buckets_are_dropped_and_their_number_is_capped() -> None:
    clock = Clock()
    buckets = TokenBuckets(rate_per_s=10.0, burst=20, max_buckets=1000, clock=clock)
    for i in range(50_000):  # a spray of new addresses
        buckets.take(f"10.0.{i // 256}.{i % 256}")
    assert len(buckets) == 1000  # the least recently used went first
    clock.now += 1.0  # a full refill takes 2 s: nobody is idle enough yet
    for _ in range(20):
        buckets.take("busy")
    assert buckets.take("busy") > 0
    assert len(buckets) == 1000
    clock.now += 1.5  # the sprayed buckets are full again, so they are gone; "busy" is not
    assert buckets.take("fresh") == 0.0
    assert len(buckets) == 2
    assert buckets.wait_s("10.0.195.79") == 0.0 and len(buckets) == 2  # asking creates nothing


def test_addresses_group_ipv6_by_64_and_unwrap_mapped_ipv4() -> None:
    assert address_key("203.0.113.7") == "203.0.113.7"
    assert address_key("2001:db8:1:2:aaaa::1") == address_key("2001:db8:1:2:ffff::9")
    assert address_key("2001:db8:1:2::1") != address_key("2001:db8:1:3::1")
    assert address_key("::ffff:203.0.113.7") == "203.0.113.7"
    assert address_key(None) == "unknown"


def test_the_limits_are_read_from_the_config_file(tmp_path: Path) -> None:
    path = tmp_path / "timbre.toml"
    path.write_text("[rate_limit]\nrequests_per_s = 5\nburst = 10\nunauthenticated_burst = 7\n")
    config = load_config(env={}, toml_path=path).rate_limit
    assert (config.requests_per_s, config.burst, config.unauthenticated_burst) == (5, 10, 7)
    assert load_config(env={}).rate_limit == RateLimitConfig()
    assert RateLimits(RateLimitConfig()).tenants.burst == 40
    path.write_text("[rate_limit]\nrequests_per_s = 0\n")
    with pytest.raises(ValueError, match="positive"):
        load_config(env={}, toml_path=path)
    path.write_text("[rate_limit]\nrequest_per_s = 5\n")
    with pytest.raises(ValueError, match="unknown RateLimitConfig"):
        load_config(env={}, toml_path=path)


# -- on a real server ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    thread = ServerThread(tmp_path_factory.mktemp("ratelimit"), rate_limit=LIMITS)
    yield thread.start()
    thread.stop()


_next_address = iter(range(10, 250))


def next_source() -> str:
    """A loopback source address no other test of this module uses."""
    return f"127.0.0.{next(_next_address)}"


@pytest.fixture
def source() -> str:
    return next_source()


def client(source: str) -> aiohttp.ClientSession:
    return aiohttp.ClientSession(connector=aiohttp.TCPConnector(local_addr=(source, 0)))


def new_key(server: RunningServer) -> str:
    stores = server.app[STORES]

    async def create() -> str:
        tenant = await stores.tenants.create(f"rl-{uuid.uuid4().hex[:10]}", "enterprise")
        key, _ = await stores.api_keys.create(tenant.tenant_id)
        return key

    return on_server(server, create())


def errors(server: RunningServer, code: str) -> float:
    match = re.search(rf'timbre_errors_total{{code="{code}"}} ([0-9.e+]+)', server.metrics_text)
    return float(match.group(1)) if match else 0.0


def assert_refused(resp: aiohttp.ClientResponse) -> None:
    assert resp.status == 429
    assert resp.content_type == "application/json"
    assert 1 <= int(resp.headers["Retry-After"]) <= 100


async def test_a_tenant_over_its_rate_is_refused_with_retry_after(
        server: RunningServer, source: str) -> None:
    key, other = new_key(server), new_key(server)
    auth = {"Authorization": f"Bearer {key}"}
    async with client(source) as http:
        for _ in range(BURST):
            async with http.get(server.url + "/v1/voices", headers=auth) as resp:
                assert resp.status == 200
        async with http.get(server.url + "/v1/voices", headers=auth) as resp:
            assert_refused(resp)
            error = (await resp.json())["error"]
            assert error["code"] == "rate_limited"
            assert "per second" in error["message"] and "retry in" in error["message"]
        # another tenant from the same address is not affected: the limit is per tenant
        async with http.get(server.url + "/v1/voices",
                            headers={"Authorization": f"Bearer {other}"}) as resp:
            assert resp.status == 200
        # health, readiness, metrics, the demo page and the API description are never limited
        for path in ["/healthz", "/readyz", "/metrics", "/", "/openapi.json"] * 3:
            async with http.get(server.url + path) as resp:
                assert resp.status == 200, path


async def test_opening_sessions_costs_the_same_tokens_on_every_transport(
        server: RunningServer, source: str) -> None:
    key = new_key(server)
    async with client(source) as http:
        for _ in range(BURST):
            async with http.ws_connect(server.ws_url + f"/v1/stream?token={key}") as ws:
                assert (await ws.receive_json(timeout=30))["type"] == "ready"
        with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
            await http.ws_connect(server.ws_url + f"/v1/stream?token={key}")
        assert refused.value.status == 429
        async with http.post(server.url + "/v1/webrtc/offer", json={"type": "offer", "sdp": ""},
                             headers={"Authorization": f"Bearer {key}"}) as resp:
            assert_refused(resp)
            assert (await resp.json())["error"]["code"] == "rate_limited"
        async with http.post(server.url + "/v1/audio/speech",
                             json={"model": "tts-1", "voice": "alloy", "input": "hi"},
                             headers={"Authorization": f"Bearer {key}"}) as resp:
            assert_refused(resp)  # OpenAI's shape: their SDK retries on it
            error = (await resp.json())["error"]
            assert error["code"] == "rate_limited" and error["type"] == "rate_limit_error"
        async with http.post(server.url + "/v1/text-to-speech/piper:joe",
                             json={"text": "hi"}, headers={"xi-api-key": key}) as resp:
            assert_refused(resp)  # ElevenLabs' shape
            assert (await resp.json())["detail"]["status"] == "rate_limited"
        with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
            await http.ws_connect(server.ws_url + "/v1/text-to-speech/piper:joe/stream-input",
                                  headers={"xi-api-key": key})
        assert refused.value.status == 429


async def test_bad_keys_are_bounded_per_address_before_the_authenticator(
        server: RunningServer, source: str) -> None:
    key = new_key(server)
    async with client(source) as http:
        for bad in ["tk_not-a-key", "a.b.c", ""]:
            async with http.get(server.url + "/v1/voices",
                                headers={"Authorization": f"Bearer {bad}"}) as resp:
                assert resp.status == 401
        unauthorized = errors(server, "unauthorized")
        for credential in ["tk_not-a-key", key]:  # even a good key: the address is refused first
            async with http.get(server.url + "/v1/voices",
                                headers={"Authorization": f"Bearer {credential}"}) as resp:
                assert_refused(resp)
                assert (await resp.json())["error"]["code"] == "rate_limited"
        async with http.post(server.url + "/v1/text-to-speech/piper:joe", json={"text": "hi"},
                             headers={"xi-api-key": "tk_not-a-key"}) as resp:
            assert_refused(resp)
        assert errors(server, "unauthorized") == unauthorized  # the authenticator was not asked
    async with client(next_source()) as http, http.get(  # another address still gets in
            server.url + "/v1/voices", headers={"Authorization": f"Bearer {key}"}) as resp:
        assert resp.status == 200


async def test_credentials_the_edge_cannot_see_cost_the_address(
        server: RunningServer, source: str) -> None:
    """ElevenLabs' WebSocket may bring its key in the first message: opening it counts against
    the client address (so does a refused key on their HTTP API)."""
    async with client(source) as http:
        async with http.post(server.url + "/v1/text-to-speech/piper:joe", json={"text": "hi"},
                             headers={"xi-api-key": "tk_not-a-key"}) as resp:
            assert resp.status == 401
            assert "detail" in await resp.json()  # their handler still answers the refusal
        for _ in range(BURST - 1):
            async with http.ws_connect(
                    server.ws_url + "/v1/text-to-speech/piper:joe/stream-input") as ws:
                await ws.close()
        with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
            await http.ws_connect(server.ws_url + "/v1/text-to-speech/piper:joe/stream-input")
        assert refused.value.status == 429
