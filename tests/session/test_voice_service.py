"""Voice profiles as a service, against a real SecantusDB, the real Piper engine behind a scheduler
and the real speaker encoder: creation (consent, references on disk, clone job to ``ready``),
refusals that leave nothing behind, the profile limit, revocation, deletion and tenant isolation."""

from __future__ import annotations

import asyncio
import io
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest
import soundfile

from inference.piper import PiperEngine
from inference.scheduler import Scheduler
from inference.speaker import SpeakerEncoder
from session.authn import Principal
from session.cloning import BaseVoices, CloningConfig, SharedEncoder
from session.db import Stores
from session.errors import UnknownVoice
from session.files import TenantFiles, UnsafePath
from session.ids import JobId, TenantId, VoiceId
from session.jobs import JobRunner, JobsConfig
from session.quota_errors import ProfileLimit
from session.reference_audio import TooShort, UndecodableAudio
from session.store._common import Database
from session.store.audit import AuditAction
from session.store.jobs import JobKind, JobStatus
from session.store.voices import VoiceStatus
from session.tenancy import TenantDirectory
from session.tiers import TierTable
from session.voice_service import (
    BASE_VOICE_ENGINE,
    ConsentForm,
    ConsentRequired,
    NewVoice,
    ReferenceUpload,
    VoiceService,
    speaking_voice,
)
from session.voices import VoiceCatalog, VoiceUnavailable
from tests.inference.fake_engine import FakeEngine

SENTENCES = (
    "The quick brown fox jumps over the lazy dog near the river bank.",
    "Please call Stella and ask her to bring these things with her from the store.",
    "Six spoons of fresh snow peas, five thick slabs of blue cheese, and a snack for Bob.",
    "We also need a small plastic snake and a big toy frog for the kids.",
)
"""About 17 s of speech from the stock voice: over the 10 s minimum."""


def reference_speech(cache_dir: Path, sentences: tuple[str, ...] = SENTENCES) -> bytes:
    """Generated speech (the stock Piper voice, 22.05 kHz) as WAV bytes, peak-normalised."""
    engine = PiperEngine(cache_dir=cache_dir)
    audio = np.concatenate([engine.synthesize_one_pass(s) for s in sentences])
    audio = (0.9 * audio / np.abs(audio).max()).astype(np.float32)
    buffer = io.BytesIO()
    soundfile.write(buffer, audio, engine.sample_rate_hz, format="WAV", subtype="PCM_16")
    return buffer.getvalue()


def consent(**changes: object) -> ConsentForm:
    values: dict[str, object] = {
        "owner_name": "Ada Lovelace", "statement": "I agree that my voice is cloned for tests.",
        "accepted": True, "purpose": "automated tests", "expires_at": None}
    values.update(changes)
    return ConsentForm(**values)  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def piper_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("piper")


@pytest.fixture(scope="module")
def speech(piper_cache: Path) -> bytes:
    return reference_speech(piper_cache)


@pytest.fixture(scope="module")
def scheduler(piper_cache: Path) -> Iterator[Scheduler]:
    scheduler = Scheduler(PiperEngine(cache_dir=piper_cache))
    scheduler.start()
    assert scheduler.ready.wait(120), "piper did not warm up"
    yield scheduler
    scheduler.stop()


@pytest.fixture(scope="module")
def encoder() -> SpeakerEncoder:
    return SpeakerEncoder()


@dataclass
class Env:
    stores: Stores
    service: VoiceService
    runner: JobRunner
    files: TenantFiles
    data_dir: Path
    scheduler: Scheduler
    revoked: list[tuple[TenantId, VoiceId]] = field(default_factory=list)

    async def tenant(self, name: str, tier: str = "pro") -> Principal:
        record = await self.stores.tenants.create(name, tier)
        return Principal(record.tenant_id, f"key_{name}")

    def voice(self, files: tuple[bytes, ...], name: str = "Narrator",
              **consent_changes: object) -> NewVoice:
        uploads = tuple(ReferenceUpload(f"take-{i}.wav", data, f"transcript {i}")
                        for i, data in enumerate(files))
        return NewVoice(name, uploads, consent(**consent_changes))

    async def settle(self, job_id: JobId) -> None:
        await asyncio.wait_for(self.runner.wait(job_id), 60)


