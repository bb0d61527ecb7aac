"""``SpeechRequest.pitch`` / ``.language`` (the one-shot path of the HTTP APIs and telephony) reach
the context that speaks them and the engine, and a language the voice cannot speak is refused
before the context exists or any of the month's characters are counted. Real scheduler thread
with the fake engine (it speaks English only, like Piper ``joe``), a real tenant directory and
stream quota."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator

import pytest

from inference.engine import SynthesisUnit
from inference.scheduler import Scheduler, SchedulerConfig
from session.db import Stores
from session.languages import UnsupportedLanguage
from session.limits import LocalStreamLimiter
from session.session import SessionConfig
from session.speech import Speech, SpeechRequest
from session.tenancy import StreamQuota, TenantDirectory
from session.tiers import TierTable
from session.voices import VoiceCatalog
from tests.inference.fake_engine import FakeEngine


@pytest.fixture
def engine() -> Iterator[tuple[FakeEngine, VoiceCatalog]]:
    fake = FakeEngine(prefill_cost_s=0, decode_cost_s=0)
    scheduler = Scheduler(fake, SchedulerConfig(max_lead_s=100, admission_utilization=None))
    scheduler.start()
    assert scheduler.ready.wait(5)
    catalog = VoiceCatalog()
    catalog.add_engine(scheduler)
    yield fake, catalog
    scheduler.stop()


@pytest.fixture
async def quota(stores: Stores) -> AsyncIterator[StreamQuota]:
    tenant = await stores.tenants.create("acme", "pro")
    directory = TenantDirectory(stores.tenants, stores.usage, TierTable())
    quota = await StreamQuota.open(directory, LocalStreamLimiter(), tenant.tenant_id, "pcm_s16le")
    yield quota
    await quota.close()


CONFIG = SessionConfig(default_voice="fake:v")


def units_of(fake: FakeEngine, text: str) -> list[SynthesisUnit]:
    """The units the engine was asked to speak ``text`` with (it also speaks its calibration)."""
    return [item.unit for plan in fake.plans for item in plan.prefills if item.unit.text == text]


async def test_pitch_and_language_reach_the_context_and_the_engine(
        engine: tuple[FakeEngine, VoiceCatalog], quota: StreamQuota) -> None:
    fake, catalog = engine
    request = SpeechRequest("hello there", catalog.resolve("fake:v"), pitch=-2.0,
                            language="EN_us")
    async with Speech(request, catalog, CONFIG, quota) as speech:
        assert speech.context is not None
        settings = speech.context.settings
        assert (settings.pitch, settings.language) == (-2.0, "en-us")  # normalised
        chunks = [chunk async for chunk in speech]
    assert chunks and speech.finished is not None and speech.finished.reason == "completed"
    assert {unit.language for unit in units_of(fake, "hello there")} == {"en-us"}


async def test_defaults_leave_the_voice_as_it_is(engine: tuple[FakeEngine, VoiceCatalog],
                                                 quota: StreamQuota) -> None:
    _, catalog = engine
    async with Speech(SpeechRequest("hi", catalog.resolve("fake:v")), catalog, CONFIG,
                      quota) as speech:
        assert speech.context is not None
        assert (speech.context.settings.pitch, speech.context.settings.language) == (0.0, None)


async def test_unsupported_language_is_refused_before_anything_starts(
        engine: tuple[FakeEngine, VoiceCatalog], quota: StreamQuota) -> None:
    fake, catalog = engine
    speech = Speech(SpeechRequest("bonjour", catalog.resolve("fake:v"), language="fr"), catalog,
                    CONFIG, quota)
    with pytest.raises(UnsupportedLanguage) as info:
        speech.start()
    assert info.value.code == "unsupported_language" and info.value.http_status == 400
    assert "'fr'" in info.value.message and "en" in info.value.message
    assert speech.context is None
    quota.allow_text(quota.account.tier.characters_per_month or 0)  # nothing was counted
    await asyncio.sleep(0.05)
    assert units_of(fake, "bonjour") == []
