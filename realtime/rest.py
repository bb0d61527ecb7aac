"""The REST API: voice profiles, jobs, long-text synthesis, usage, and the API's own description.

Handlers stay thin: they read the request, call ``VoiceService`` / ``SynthesisService`` (which hold
every rule), and serialise the answer. Every error is ``{"error": {"code", "message"}}`` with the
HTTP status of its ``TimbreError`` class; an unexpected exception is logged and answered as a 500
``internal_error`` without details. Every lookup is scoped to the caller's tenant (``PRINCIPAL``,
set by the auth middleware), so another tenant's ids answer 404 exactly like unknown ones.

Routes (``add_routes``)::

    POST   /v1/voices                 multipart upload -> 202 {voice, job}       voices:write
    GET    /v1/voices                 stock voices + the tenant's profiles         voices:read
    GET    /v1/voices/{voice_id}      one profile, its consent and clone job       voices:read
    DELETE /v1/voices/{voice_id}      -> 204                                       voices:write
    POST   /v1/voices/{voice_id}/revoke                                            voices:write
    GET    /v1/jobs                   the tenant's recent jobs                     voices:read
    GET    /v1/jobs/{job_id}          status, progress, error, result   voices:read (clone) / tts
    GET    /v1/jobs/{job_id}/audio    a finished synthesis job's audio             tts
    POST   /v1/synthesize             {text, voice, format?, speed?, pitch?, language?}
                                          -> 202 {job}                                 tts
    GET    /v1/usage                  this month, history, tier limits, remaining  (any)
    GET    /openapi.json, /docs       public
"""

from __future__ import annotations

import functools
import json
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from datetime import datetime
from typing import Any

from aiohttp import web

from realtime.appkeys import (
    CATALOG,
    CONFIG,
    LIMITER,
    LIVE,
    METRICS,
    PRINCIPAL,
    PROFILES,
    STORES,
    SYNTHESIS,
    TENANTS,
    VOICE_REGISTRY,
    VOICE_SERVICE,
)
from realtime.guards import is_valid_text, read_body
from realtime.openapi import docs_page, openapi_document
from realtime.voice_form import read_voice_form
from session.authn import Scope
from session.cloning import BaseVoices, SharedEncoder, describe_cloning
from session.errors import BadRequest, TextTooLong, TimbreError
from session.files import TenantFiles
from session.ids import TenantId, VoiceId
from session.jobs import JobRunner, JobsConfig
from session.reference_audio import ReferenceChecks
from session.store.consents import ConsentRecord
from session.store.jobs import Job, JobKind
from session.store.usage import Usage
from session.store.voices import VoiceProfile
from session.synthesis import SynthesisConfig, SynthesisRequest, SynthesisService
from session.tiers import Tier
from session.voice_service import (
    VoiceService,
    speaking_voice,
)

log = logging.getLogger(__name__)


PUBLIC_PATHS = ("/openapi.json", "/docs")
"""Served without credentials (the auth middleware lets them through)."""
USAGE_HISTORY_MONTHS = 12

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def error_response(err: TimbreError) -> web.Response:
    return web.json_response({"error": {"code": err.code, "message": err.message}},
                             status=err.http_status)


def api(handler: Handler) -> Handler:
    """Answer TimbreErrors as JSON errors; anything else is logged and becomes a bare 500."""

    @functools.wraps(handler)
    async def wrapped(request: web.Request) -> web.StreamResponse:
        try:
            return await handler(request)
        except TimbreError as err:
            _count(request, err.code)
            return error_response(err)
        except web.HTTPException:
            raise
        except Exception:
            log.exception("%s %s failed", request.method, request.path)
            _count(request, "internal_error")
            return web.json_response(
                {"error": {"code": "internal_error", "message": "the server failed to answer "
                                                                "this request; it was logged"}},
                status=500)

    return wrapped


def _count(request: web.Request, code: str) -> None:
    if METRICS in request.app:
        request.app[METRICS].errors.labels(code).inc()


