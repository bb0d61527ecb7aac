"""Voice profiles as a service: create (consent + reference audio + clone job), read, use, revoke,
delete. Every call is scoped to one tenant: another tenant's voice answers exactly like an unknown
id (``UnknownVoice``, 404), so existence never leaks.

Creating a profile, in order; nothing is stored until every check has passed:

1. the form: a name, 1..``MAX_REFERENCE_FILES`` files, the consent (owner's name, their statement,
   ``accepted`` true, a purpose, an optional expiry in the future);
2. the tier's profile limit (``check_profiles``: a cheap early refusal);
3. the reference-audio checks (``session.reference_audio``, on a worker thread): a failure is a
   422/413 with its specific code and leaves no consent, profile, job or file behind;
4. consent record, reference WAVs (``DATA_DIR/tenants/<t>/voices/<id>/reference-<n>.wav``, the
   decoded mono audio; transcripts beside them), the ``pending`` profile (the store enforces the
   profile limit exactly under races), the ``clone`` job, audit entries. If any step fails the
   earlier ones are undone, and the whole step runs shielded from cancellation, so a client that
   disconnects leaves either nothing or a complete profile.

The clone job (``session.cloning``): embed the reference, choose the closest base voice, fit the
profile's conversion stage from the base saying the reference's transcript, then mark the profile
``ready`` with its ``engine_params``. Progress: reference read 0.05, embedded 0.15, base chosen
0.25, the base's rendering 0.3-0.8, fitted 0.9, checked 0.95, ready 1.0. A failed job marks the
profile ``failed`` with the job's error.

Revoking (``revoke``) revokes the consent and every profile built on it at once, cancels their
jobs, and calls ``on_revoked(tenant, voice_id)`` for each so live streams end. Deleting removes the
record, the reference audio and everything derived from it (embedding, engine parameters, files in
the voice's directory), revokes its consent and also calls ``on_revoked``. Synthesis results made
with a voice are the tenant's and are kept. The audit log records create, use, revoke and delete.
"""

from __future__ import annotations

import asyncio
import io
import logging
import unicodedata
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import numpy as np
import numpy.typing as npt
import soundfile

from inference.voice_registry import VoiceRegistry
from session.authn import Principal
from session.cloning import BaseVoices, Cloner, CloningConfig, Reference, SharedEncoder
from session.db import Stores
from session.errors import BadRequest, TimbreError, UnknownVoice
from session.files import TenantFiles, is_voice_id
from session.ids import ConsentId, JobId, TenantId, VoiceId, new_voice_id
from session.jobs import JobContext, JobRunner
from session.limits import check_profiles
from session.reference_audio import (
    ReferenceChecks,
    ReferenceReport,
    check_references,
    frame_levels_db,
    noise_floor_db,
    speech_mask,
)
from session.store.audit import AuditAction
from session.store.consents import ConsentRecord
from session.store.jobs import Job, JobError, JobKind
from session.store.voices import VoiceProfile, VoiceStatus
from session.tenancy import TenantDirectory
from session.voice_mix import MixPart, VoiceMixer
from session.voices import ResolvedVoice, VoiceCatalog, VoiceUnavailable, profile_voice

log = logging.getLogger(__name__)

_F32 = npt.NDArray[np.float32]

BASE_VOICE_ENGINE = "base_voice"
"""``VoiceProfile.engine`` of profiles that speak with a chosen stock voice (until real cloning):
the stock voice is ``engine_params["engine"]:engine_params["voice"]``."""
MAX_REFERENCE_FILES = 16
MAX_NAME_CHARS = 100
MAX_FIELD_CHARS = 2000
MAX_STATEMENT_CHARS = 10_000
MAX_TRANSCRIPT_CHARS = 10_000

OnRevoked = Callable[[TenantId, VoiceId], Awaitable[None]]


# -- errors ---------------------------------------------------------------------------------------


class ConsentRequired(TimbreError):
    """A profile needs the voice owner's accepted consent statement; something is missing."""

    code = "consent_required"
    http_status = 422
    close_code = None


# -- inputs ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ConsentForm:
    owner_name: str
    statement: str
    accepted: bool
    purpose: str
    expires_at: datetime | None = None