def build_service(stores: Stores, data_dir: Path, catalog: VoiceCatalog, encoder: SpeakerEncoder,
                  revoked: list[tuple[TenantId, VoiceId]], base_wait_s: float = 120.0,
                  cloning: CloningConfig | None = None,
                  ) -> tuple[VoiceService, JobRunner, TenantFiles]:
    runner = JobRunner(stores.jobs, JobsConfig(progress_interval_s=0.0))
    files = TenantFiles(data_dir)
    shared = SharedEncoder(runner, lambda: encoder)

    async def on_revoked(tenant: TenantId, voice_id: VoiceId) -> None:
        revoked.append((tenant, voice_id))

    service = VoiceService(
        stores=stores, tenants=TenantDirectory(stores.tenants, stores.usage, TierTable()),
        catalog=catalog, files=files, runner=runner, encoder=shared,
        base_voices=BaseVoices(catalog, runner, shared, engine_wait_s=base_wait_s),
        on_revoked=on_revoked, cloning=cloning)
    return service, runner, files


@pytest.fixture
async def env(stores: Stores, tmp_path: Path, scheduler: Scheduler,
              encoder: SpeakerEncoder) -> AsyncIterator[Env]:
    catalog = VoiceCatalog()
    catalog.add_engine(scheduler)
    revoked: list[tuple[TenantId, VoiceId]] = []
    service, runner, files = build_service(stores, tmp_path, catalog, encoder, revoked)
    yield Env(stores, service, runner, files, tmp_path, scheduler, revoked)
    await runner.close()


async def nothing_stored(db: Database, data_dir: Path) -> None:
    for collection in ("consents", "voices", "jobs", "audit"):
        assert await db[collection].count_documents({}) == 0, collection
    assert not any(p.is_file() for p in (data_dir / "tenants").rglob("*")) if (
        data_dir / "tenants").exists() else True


# -- creating -------------------------------------------------------------------------------------


async def test_a_new_voice_is_stored_then_cloned_to_ready(env: Env, speech: bytes) -> None:
    principal = await env.tenant("acme")
    expires = datetime.now(UTC) + timedelta(days=365)
    profile, job = await env.service.create(principal, env.voice((speech,), expires_at=expires))

    assert (profile.status, profile.engine, profile.name) == (VoiceStatus.PENDING,
                                                              BASE_VOICE_ENGINE, "Narrator")
    assert (job.kind, job.subject) == (JobKind.CLONE, profile.voice_id)
    record = await env.stores.consents.get(principal.tenant, profile.consent_id)
    assert record is not None
    assert (record.owner_name, record.accepted, record.purpose, record.uploaded_by) == (
        "Ada Lovelace", True, "automated tests", "key_acme")
    assert record.expires_at is not None and abs(record.expires_at - expires).total_seconds() < 1

    folder = env.data_dir / "tenants" / principal.tenant / "voices" / profile.voice_id
    assert profile.reference_files == (
        f"tenants/{principal.tenant}/voices/{profile.voice_id}/reference-0.wav",)
    stored, rate = soundfile.read(folder / "reference-0.wav")
    assert rate == 16000 and stored.ndim == 1 and len(stored) / rate > 15
    assert (folder / "reference-0.txt").read_text() == "transcript 0"

    await env.settle(job.job_id)
    done = await env.stores.jobs.get(principal.tenant, job.job_id)
    assert done is not None and done.status is JobStatus.SUCCEEDED, done
    ready = await env.service.get(principal.tenant, profile.voice_id)
    assert ready.status is VoiceStatus.READY
    assert speaking_voice(ready) == "piper:joe"
    assert ready.embedding is not None and len(ready.embedding) == 256
    # the reference is the stock voice itself, so it is very close to it
    assert ready.engine_params["base_similarity"] > 0.85
    assert done.result is not None and done.result["base_voice"] == "piper:joe"

    resolved = await env.service.resolve(principal.tenant, profile.voice_id)
    assert (resolved.voice_id, resolved.engine_voice) == (profile.voice_id, "joe")
    assert resolved.scheduler is env.scheduler
    actions = [e.action for e in await env.stores.audit.list(principal.tenant)]
    assert AuditAction.VOICE_CREATE in actions and AuditAction.CONSENT_CREATE in actions