async def read_json(request: web.Request, max_bytes: int) -> Any:
    """The JSON body, read with its own size limit (long texts exceed the app's default) and the
    body deadlines of ``read_body``."""
    body = await read_body(request, max_bytes, too_large=TextTooLong)
    try:
        value = json.loads(body)
    except (ValueError, UnicodeDecodeError, RecursionError):  # Recursion: nested too deeply
        raise BadRequest("the body is not valid JSON") from None
    _check_strings(value)
    return value


def _check_strings(value: Any) -> None:
    """Raise BadRequest for a string anywhere in ``value`` holding a lone surrogate (JSON's
    ``"\\ud800"``), which no engine can speak. Iterative: the nesting depth is the client's."""
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str) and not is_valid_text(item):
            raise BadRequest("the body holds text that is not valid Unicode (a lone surrogate)")
        if isinstance(item, dict):
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)


# -- serialisation ---------------------------------------------------------------------------------


def _time(value: datetime | None) -> str | None:
    return None if value is None else value.isoformat().replace("+00:00", "Z")


def elevenlabs_voice_fields(category: str, *, is_owner: bool) -> dict[str, Any]:
    """The fields ElevenLabs' ``GET /v1/voices`` gives each voice, beside ours (``voice_id`` and
    ``name`` are shared), so their SDKs and plugins can read our listing on the same path."""
    return {"category": category, "labels": {}, "description": None, "preview_url": None,
            "settings": None, "samples": None, "available_for_tiers": [],
            "high_quality_base_model_ids": [], "is_owner": is_owner}


def stock_voice_json(voice_id: str) -> dict[str, Any]:
    engine, _, name = voice_id.partition(":")
    return {"voice_id": voice_id, "kind": "stock", "name": name, "engine": engine,
            "status": "ready", **elevenlabs_voice_fields("premade", is_owner=False)}


def voice_json(profile: VoiceProfile) -> dict[str, Any]:
    similarity = profile.engine_params.get("base_similarity")
    return {
        **elevenlabs_voice_fields("cloned", is_owner=True),
        "created_at_unix": int(profile.created_at.timestamp()),
        "voice_id": profile.voice_id, "kind": "profile", "name": profile.name,
        "status": profile.status.value, "error": profile.error,
        "base_voice": speaking_voice(profile),
        "base_similarity": similarity if isinstance(similarity, int | float) else None,
        **describe_cloning(profile.engine_params),
        "reference_files": len(profile.reference_files), "consent_id": profile.consent_id,
        "created_at": _time(profile.created_at), "updated_at": _time(profile.updated_at),
    }


def consent_json(consent: ConsentRecord) -> dict[str, Any]:
    return {"consent_id": consent.consent_id, "owner_name": consent.owner_name,
            "statement": consent.statement, "purpose": consent.purpose,
            "expires_at": _time(consent.expires_at), "uploaded_by": consent.uploaded_by,
            "created_at": _time(consent.created_at), "revoked_at": _time(consent.revoked_at)}


def job_json(job: Job) -> dict[str, Any]:
    return {
        "job_id": job.job_id, "kind": job.kind.value, "status": job.status.value,
        "progress": round(job.progress, 4), "subject": job.subject,
        "error": None if job.error is None else {"code": job.error.code,
                                                 "message": job.error.message},
        "result": None if job.result is None else dict(job.result),
        "created_at": _time(job.created_at), "updated_at": _time(job.updated_at),
        "expires_at": _time(job.expires_at),
    }


def tier_json(tier: Tier) -> dict[str, Any]:
    return {"name": tier.name, "characters_per_month": tier.characters_per_month,
            "max_profiles": tier.max_profiles,
            "max_concurrent_streams": tier.max_concurrent_streams,
            "output_formats": None if tier.output_formats is None else list(tier.output_formats)}


def usage_json(usage: Usage) -> dict[str, Any]:
    return {"month": usage.month, "characters": usage.characters,
            "audio_s": round(usage.audio_s, 3), "requests": usage.requests}


def _accepted(body: Mapping[str, Any], location: str) -> web.Response:
    return web.json_response(body, status=202, headers={"Location": location})


# -- handlers ----------------------------------------------------------------------------------------