@dataclass(frozen=True, eq=False)
class ReferenceUpload:
    """One uploaded file. ``name`` is the client's file name: shown in messages, never a path."""

    name: str
    data: bytes
    transcript: str | None = None


@dataclass(frozen=True, eq=False)
class NewVoice:
    name: str
    files: tuple[ReferenceUpload, ...]
    consent: ConsentForm


def validate_new_voice(form: NewVoice, now: datetime) -> None:
    """Raise BadRequest or ConsentRequired naming the first problem with ``form``."""
    _text(form.name, "name", MAX_NAME_CHARS, BadRequest)
    if not form.files:
        raise BadRequest("upload at least one reference audio file ('file' parts)")
    if len(form.files) > MAX_REFERENCE_FILES:
        raise BadRequest(f"at most {MAX_REFERENCE_FILES} reference files per voice")
    for upload in form.files:
        if upload.transcript is not None and len(upload.transcript) > MAX_TRANSCRIPT_CHARS:
            raise BadRequest(f"a transcript may have at most {MAX_TRANSCRIPT_CHARS} characters")
    consent = form.consent
    _text(consent.owner_name, "consent_owner_name", MAX_FIELD_CHARS, ConsentRequired)
    _text(consent.statement, "consent_statement", MAX_STATEMENT_CHARS, ConsentRequired)
    _text(consent.purpose, "consent_purpose", MAX_FIELD_CHARS, ConsentRequired)
    if consent.accepted is not True:
        raise ConsentRequired("the voice owner must accept the consent statement "
                              "(consent_accepted=true)")
    if consent.expires_at is not None and consent.expires_at <= now:
        raise ConsentRequired("consent_expires_at is in the past")


def _text(value: str, field_name: str, limit: int, error: type[TimbreError]) -> None:
    if not value or not value.strip():
        raise error(f"'{field_name}' is required")
    if len(value) > limit:
        raise error(f"'{field_name}' may have at most {limit} characters")
    if any(unicodedata.category(ch) == "Cc" and ch not in "\n\t" for ch in value):
        raise error(f"'{field_name}' contains control characters")


def speaking_voice(profile: VoiceProfile) -> str | None:
    """The catalog voice id (``piper:joe``) a ready base-voice profile speaks with; None for a
    profile that is not ready or has no base voice."""
    if profile.status is not VoiceStatus.READY:
        return None
    engine, voice = profile.engine_params.get("engine"), profile.engine_params.get("voice")
    if not isinstance(engine, str) or not isinstance(voice, str):
        return None
    return f"{engine}:{voice}"


# -- the service ----------------------------------------------------------------------------------


async def _no_streams(tenant: TenantId, voice_id: VoiceId) -> None:
    return None