async def test_progress_is_reported_in_steps(env: Env, speech: bytes) -> None:
    principal = await env.tenant("steps")
    _, job = await env.service.create(principal, env.voice((speech,)))
    seen: set[float] = set()
    while True:
        current = await env.stores.jobs.get(principal.tenant, job.job_id)
        assert current is not None
        seen.add(current.progress)
        if current.status.finished:
            break
        await asyncio.sleep(0.005)
    assert current.status is JobStatus.SUCCEEDED
    # steps between reading the reference and ready, each reported (session.cloning)
    assert all(0.0 <= p <= 1.0 for p in seen) and 1.0 in seen and len(seen - {0.0, 1.0}) >= 3


async def test_a_failed_reference_check_stores_nothing(env: Env, speech: bytes,
                                                       mongo_db: Database) -> None:
    principal = await env.tenant("short")
    audio, rate = soundfile.read(io.BytesIO(speech), dtype="float32")
    short = io.BytesIO()
    soundfile.write(short, audio[: 4 * rate], rate, format="WAV")
    with pytest.raises(TooShort) as caught:
        await env.service.create(principal, env.voice((short.getvalue(),)))
    assert (caught.value.http_status, caught.value.code) == (422, "too_short")
    with pytest.raises(UndecodableAudio):
        await env.service.create(principal, env.voice((speech, b"not audio at all")))
    await nothing_stored(mongo_db, env.data_dir)


@pytest.mark.parametrize(("changes", "message"), [
    ({"accepted": False}, "accept the consent statement"),
    ({"owner_name": " "}, "consent_owner_name"),
    ({"statement": ""}, "consent_statement"),
    ({"purpose": ""}, "consent_purpose"),
    ({"expires_at": datetime(2020, 1, 1, tzinfo=UTC)}, "in the past"),
])
async def test_consent_must_be_complete_and_accepted(env: Env, speech: bytes, mongo_db: Database,
                                                     changes: dict[str, object],
                                                     message: str) -> None:
    principal = await env.tenant("careless")
    with pytest.raises(ConsentRequired, match=message) as caught:
        await env.service.create(principal, env.voice((speech,), **changes))
    assert caught.value.http_status == 422
    await nothing_stored(mongo_db, env.data_dir)


async def test_the_tier_profile_limit_is_enforced(env: Env, speech: bytes,
                                                  mongo_db: Database) -> None:
    principal = await env.tenant("small", tier="free")  # one profile
    first, job = await env.service.create(principal, env.voice((speech,)))
    with pytest.raises(ProfileLimit) as caught:
        await env.service.create(principal, env.voice((speech,), name="Second"))
    assert caught.value.http_status == 402
    assert await mongo_db["consents"].count_documents({}) == 1
    await env.settle(job.job_id)
    await env.service.revoke(principal, first.voice_id)  # revoked profiles do not count
    second, _ = await env.service.create(principal, env.voice((speech,), name="Second"))
    assert second.status is VoiceStatus.PENDING


async def test_concurrent_creates_never_exceed_the_limit_nor_leave_leftovers(
        env: Env, speech: bytes, mongo_db: Database) -> None:
    principal = await env.tenant("racer", tier="free")
    results = await asyncio.gather(
        *(env.service.create(principal, env.voice((speech,), name=f"V{i}")) for i in range(3)),
        return_exceptions=True)
    created = [r for r in results if not isinstance(r, BaseException)]
    refused = [r for r in results if isinstance(r, BaseException)]
    assert len(created) <= 1 and all(isinstance(r, ProfileLimit) for r in refused)
    for profile, job in created:
        await env.settle(job.job_id)
    assert await mongo_db["voices"].count_documents({}) == len(created)
    assert await mongo_db["consents"].count_documents({}) == len(created)
    assert await mongo_db["jobs"].count_documents({}) == len(created)
    voices_dir = env.data_dir / "tenants" / principal.tenant / "voices"
    on_disk = list(voices_dir.iterdir()) if voices_dir.exists() else []
    assert sorted(p.name for p in on_disk) == sorted(p.voice_id for p, _ in created)


# -- the clone job failing ------------------------------------------------------------------------


