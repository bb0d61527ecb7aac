"""Tenants on the streaming path, over real sockets against a server with its embedded SecantusDB:
tier limits (concurrent streams, characters, formats), metering, profile voices, tenant isolation
and revocation of a live voice."""

from __future__ import annotations

import asyncio
import json

import aiohttp
import pytest

from realtime.client import StreamClient
from session.db import Stores, open_database
from session.ids import TenantId
from session.store.voices import VoiceStatus
from tests.server import RunningServer, ServerThread


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory):
    thread = ServerThread(tmp_path_factory.mktemp("tenancy"))
    yield thread.start()
    thread.stop()


@pytest.fixture
async def stores(server: RunningServer):
    db = open_database(server.mongo_url)
    yield Stores.over(db)
    db.client.close()


async def new_tenant(stores: Stores, name: str, tier: str) -> tuple[TenantId, str]:
    tenant = await stores.tenants.create(name, tier)
    key, _ = await stores.api_keys.create(tenant.tenant_id)
    return tenant.tenant_id, key


async def ready_profile(stores: Stores, tenant: TenantId, name: str = "mine") -> str:
    consent = await stores.consents.create(
        tenant, owner_name="Ada", statement="I agree to my voice being cloned.", accepted=True,
        purpose="tests", expires_at=None, uploaded_by="test")
    profile = await stores.voices.create(tenant, name, engine="piper", consent_id=consent.consent_id)
    await stores.voices.set_ready(tenant, profile.voice_id, {"engine": "piper", "voice": "joe"}, None)
    return str(profile.voice_id)


async def refusal(server: RunningServer, key: str, query: str = "") -> tuple[str, int | None]:
    async with aiohttp.ClientSession() as http, http.ws_connect(
            server.ws_url + "/v1/stream" + query,
            headers={"Authorization": f"Bearer {key}"}) as ws:
        first = await ws.receive(timeout=30)
        closing = await ws.receive(timeout=30)
        message = json.loads(first.data) if first.type == aiohttp.WSMsgType.TEXT else {}
        return message.get("code", message.get("type")), ws.close_code or closing.data


async def test_free_tier_gets_one_concurrent_stream(server: RunningServer, stores: Stores) -> None:
    _, key = await new_tenant(stores, "solo", "free")
    async with await StreamClient.connect(server.ws_url, key):
        code, close = await refusal(server, key)
        assert (code, close) == ("too_many_streams", 4429)
    async with await StreamClient.connect(server.ws_url, key) as again:  # the slot came back
        assert again.ready.voice == "piper:joe"


async def test_characters_are_metered_and_the_allowance_ends_the_stream(
    server: RunningServer, stores: Stores,
) -> None:
    tenant, key = await new_tenant(stores, "talker", "free")
    text = "Metering counts every character that is spoken."
    async with await StreamClient.connect(server.ws_url, key) as client:
        await client.send_text("a", text)
        await client.close_context("a")
        record = await client.wait_done("a", timeout_s=60)
    assert record.done.characters == len(text)
    for _ in range(100):
        usage = await stores.usage.get(tenant)
        if usage.characters:
            break
        await asyncio.sleep(0.05)
    # metered: the characters of the units spoken (whitespace between units is not billed)
    assert len(text) - text.count(" ") <= usage.characters <= len(text)
    assert usage.audio_s > 1.0
    await stores.usage.add(tenant, 10_000)  # the month's 10,000 are now used up
    await asyncio.sleep(5.1)  # the server's cached usage of this tenant is at most 5 s old
    code, close = await refusal(server, key)
    assert (code, close) == ("quota_exceeded", 4402)


async def test_a_profile_speaks_for_its_tenant_only(server: RunningServer, stores: Stores) -> None:
    owner, owner_key = await new_tenant(stores, "owner", "pro")
    _, other_key = await new_tenant(stores, "other", "pro")
    voice = await ready_profile(stores, owner)
    async with await StreamClient.connect(server.ws_url, owner_key, voice=voice) as client:
        assert client.ready.voice == voice
        await client.send_text("a", "This is my own voice profile speaking.")
        await client.close_context("a")
        record = await client.wait_done("a", timeout_s=60)
    assert record.done.reason == "completed" and record.audio_s > 1.0
    code, close = await refusal(server, other_key, f"?voice={voice}")
    assert (code, close) == ("unknown_voice", 4400)  # another tenant's profile does not exist
    async with await StreamClient.connect(server.ws_url, other_key) as client:
        await client.send_text("b", "Borrowing a voice.", voice=voice)
        for _ in range(200):
            if client.context("b").errors:
                break
            await asyncio.sleep(0.02)
        assert client.context("b").errors[0].code == "unknown_voice"


async def test_revoking_a_voice_ends_its_live_contexts(server: RunningServer,
                                                       stores: Stores) -> None:
    tenant, key = await new_tenant(stores, "revoker", "pro")
    voice = await ready_profile(stores, tenant)
    long_text = " ".join(["A long passage that is still being spoken when consent goes."] * 8)
    async with await StreamClient.connect(server.ws_url, key, voice=voice) as client:
        await client.send_text("a", long_text)
        await client.close_context("a")
        record = client.context("a")
        for _ in range(500):
            if record.frames:
                break
            await asyncio.sleep(0.01)
        await stores.voices.set_status(tenant, voice, VoiceStatus.REVOKED)
        ended = await asyncio.get_running_loop().run_in_executor(
            None, _end_live, server, tenant, voice)
        assert ended == 1
        done = await client.wait_done("a", timeout_s=10)
    assert done.done.reason == "cancelled"
    assert done.errors and done.errors[0].code == "voice_unavailable"


def _end_live(server: RunningServer, tenant: TenantId, voice: str) -> int:
    """What the revoke endpoint does after updating the store, run on the server's own loop."""
    future = asyncio.run_coroutine_threadsafe(_on_server(server, tenant, voice), server.loop)
    return future.result(10)


async def _on_server(server: RunningServer, tenant: TenantId, voice: str) -> int:
    from realtime.appkeys import LIVE, PROFILES

    server.app[PROFILES].forget(tenant, voice)
    return server.app[LIVE].end_all(tenant, voice, f"voice {voice} was revoked")