class VoiceService:
    """Voice profiles of all tenants; one per app. ``on_revoked(tenant, voice_id)`` is awaited
    after a profile was revoked or deleted (the app ends live streams using it); its errors are
    logged, never raised to the caller."""

    def __init__(self, *, stores: Stores, tenants: TenantDirectory, catalog: VoiceCatalog,
                 files: TenantFiles, runner: JobRunner, checks: ReferenceChecks | None = None,
                 encoder: SharedEncoder | None = None, base_voices: BaseVoices | None = None,
                 on_revoked: OnRevoked = _no_streams,
                 registry: VoiceRegistry | None = None,
                 cloning: CloningConfig | None = None) -> None:
        self._registry = registry or VoiceRegistry()
        self._stores = stores
        self._tenants = tenants
        self._catalog = catalog
        self._files = files
        self._runner = runner
        self.checks = checks or ReferenceChecks()
        self._encoder = encoder or SharedEncoder(runner)
        self.base_voices = base_voices or BaseVoices(catalog, runner, self._encoder)
        self._cloner = Cloner(catalog, self._encoder, self.base_voices, cloning)
        self._mixer = VoiceMixer(stores, tenants, catalog)
        self._on_revoked = on_revoked
        runner.on_failure(JobKind.CLONE, self._clone_failed)

    # -- create ------------------------------------------------------------------------------------

    async def create(self, principal: Principal, form: NewVoice) -> tuple[VoiceProfile, Job]:
        """Check and store a new profile and start its clone job; returns the ``pending``
        profile and the ``queued`` job. Raises BadRequest, ConsentRequired, ProfileLimit (402), a
        ``ReferenceAudioError`` (422; 413 for ``file_too_large``), with nothing stored."""
        tenant = principal.tenant
        validate_new_voice(form, datetime.now(UTC))
        account = await self._tenants.account(tenant)
        check_profiles(account.tier, await self._stores.voices.count(tenant))
        encoder = await self._encoder.get()
        report = await self._runner.run_blocking(
            lambda: check_references([(f.name, f.data) for f in form.files], self.checks,
                                     encoder=encoder))
        return await asyncio.shield(
            self._store_new(principal, form, report, account.tier.max_profiles))

    async def _store_new(self, principal: Principal, form: NewVoice, report: ReferenceReport,
                         max_profiles: int | None) -> tuple[VoiceProfile, Job]:
        tenant, actor = principal.tenant, principal.key_id
        voice_id = new_voice_id()
        undo: list[Callable[[], Awaitable[Any]]] = []
        try:
            consent = await self._stores.consents.create(
                tenant, owner_name=form.consent.owner_name.strip(),
                statement=form.consent.statement, accepted=True,
                purpose=form.consent.purpose.strip(), expires_at=form.consent.expires_at,
                uploaded_by=actor)
            undo.append(lambda: self._stores.consents.delete(tenant, consent.consent_id))
            undo.append(lambda: self._runner.run_blocking(self._files.remove_voice, tenant,
                                                          voice_id))
            paths = await self._runner.run_blocking(self._write_references, tenant, voice_id,
                                                    form.files, report)
            profile = await self._stores.voices.create(
                tenant, form.name.strip(), engine=BASE_VOICE_ENGINE,
                consent_id=consent.consent_id, reference_files=paths, voice_id=voice_id,
                max_profiles=max_profiles)
            undo.append(lambda: self._stores.voices.delete(tenant, voice_id))
            job = await self._stores.jobs.create(tenant, JobKind.CLONE, subject=voice_id)
            audit = self._stores.audit
            await audit.record(tenant, AuditAction.CONSENT_CREATE, consent.consent_id, actor,
                               {"voice_id": voice_id, "owner_name": consent.owner_name,
                                "purpose": consent.purpose})
            await audit.record(tenant, AuditAction.VOICE_CREATE, voice_id, actor, {
                "name": profile.name, "consent_id": consent.consent_id, "job_id": job.job_id,
                "files": len(report.files), "speech_s": round(report.speech_s, 2)})
        except BaseException:
            for step in reversed(undo):
                try:
                    await step()
                except Exception:
                    log.exception("could not undo part of a failed voice creation (%s)", voice_id)
            raise

        async def work(context: JobContext) -> Mapping[str, Any]:
            return await self._clone(context, tenant, voice_id)

        self._runner.submit(job, work)
        return profile, job

    def _write_references(self, tenant: TenantId, voice_id: VoiceId,
                          uploads: Sequence[ReferenceUpload], report: ReferenceReport) -> list[str]:
        """The report's decoded audio of each file as a 16-bit WAV (and its transcript); returns
        the paths relative to DATA_DIR. Runs on a worker thread."""
        paths: list[str] = []
        for index, (upload, file) in enumerate(zip(uploads, report.files, strict=True)):
            path = self._files.reference_path(tenant, voice_id, index)
            buffer = io.BytesIO()
            soundfile.write(buffer, report.audio[file.start:file.end], report.sample_rate_hz,
                            format="WAV", subtype="PCM_16")
            self._files.write_atomic(path, buffer.getvalue())
            paths.append(self._files.relative(path))
            if upload.transcript:
                text_path = self._files.reference_path(tenant, voice_id, index, "txt")
                self._files.write_atomic(text_path, upload.transcript.encode("utf-8"))
        return paths

    # -- the clone job -----------------------------------------------------------------------------

    async def _clone(self, context: JobContext, tenant: TenantId,
                     voice_id: VoiceId) -> Mapping[str, Any]:
        profile = await self._stores.voices.get(tenant, voice_id)
        if profile is None:
            raise UnknownVoice(f"voice {voice_id} was deleted")
        reference = await context.run_blocking(self._load_reference, profile)
        await context.progress(0.05)
        params, embedding, result = await self._cloner.clone(context, voice_id, reference)
        ready = await self._stores.voices.set_ready(tenant, voice_id, params, embedding)
        if ready is None:
            raise UnknownVoice(f"voice {voice_id} was deleted")
        return result

    def _load_reference(self, profile: VoiceProfile) -> Reference:
        """The stored references' speech (silences longer than the checks' pause trimmed), mono
        float at the references' rate, with each file's transcript. Runs on a worker thread."""
        takes: list[tuple[_F32, str | None]] = []
        rate = self.checks.sample_rate_hz
        for index, relative in enumerate(profile.reference_files):
            audio, rate = soundfile.read(self._files.resolve(relative), dtype="float32")
            speech = _speech_only(np.asarray(audio, dtype=np.float32).reshape(-1), rate,
                                  self.checks)
            text_path = self._files.reference_path(profile.tenant, profile.voice_id, index, "txt")
            text = text_path.read_text(encoding="utf-8") if text_path.is_file() else None
            takes.append((speech, text))
        speech = (np.concatenate([a for a, _ in takes]) if takes
                  else np.zeros(0, dtype=np.float32))
        if speech.size == 0:
            raise VoiceUnavailable("the stored reference audio holds no speech")
        return Reference(speech, rate, tuple(takes))

    async def _clone_failed(self, job: Job, error: JobError) -> None:
        """Failure hook: the profile a failed clone job was building becomes ``failed``."""
        if job.subject is None or not is_voice_id(job.subject):
            return
        try:
            await self._stores.voices.set_status(job.tenant, VoiceId(job.subject),
                                                 VoiceStatus.FAILED,
                                                 error=f"{error.code}: {error.message}")
        except TimbreError:
            pass  # revoked (or ready) meanwhile: that state stands

    # -- read --------------------------------------------------------------------------------------

    async def get(self, tenant: TenantId, voice_id: str) -> VoiceProfile:
        """The tenant's profile; UnknownVoice (404) for a malformed, unknown or foreign id."""
        profile = (await self._stores.voices.get(tenant, VoiceId(voice_id))
                   if is_voice_id(voice_id) else None)
        if profile is None:
            raise UnknownVoice(f"no voice {voice_id!r}")
        return profile

    async def list(self, tenant: TenantId) -> list[VoiceProfile]:
        return await self._stores.voices.list(tenant)

    async def consent(self, profile: VoiceProfile) -> ConsentRecord | None:
        return await self._stores.consents.get(profile.tenant, profile.consent_id)

    async def clone_job(self, profile: VoiceProfile) -> Job | None:
        """The most recent clone job of the profile (None once expired)."""
        for job in await self._stores.jobs.list(profile.tenant):
            if job.kind is JobKind.CLONE and job.subject == profile.voice_id:
                return job
        return None

    async def mix(self, principal: Principal, name: str,
                  parts: Sequence[MixPart]) -> VoiceProfile:
        """A new ready profile blending ``parts`` (``session.voice_mix``)."""
        _text(name, "name", MAX_NAME_CHARS, BadRequest)
        return await self._mixer.mix(principal, name.strip(), parts)

    # -- use ---------------------------------------------------------------------------------------

    async def resolve(self, tenant: TenantId, voice: str) -> ResolvedVoice:
        """The scheduler and engine voice for a stock voice id (``piper:joe``, ``joe``) or one of
        the tenant's profile ids (``voice_id`` of the result is then the profile's id). Raises
        UnknownVoice (also for another tenant's profile) or VoiceUnavailable (409: pending,
        failed, revoked, or its consent expired). Not cached: for the streaming path use
        ``session.voices.ProfileVoices``."""
        if not is_voice_id(voice):
            return self._catalog.resolve(voice)
        profile = await self.get(tenant, voice)
        if profile.status is VoiceStatus.REVOKED:
            raise VoiceUnavailable(f"voice {voice!r} is revoked: its consent was withdrawn")
        if profile.status is not VoiceStatus.READY:
            raise VoiceUnavailable(f"voice {voice!r} is {profile.status.value}"
                                   + (f" ({profile.error})" if profile.error else "")
                                   + "; it can be used once it is ready")
        consent = await self.consent(profile)
        if consent is None or not consent.valid_at(datetime.now(UTC)):
            raise VoiceUnavailable(f"the consent for voice {voice!r} has expired")
        return profile_voice(self._catalog, self._registry, profile)

    async def record_use(self, tenant: TenantId, voice_id: str, actor: str,
                         details: Mapping[str, Any]) -> None:
        """Audit one use of a profile (a stream opened with it, a synthesis job); stock voices
        are not audited."""
        if is_voice_id(voice_id):
            await self._stores.audit.record(tenant, AuditAction.VOICE_USE, voice_id, actor,
                                            details)

    # -- revoke and delete -------------------------------------------------------------------------

    async def revoke(self, principal: Principal, voice_id: str) -> VoiceProfile:
        """Withdraw the consent behind a profile: the consent and every profile built on it are
        revoked at once, their jobs stop, live streams are ended (``on_revoked``). Idempotent;
        returns the revoked profile. UnknownVoice as ``get``."""
        tenant = principal.tenant
        profile = await self.get(tenant, voice_id)
        await self._revoke_consent(principal, profile.consent_id)
        return await self.get(tenant, voice_id)

    async def _revoke_consent(self, principal: Principal, consent_id: ConsentId) -> None:
        """Revoke a consent, every profile built on it and every mix that uses one of them
        (``session.voice_mix``: a mix lists the consents it depends on)."""
        tenant, actor = principal.tenant, principal.key_id
        consent = await self._stores.consents.revoke(tenant, consent_id)
        revoked = await self._stores.voices.revoke_for_consent(tenant, consent_id)
        if revoked:
            await self._stores.audit.record(tenant, AuditAction.CONSENT_REVOKE, consent_id, actor,
                                            {"voice_ids": list(revoked)})
        for revoked_id in revoked:
            await self._stores.audit.record(tenant, AuditAction.VOICE_REVOKE, revoked_id, actor,
                                            {"consent_id": consent_id})
            await self._stop_using(tenant, revoked_id,
                                   JobError("voice_revoked", "the voice's consent was revoked"))
        if consent is None:
            log.warning("a profile points to a missing consent %s", consent_id)
        for mixed in await self._stores.voices.list(tenant, [VoiceStatus.READY]):
            if consent_id in (mixed.engine_params.get("source_consents") or ()):
                await self._revoke_consent(principal, mixed.consent_id)

    async def delete(self, principal: Principal, voice_id: str) -> VoiceProfile:
        """Delete a profile, its reference audio and derived data; its consent is revoked (and
        kept, with the audit log, as the record of what happened). Returns the deleted profile.
        UnknownVoice as ``get``."""
        tenant, actor = principal.tenant, principal.key_id
        if not is_voice_id(voice_id):
            raise UnknownVoice(f"no voice {voice_id!r}")
        profile = await self._stores.voices.delete(tenant, VoiceId(voice_id))
        if profile is None:
            raise UnknownVoice(f"no voice {voice_id!r}")
        await self._stop_using(tenant, profile.voice_id,
                               JobError("voice_deleted", "the voice was deleted"))
        await self._runner.run_blocking(self._files.remove_voice, tenant, profile.voice_id)
        await self._revoke_consent(principal, profile.consent_id)
        await self._stores.audit.record(tenant, AuditAction.VOICE_DELETE, profile.voice_id, actor,
                                        {"name": profile.name, "consent_id": profile.consent_id,
                                         "files": len(profile.reference_files)})
        return profile

    async def _stop_using(self, tenant: TenantId, voice_id: VoiceId, reason: JobError) -> None:
        for job_id in self._runner.running_for(voice_id):
            self._runner.cancel(JobId(job_id), reason)
        try:
            await self._on_revoked(tenant, voice_id)
        except Exception:
            log.exception("ending the streams of revoked voice %s failed", voice_id)


def _speech_only(audio: _F32, rate: int, checks: ReferenceChecks) -> _F32:
    """``audio`` without its silences (as the reference checks measure speech)."""
    frame = round(checks.frame_s * rate)
    levels = frame_levels_db(audio, rate, checks.frame_s)
    if levels.size == 0:
        return audio
    mask = speech_mask(levels, noise_floor_db(levels, checks), checks)
    keep = np.repeat(mask, frame)
    speech = audio[:keep.size][keep]
    return speech if speech.size >= rate else audio  # too little found: embed it all