async def test_a_failed_clone_job_marks_the_profile_failed(stores: Stores, tmp_path: Path,
                                                           speech: bytes,
                                                           encoder: SpeakerEncoder) -> None:
    revoked: list[tuple[TenantId, VoiceId]] = []
    service, runner, _ = build_service(stores, tmp_path, VoiceCatalog(), encoder, revoked)
    tenant = await stores.tenants.create("nobase", "pro")
    principal = Principal(tenant.tenant_id, "key")
    form = NewVoice("X", (ReferenceUpload("a.wav", speech),), consent())
    profile, job = await service.create(principal, form)
    await asyncio.wait_for(runner.wait(job.job_id), 60)
    await runner.close()
    failed = await stores.jobs.get(tenant.tenant_id, job.job_id)
    assert failed is not None and failed.error is not None
    assert (failed.status, failed.error.code) == (JobStatus.FAILED, "unknown_voice")
    broken = await service.get(tenant.tenant_id, profile.voice_id)
    assert broken.status is VoiceStatus.FAILED
    assert broken.error is not None and broken.error.startswith("unknown_voice: ")
    with pytest.raises(VoiceUnavailable, match="failed"):
        await service.resolve(tenant.tenant_id, profile.voice_id)


async def test_deleting_a_pending_voice_stops_its_clone_job(stores: Stores, tmp_path: Path,
                                                            speech: bytes,
                                                            encoder: SpeakerEncoder) -> None:
    catalog = VoiceCatalog()
    catalog.add_engine(Scheduler(FakeEngine()))  # never started: the job waits for it
    revoked: list[tuple[TenantId, VoiceId]] = []
    service, runner, _ = build_service(stores, tmp_path, catalog, encoder, revoked)
    tenant = await stores.tenants.create("hasty", "pro")
    principal = Principal(tenant.tenant_id, "key")
    profile, job = await service.create(
        principal, NewVoice("X", (ReferenceUpload("a.wav", speech),), consent()))
    await asyncio.sleep(0.3)
    await service.delete(principal, profile.voice_id)
    await asyncio.wait_for(runner.wait(job.job_id), 10)
    stopped = await stores.jobs.get(tenant.tenant_id, job.job_id)
    assert stopped is not None and stopped.error is not None
    assert (stopped.status, stopped.error.code) == (JobStatus.FAILED, "voice_deleted")
    assert revoked == [(tenant.tenant_id, profile.voice_id)]
    await runner.close()


# -- revoking and deleting --------------------------------------------------------------------------


async def test_revoking_disables_the_voice_at_once_and_ends_its_streams(
        env: Env, speech: bytes) -> None:
    principal = await env.tenant("revoker")
    profile, job = await env.service.create(principal, env.voice((speech,)))
    await env.settle(job.job_id)
    revoked = await env.service.revoke(principal, profile.voice_id)
    assert revoked.status is VoiceStatus.REVOKED
    assert env.revoked == [(principal.tenant, profile.voice_id)]
    record = await env.stores.consents.get(principal.tenant, profile.consent_id)
    assert record is not None and record.revoked_at is not None
    with pytest.raises(VoiceUnavailable, match="revoked"):
        await env.service.resolve(principal.tenant, profile.voice_id)
    again = await env.service.revoke(principal, profile.voice_id)  # idempotent
    assert again.status is VoiceStatus.REVOKED and len(env.revoked) == 1
    entries = await env.stores.audit.list(principal.tenant, subject=profile.voice_id)
    assert [e.action for e in entries].count(AuditAction.VOICE_REVOKE) == 1
    assert entries[0].actor == "key_revoker"


async def test_deleting_removes_the_reference_audio_and_derived_data(env: Env,
                                                                     speech: bytes) -> None:
    principal = await env.tenant("deleter")
    profile, job = await env.service.create(principal, env.voice((speech, speech)))
    await env.settle(job.job_id)
    folder = env.files.voice_dir(principal.tenant, profile.voice_id)
    assert sorted(p.name for p in folder.iterdir()) == [
        "reference-0.txt", "reference-0.wav", "reference-1.txt", "reference-1.wav"]
    deleted = await env.service.delete(principal, profile.voice_id)
    assert deleted.voice_id == profile.voice_id
    assert not folder.exists()
    assert await env.stores.voices.get(principal.tenant, profile.voice_id) is None
    with pytest.raises(UnknownVoice):
        await env.service.get(principal.tenant, profile.voice_id)
    with pytest.raises(UnknownVoice):
        await env.service.delete(principal, profile.voice_id)
    record = await env.stores.consents.get(principal.tenant, profile.consent_id)
    assert record is not None and record.revoked_at is not None  # kept as the record
    assert env.revoked == [(principal.tenant, profile.voice_id)]
    entries = await env.stores.audit.list(principal.tenant, subject=profile.voice_id)
    assert entries[0].action is AuditAction.VOICE_DELETE