@api
async def create_voice(request: web.Request) -> web.Response:
    principal = request[PRINCIPAL]
    principal.require(Scope.VOICES_WRITE)
    service = request.app[VOICE_SERVICE]
    parts = await read_voice_form(request, service.checks.max_upload_bytes)
    profile, job = await service.create(principal, parts.to_new_voice())
    return _accepted({"voice": voice_json(profile), "job": job_json(job)},
                     f"/v1/jobs/{job.job_id}")


@api
async def list_voices(request: web.Request) -> web.Response:
    principal = request[PRINCIPAL]
    principal.require(Scope.VOICES_READ)
    profiles = await request.app[VOICE_SERVICE].list(principal.tenant)
    stock = [stock_voice_json(v) for v in request.app[CATALOG].voice_ids()]
    return web.json_response({"voices": stock + [voice_json(p) for p in profiles]})


@api
async def get_voice(request: web.Request) -> web.Response:
    principal = request[PRINCIPAL]
    principal.require(Scope.VOICES_READ)
    service = request.app[VOICE_SERVICE]
    profile = await service.get(principal.tenant, request.match_info["voice_id"])
    consent = await service.consent(profile)
    job = await service.clone_job(profile)
    return web.json_response({**voice_json(profile),
                              "consent": None if consent is None else consent_json(consent),
                              "job": None if job is None else job_json(job)})


@api
async def delete_voice(request: web.Request) -> web.Response:
    principal = request[PRINCIPAL]
    principal.require(Scope.VOICES_WRITE)
    await request.app[VOICE_SERVICE].delete(principal, request.match_info["voice_id"])
    return web.Response(status=204)


@api
async def revoke_voice(request: web.Request) -> web.Response:
    principal = request[PRINCIPAL]
    principal.require(Scope.VOICES_WRITE)
    profile = await request.app[VOICE_SERVICE].revoke(principal, request.match_info["voice_id"])
    return web.json_response(voice_json(profile))


@api
async def list_jobs(request: web.Request) -> web.Response:
    principal = request[PRINCIPAL]
    principal.require(Scope.VOICES_READ)
    jobs = await request.app[STORES].jobs.list(principal.tenant)
    return web.json_response({"jobs": [job_json(job) for job in jobs]})


@api
async def get_job(request: web.Request) -> web.Response:
    principal = request[PRINCIPAL]
    job = await request.app[SYNTHESIS].job(principal.tenant, request.match_info["job_id"])
    principal.require(Scope.VOICES_READ if job.kind is JobKind.CLONE else Scope.TTS)
    return web.json_response(job_json(job))


@api
async def job_audio(request: web.Request) -> web.StreamResponse:
    principal = request[PRINCIPAL]
    principal.require(Scope.TTS)
    path, media_type = await request.app[SYNTHESIS].result_file(principal.tenant,
                                                                request.match_info["job_id"])
    return web.FileResponse(path, headers={
        "Content-Type": media_type, "Cache-Control": "private, no-store",
        "Content-Disposition": f'attachment; filename="{path.name}"'})


@api
async def synthesize(request: web.Request) -> web.Response:
    principal = request[PRINCIPAL]
    principal.require(Scope.TTS)
    service = request.app[SYNTHESIS]
    body = await read_json(request, service.config.max_text_chars * 6 + 4096)
    job = await service.submit(principal, SynthesisRequest.from_json(body))
    return _accepted({"job": job_json(job)}, f"/v1/jobs/{job.job_id}")


@api
async def usage(request: web.Request) -> web.Response:
    tenant = request[PRINCIPAL].tenant
    stores = request.app[STORES]
    tier = (await request.app[TENANTS].account(tenant)).tier
    month = await stores.usage.get(tenant)
    history = await stores.usage.history(tenant, USAGE_HISTORY_MONTHS)
    profiles = await stores.voices.count(tenant)
    streams = await request.app[LIMITER].active(tenant)
    characters_left = (None if tier.characters_per_month is None
                       else max(0, tier.characters_per_month - month.characters))
    return web.json_response({
        "tenant": tenant, "tier": tier_json(tier), "month": usage_json(month),
        "history": [usage_json(u) for u in history],
        "profiles": profiles, "streams": streams,
        "remaining": {
            "characters": characters_left,
            "profiles": None if tier.max_profiles is None else max(0, tier.max_profiles - profiles),
            "streams": max(0, tier.max_concurrent_streams - streams),
        },
    })


