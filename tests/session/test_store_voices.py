"""Voice profiles: lifecycle guards, tenant isolation, the profile limit, consent revocation."""

from __future__ import annotations

import asyncio

import pytest

from session.db import Stores
from session.ids import ConsentId, TenantId, VoiceId, new_voice_id
from session.quota_errors import InvalidState, ProfileLimit
from session.store.voices import VoiceProfile, VoiceStatus, check_relative

A, B = TenantId("t_a"), TenantId("t_b")
CONSENT = ConsentId("c_1")


async def make(stores: Stores, tenant: TenantId = A, name: str = "narrator",
               **options: object) -> VoiceProfile:
    return await stores.voices.create(tenant, name, engine="kokoro", consent_id=CONSENT,
                                      **options)  # type: ignore[arg-type]


async def test_a_new_profile_is_pending_and_reads_back(stores: Stores) -> None:
    voice_id = new_voice_id()
    files = (f"voices/{A}/{voice_id}/ref-0.wav",)
    voice = await make(stores, voice_id=voice_id, reference_files=files)
    assert (voice.voice_id, voice.status, voice.reference_files) == (voice_id, VoiceStatus.PENDING,
                                                                     files)
    assert (voice.embedding, dict(voice.engine_params), voice.error) == (None, {}, None)
    assert await stores.voices.get(A, voice_id) == voice
    assert await stores.voices.list(A) == [voice]
    assert await stores.voices.count(A) == 1


async def test_set_ready_stores_engine_params_and_embedding(stores: Stores) -> None:
    voice = await make(stores)
    style = [0.25] * 256
    ready = await stores.voices.set_ready(A, voice.voice_id, {"style": style}, [0.5, -0.5])
    assert ready is not None and ready.status is VoiceStatus.READY
    assert ready.engine_params["style"] == style and ready.embedding == (0.5, -0.5)
    assert await stores.voices.get(A, voice.voice_id) == ready
    assert await stores.voices.list(A, statuses=[VoiceStatus.PENDING]) == []


async def test_invalid_transitions_name_the_current_state(stores: Stores) -> None:
    voice = await make(stores)
    await stores.voices.set_status(A, voice.voice_id, VoiceStatus.REVOKED)
    with pytest.raises(InvalidState, match="is revoked; it cannot become ready") as caught:
        await stores.voices.set_ready(A, voice.voice_id, {}, None)
    assert caught.value.current == "revoked" and caught.value.http_status == 409
    with pytest.raises(InvalidState, match="is revoked"):
        await stores.voices.set_status(A, voice.voice_id, VoiceStatus.PENDING)
    current = await stores.voices.get(A, voice.voice_id)
    assert current is not None and current.status is VoiceStatus.REVOKED


async def test_failure_keeps_its_reason(stores: Stores) -> None:
    voice = await make(stores)
    failed = await stores.voices.set_status(A, voice.voice_id, VoiceStatus.FAILED,
                                            error="reference audio too noisy")
    assert failed is not None and failed.error == "reference audio too noisy"


async def test_only_one_of_two_racing_transitions_wins(stores: Stores) -> None:
    voice = await make(stores)
    results = await asyncio.gather(
        stores.voices.set_ready(A, voice.voice_id, {}, None),
        stores.voices.set_status(A, voice.voice_id, VoiceStatus.FAILED, error="x"),
        return_exceptions=True)
    assert sum(isinstance(r, VoiceProfile) for r in results) == 1
    assert sum(isinstance(r, InvalidState) for r in results) == 1


async def test_another_tenant_cannot_read_list_change_or_delete(stores: Stores) -> None:
    voice = await make(stores)
    assert await stores.voices.get(B, voice.voice_id) is None
    assert await stores.voices.list(B) == []
    assert await stores.voices.count(B) == 0
    assert await stores.voices.set_ready(B, voice.voice_id, {}, None) is None
    assert await stores.voices.set_status(B, voice.voice_id, VoiceStatus.REVOKED) is None
    assert await stores.voices.delete(B, voice.voice_id) is None
    assert await stores.voices.revoke_for_consent(B, CONSENT) == ()
    assert await stores.voices.get(A, voice.voice_id) == voice


async def test_delete_returns_the_record_once(stores: Stores) -> None:
    voice = await make(stores)
    assert await stores.voices.delete(A, voice.voice_id) == voice
    assert await stores.voices.delete(A, voice.voice_id) is None
    assert await stores.voices.get(A, voice.voice_id) is None


async def test_profile_limit_counts_pending_and_ready_only(stores: Stores) -> None:
    first = await make(stores, max_profiles=1)
    with pytest.raises(ProfileLimit) as caught:
        await make(stores, name="second", max_profiles=1)
    assert caught.value.http_status == 402
    assert [v.voice_id for v in await stores.voices.list(A)] == [first.voice_id]  # nothing left
    await stores.voices.set_status(A, first.voice_id, VoiceStatus.REVOKED)
    await make(stores, name="second", max_profiles=1)
    assert await make(stores, tenant=B, max_profiles=1)  # other tenants have their own count


async def test_concurrent_creates_never_exceed_the_limit(stores: Stores) -> None:
    results = await asyncio.gather(*(make(stores, name=f"v{i}", max_profiles=2) for i in range(6)),
                                   return_exceptions=True)
    created = [r for r in results if isinstance(r, VoiceProfile)]
    assert all(isinstance(r, VoiceProfile | ProfileLimit) for r in results)
    # Racing creates may all be refused (each sees the others' inserts), but never exceed the limit.
    assert len(created) == await stores.voices.count(A) <= 2


async def test_revoking_consent_revokes_its_profiles(stores: Stores) -> None:
    pending, ready = await make(stores), await make(stores, name="b")
    await stores.voices.set_ready(A, ready.voice_id, {}, None)
    other = await stores.voices.create(A, "c", engine="kokoro", consent_id=ConsentId("c_2"))
    revoked = await stores.voices.revoke_for_consent(A, CONSENT)
    assert sorted(revoked) == sorted([pending.voice_id, ready.voice_id])
    statuses = {v.voice_id: v.status for v in await stores.voices.list(A)}
    assert statuses == {pending.voice_id: VoiceStatus.REVOKED, ready.voice_id: VoiceStatus.REVOKED,
                        other.voice_id: VoiceStatus.PENDING}
    assert await stores.voices.revoke_for_consent(A, CONSENT) == ()


@pytest.mark.parametrize("path", ["/etc/passwd", "../other/ref.wav", "a/../../b.wav", "",
                                  "C:\\ref.wav"])
def test_reference_files_must_stay_under_the_data_dir(path: str) -> None:
    with pytest.raises(ValueError, match="relative paths"):
        check_relative(path)


async def test_a_profile_with_an_unsafe_file_name_is_not_created(stores: Stores) -> None:
    with pytest.raises(ValueError):
        await make(stores, reference_files=["voices/ok.wav", "../escape.wav"])
    assert await stores.voices.list(A) == []


async def test_unknown_voice_is_none(stores: Stores) -> None:
    assert await stores.voices.get(A, VoiceId("v_nope")) is None
    assert await stores.voices.set_status(A, VoiceId("v_nope"), VoiceStatus.REVOKED) is None