async def test_the_audit_log_records_use(env: Env, speech: bytes) -> None:
    principal = await env.tenant("user")
    await env.service.record_use(principal.tenant, "piper:joe", "key_user", {})  # stock: no entry
    await env.service.record_use(principal.tenant, "v_0123456789abcdef", "key_user",
                                 {"via": "stream"})
    (entry,) = await env.stores.audit.list(principal.tenant)
    assert (entry.action, entry.subject, dict(entry.details)) == (
        AuditAction.VOICE_USE, "v_0123456789abcdef", {"via": "stream"})


# -- isolation ------------------------------------------------------------------------------------


async def test_another_tenants_voice_is_unknown_everywhere(env: Env, speech: bytes) -> None:
    owner = await env.tenant("owner")
    other = await env.tenant("other")
    profile, job = await env.service.create(owner, env.voice((speech,)))
    await env.settle(job.job_id)
    assert await env.service.list(other.tenant) == []
    for attempt in (env.service.get(other.tenant, profile.voice_id),
                    env.service.resolve(other.tenant, profile.voice_id),
                    env.service.revoke(other, profile.voice_id),
                    env.service.delete(other, profile.voice_id)):
        with pytest.raises(UnknownVoice) as caught:
            await attempt
        assert caught.value.http_status == 404
    survivor = await env.service.get(owner.tenant, profile.voice_id)
    assert survivor.status is VoiceStatus.READY and env.revoked == []
    assert env.files.voice_dir(owner.tenant, profile.voice_id).is_dir()
    for bad in ("", "../../etc", "v_NOTHEX", "piper:joe"):
        with pytest.raises(UnknownVoice):
            await env.service.get(owner.tenant, bad)


# -- where the files live (session.files) -----------------------------------------------------------


def test_paths_come_from_ids_only_and_stay_under_the_data_dir(tmp_path: Path) -> None:
    files = TenantFiles(tmp_path)
    voice = VoiceId("v_0123456789abcdef")
    path = files.reference_path(TenantId("t_a"), voice, 2)
    assert path == (tmp_path / "tenants/t_a/voices/v_0123456789abcdef/reference-2.wav").resolve()
    assert files.relative(path) == "tenants/t_a/voices/v_0123456789abcdef/reference-2.wav"
    assert files.resolve(files.relative(path)) == path
    for tenant, voice_id in (("../x", voice), ("t_a/..", voice), ("", voice),
                             ("t_a", "v_../../etc"), ("t_a", "v_0123456789ABCDEF")):
        with pytest.raises(UnsafePath):
            files.voice_dir(TenantId(tenant), VoiceId(voice_id))
    for relative in ("/etc/passwd", "../outside", "tenants/../../x", "a\\b"):
        with pytest.raises(UnsafePath):
            files.resolve(relative)
    with pytest.raises(UnsafePath):
        files.job_path(TenantId("t_a"), JobId("job_0123456789abcdef"), "exe")


def test_a_symlink_cannot_lead_out_of_the_data_dir(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    data = tmp_path / "data"
    (data / "tenants").mkdir(parents=True)
    (data / "tenants" / "t_a").symlink_to(outside)
    with pytest.raises(UnsafePath, match="outside the data directory"):
        TenantFiles(data).voice_dir(TenantId("t_a"), VoiceId("v_0123456789abcdef"))


def test_writes_are_atomic(tmp_path: Path) -> None:
    files = TenantFiles(tmp_path)
    path = files.reference_path(TenantId("t_a"), VoiceId("v_0123456789abcdef"), 0, "txt")
    files.write_atomic(path, b"first")
    with pytest.raises(RuntimeError), files.open_atomic(path) as f:
        f.write(b"half of a second version")
        raise RuntimeError("crash mid-write")
    assert path.read_bytes() == b"first"
    assert [p.name for p in path.parent.iterdir()] == ["reference-0.txt"]  # no temporary left
    assert files.remove_voice(TenantId("t_a"), VoiceId("v_0123456789abcdef"))
    assert not path.parent.exists()
    assert not files.remove_voice(TenantId("t_a"), VoiceId("v_0123456789abcdef"))