async def openapi_json(request: web.Request) -> web.Response:
    return web.json_response(openapi_document(), headers={"Cache-Control": "no-cache"})


async def docs(request: web.Request) -> web.Response:
    return web.Response(text=docs_page(), content_type="text/html", headers={
        "Content-Security-Policy": "default-src 'self'; style-src 'self' 'unsafe-inline'",
        "Cache-Control": "no-cache"})


async def rest_services(app: web.Application, *, jobs: JobsConfig | None = None,
                        synthesis: SynthesisConfig | None = None,
                        reference: ReferenceChecks | None = None) -> AsyncIterator[None]:
    """Cleanup context that builds what the REST API needs (``VOICE_SERVICE``, ``SYNTHESIS``, the
    job runner) from ``STORES``, ``TENANTS``, ``CATALOG``, ``PROFILES`` and ``LIVE``; append it
    after the tenancy and engine contexts (``functools.partial`` passes the configs). At start it
    fails jobs a previous process left unfinished; at shutdown running jobs are failed as
    ``interrupted`` before the engines stop."""
    stores, tenants = app[STORES], app[TENANTS]
    files = TenantFiles(app[CONFIG].server.data_dir)
    runner = JobRunner(stores.jobs, jobs)

    async def on_revoked(tenant: TenantId, voice_id: VoiceId) -> None:
        app[PROFILES].forget(tenant, voice_id)
        app[LIVE].end_all(tenant, voice_id, "the voice was revoked or deleted")

    cloning = app[CONFIG].cloning
    encoder = SharedEncoder(runner)
    base_voices = BaseVoices(app[CATALOG], runner, encoder,
                             cache_dir=app[CONFIG].server.data_dir / "cache" / "embeddings")
    voices = VoiceService(stores=stores, tenants=tenants, catalog=app[CATALOG], files=files,
                          runner=runner, checks=reference, on_revoked=on_revoked,
                          registry=app[VOICE_REGISTRY], encoder=encoder, base_voices=base_voices,
                          cloning=cloning)
    service = SynthesisService(jobs=stores.jobs, tenants=tenants, voices=voices, files=files,
                               runner=runner, config=synthesis,
                               segmenter=app[CONFIG].session.segmenter)
    app[VOICE_SERVICE] = voices
    app[SYNTHESIS] = service
    await runner.recover()
    service.start_sweeper()
    yield
    await runner.close()
    await service.close()


ROUTES: tuple[tuple[str, str, Handler], ...] = (
    ("POST", "/v1/voices", create_voice),
    ("GET", "/v1/voices", list_voices),
    ("GET", "/v1/voices/{voice_id}", get_voice),
    ("DELETE", "/v1/voices/{voice_id}", delete_voice),
    ("POST", "/v1/voices/{voice_id}/revoke", revoke_voice),
    ("GET", "/v1/jobs", list_jobs),
    ("GET", "/v1/jobs/{job_id}", get_job),
    ("GET", "/v1/jobs/{job_id}/audio", job_audio),
    ("POST", "/v1/synthesize", synthesize),
    ("GET", "/v1/usage", usage),
    ("GET", "/openapi.json", openapi_json),
    ("GET", "/docs", docs),
)


def add_routes(app: web.Application) -> None:
    """Register the REST API (``ROUTES``). The app must hold ``VOICE_SERVICE`` and ``SYNTHESIS``
    (see ``rest_services``) besides ``STORES``, ``TENANTS``, ``LIMITER`` and ``CATALOG``, and its
    auth middleware must let ``PUBLIC_PATHS`` through. ``GET /v1/voices`` replaces the app's
    stock-only listing."""
    for method, path, handler in ROUTES:
        app.router.add_route(method, path, handler)
