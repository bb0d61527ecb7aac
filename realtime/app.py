"""The app factory: the one place where config, keys, engines, schedulers and routes are wired.

Everything with a lifetime is created in a cleanup context and closed in reverse order. Engines load
in the background so the port opens at once: ``/healthz`` answers immediately, ``/readyz`` only once
every engine is loaded and warmed up.
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

from aiohttp import web
from threadpoolctl import threadpool_limits

from inference.engine import Engine
from inference.kokoro import KokoroEngine
from inference.kokoro_graph import packages_installed as kokoro_installed
from inference.piper import PiperEngine
from inference.scheduler import Scheduler, SchedulerConfig
from inference.voice_registry import VoiceRegistry
from inference.xtts_settings import XttsSettings
from realtime.admin_cli import MONGO_URL_FILE
from realtime.appkeys import (
    AUTHENTICATOR,
    CATALOG,
    CONFIG,
    DEMO_KEY,
    ENGINE_ERRORS,
    ENGINES_LOADING,
    LIMITER,
    LIVE,
    METRICS,
    PRINCIPAL,
    PROFILES,
    STAMPER,
    STORES,
    TENANTS,
    VOICE_REGISTRY,
    VOICE_SERVICE,
)
from realtime.config import AppConfig
from realtime.elevenlabs import add_elevenlabs_routes, handles_own_auth
from realtime.guards import install_log_redaction, origin_middleware, static_files_guard
from realtime.metrics import Metrics, StepObserver
from realtime.openai_speech import add_openai_routes
from realtime.ratelimit_guard import rate_limit_middlewares
from realtime.rest import add_routes, rest_services
from realtime.rest_tokens import create_token
from realtime.twilio import add_twilio_routes
from realtime.voice_mix_api import add_voice_mix_routes
from realtime.watermark_api import add_watermark_routes
from realtime.webrtc import add_webrtc_routes
from realtime.ws_native import stream_handler
from session.auth import DEMO_TENANT, ensure_demo_key
from session.authn import Authenticator, load_jwt_keys
from session.db import EmbeddedMongo, Stores, open_database
from session.errors import TimbreError, Unauthorized
from session.limits import open_stream_limiter
from session.live import LiveVoices
from session.store.provenance import ProvenanceStore
from session.tenancy import TenantDirectory
from session.voices import ProfileVoices, VoiceCatalog
from session.watermark.stamp import Stamper, bind

log = logging.getLogger(__name__)

WEB_DIR = Path(__file__).resolve().parent.parent / "web"

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def bearer_token(request: web.Request) -> str | None:
    header = request.headers.get("Authorization", "")
    scheme, _, value = header.partition(" ")
    if scheme.lower() == "bearer" and value.strip():
        return value.strip()
    # ElevenLabs' clients send their key as ``xi-api-key`` on every HTTP API.
    return request.headers.get("xi-api-key", "").strip() or request.query.get("token") or None


@web.middleware
async def auth_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Every ``/v1/`` API needs a key (header, or ``?token=`` for browsers). The ElevenLabs-
    compatible routes authenticate themselves (``xi-api-key``, or a key in the first message)."""
    if request.path.startswith("/v1/") and not handles_own_auth(request.path):
        try:
            request[PRINCIPAL] = await request.app[AUTHENTICATOR].authenticate(
                bearer_token(request))
        except TimbreError as err:
            request.app[METRICS].errors.labels(err.code).inc()
            return error_response(err)
    stamper, principal = request.app.get(STAMPER), request.get(PRINCIPAL)
    if stamper is None:
        return await handler(request)
    # sessions made while handling this request watermark their audio for its tenant
    with bind(stamper, None if principal is None else principal.tenant):
        return await handler(request)


def error_response(err: TimbreError) -> web.Response:
    return web.json_response({"error": {"code": err.code, "message": err.message}},
                             status=err.http_status)


async def healthz(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


async def readyz(request: web.Request) -> web.Response:
    schedulers = request.app[CATALOG].schedulers()
    failed = {s.engine.name: repr(s.failed) for s in schedulers if s.failed is not None}
    load_errors: dict[str, str] = request.app[ENGINE_ERRORS]
    failed.update(load_errors)
    loading: set[str] = request.app[ENGINES_LOADING]
    ready = (bool(schedulers) and not failed and not loading
             and all(s.ready.is_set() for s in schedulers))
    engines = {name: False for name in sorted(loading)}
    engines.update({s.engine.name: s.ready.is_set() for s in schedulers})
    body: dict[str, object] = {"ready": ready, "engines": engines}
    if failed:
        body["failed"] = failed
    return web.json_response(body, status=200 if ready else 503)


async def metrics_handler(request: web.Request) -> web.Response:
    body = request.app[METRICS].render()
    return web.Response(body=body, content_type="text/plain", charset="utf-8",
                        headers={"X-Content-Type-Options": "nosniff"})


async def demo_token(request: web.Request) -> web.Response:
    """Sign a local visitor of the demo page in as the demo tenant. Only loopback clients get it:
    anyone else must bring their own key (``?token=``)."""
    if not request.app[CONFIG].server.demo_sign_in or request.remote not in ("127.0.0.1", "::1"):
        return error_response(Unauthorized("demo sign-in is only offered to local visitors"))
    principal = await request.app[AUTHENTICATOR].authenticate(request.app[DEMO_KEY])
    minted = request.app[AUTHENTICATOR].mint_token(principal)
    return web.json_response({"token": minted.token, "expires_at": minted.expires_at,
                              "tenant": DEMO_TENANT})


async def index(request: web.Request) -> web.FileResponse:
    return web.FileResponse(WEB_DIR / "index.html")


async def _database_ctx(app: web.Application) -> AsyncIterator[None]:
    """MongoDB: the configured server, or an embedded SecantusDB under DATA_DIR/mongo."""
    server = app[CONFIG].server
    embedded = None
    url = server.mongo_url
    if url is None:
        embedded = EmbeddedMongo(server.data_dir)
        url = await embedded.start()
        (server.data_dir / MONGO_URL_FILE).write_text(url + "\n")
    db = open_database(url)
    try:
        app[STORES] = await Stores.open(db)
        provenance = ProvenanceStore(db)
        await provenance.create_indexes()
        app[STAMPER] = Stamper(provenance, app[CONFIG].watermark)
        yield
        await app[STAMPER].drain()
    finally:
        db.client.close()
        if embedded is not None:
            (server.data_dir / MONGO_URL_FILE).unlink(missing_ok=True)
            await embedded.close()


async def _tenancy_ctx(app: web.Application) -> AsyncIterator[None]:
    """Auth, tiers and limits, and the bootstrap demo tenant with its key file."""
    config, stores = app[CONFIG], app[STORES]
    data_dir = config.server.data_dir
    app[AUTHENTICATOR] = Authenticator(stores.api_keys, stores.tenants,
                                       load_jwt_keys(config.auth, data_dir), config.auth)
    app[TENANTS] = TenantDirectory(stores.tenants, stores.usage, config.tiers)
    app[PROFILES] = ProfileVoices(app[CATALOG], stores.voices, stores.consents,
                                  app[VOICE_REGISTRY])
    limiter = app[LIMITER] = open_stream_limiter(config.server.redis_url)
    key, created = ensure_demo_key(data_dir)
    await stores.tenants.ensure(DEMO_TENANT, "demo", config.server.demo_tier)
    await stores.api_keys.ensure(DEMO_TENANT, key)
    app[DEMO_KEY] = key
    where = data_dir / "demo-api-key"
    # The key is shown once, when it is created (README); later starts name only its file, so
    # the server's output (often a log) does not repeat a credential at every start.
    if created:
        print(f"timbre: demo API key (created, {where}): {key}", flush=True)
    else:
        print(f"timbre: demo API key loaded from {where}", flush=True)
    yield
    await limiter.close()


async def _engines_ctx(app: web.Application) -> AsyncIterator[None]:
    config, metrics, catalog = app[CONFIG], app[METRICS], app[CATALOG]
    schedulers: list[Scheduler] = []

    async def start(name: str, build: Callable[[], Engine],
                    scheduler_config: SchedulerConfig) -> None:
        try:
            engine = await asyncio.get_running_loop().run_in_executor(None, build)
        except Exception as exc:  # reported by /readyz; the other engines still serve
            log.exception("engine %s failed to load", name)
            app[ENGINE_ERRORS][name] = f"{type(exc).__name__}: {exc}"
            return
        finally:
            app[ENGINES_LOADING].discard(name)
        scheduler = Scheduler(engine, scheduler_config, StepObserver(metrics))
        schedulers.append(scheduler)
        catalog.add_engine(scheduler)
        scheduler.start()

    tasks: list[asyncio.Task[None]] = []

    def launch(name: str, build: Callable[[], Engine], scheduler_config: SchedulerConfig) -> None:
        app[ENGINES_LOADING].add(name)  # /readyz says not ready until it is built and warm
        tasks.append(asyncio.create_task(start(name, build, scheduler_config)))

    cache_dir = config.server.data_dir / "cache" / "piper"
    launch("piper", functools.partial(PiperEngine, config.piper, cache_dir=cache_dir),
           config.scheduler)
    if config.kokoro.enabled and kokoro_installed():
        launch("kokoro", functools.partial(KokoroEngine, config.kokoro,
                                           voice_source=app[VOICE_REGISTRY]), config.scheduler)
    if config.xtts.enabled:
        launch("xtts", functools.partial(_build_xtts, config.xtts, app[VOICE_REGISTRY]),
               xtts_scheduler_config(config))
    metrics.on_collect(lambda: _refresh_gauges(metrics, catalog))
    yield
    for task in tasks:
        task.cancel()
    for scheduler in reversed(schedulers):
        await asyncio.get_running_loop().run_in_executor(None, scheduler.stop)


async def _warm_base_voices_ctx(app: web.Application) -> AsyncIterator[None]:
    """Embed the stock voices in the background once the engines are up, so the first clone job
    does not wait for it (``[cloning] warm_base_voices``)."""

    async def warm() -> None:
        try:
            await wait_ready(app, timeout_s=600.0)
        except (TimeoutError, RuntimeError):
            return  # an engine failed to load (see /readyz); embeddings are made on demand
        await app[VOICE_SERVICE].base_voices.warm()

    task = (asyncio.create_task(warm()) if app[CONFIG].cloning.warm_base_voices else None)
    yield
    if task is not None:
        task.cancel()


def _build_xtts(settings: XttsSettings, registry: VoiceRegistry) -> Engine:
    from inference.xtts.loading import build_xtts_engine  # imports torch: only when configured

    return build_xtts_engine(settings, voice_source=registry)


def xtts_scheduler_config(config: AppConfig) -> SchedulerConfig:
    """A GPU engine batches every runnable stream each tick (a batch costs about one item) and is
    bounded by its KV-cache slots rather than by a CPU throughput estimate."""
    slots = config.xtts.max_active
    return dataclasses.replace(
        config.scheduler, max_batch=slots, max_streams=slots, batch_horizon_s=None,
        admission_utilization=None, step_budget_ms=1000.0)


def _refresh_gauges(metrics: Metrics, catalog: VoiceCatalog) -> None:
    for scheduler in catalog.schedulers():
        name = scheduler.engine.name
        metrics.queue_depth.labels(name).set(scheduler.queue_depth)
        metrics.busy_streams.labels(name).set(scheduler.busy_streams)
        metrics.capacity_streams.labels(name).set(scheduler.capacity_streams())


def create_app(config: AppConfig) -> web.Application:
    install_log_redaction()  # aiohttp quotes unparseable requests, ?token= and all
    # numpy's small matrix products on the event loop (the conversion stage, the watermark) must
    # not wake OpenBLAS worker threads: they spin after every call and took a whole core from
    # the engines (a cloned Piper voice cost 1.5-1.7x the server CPU of its base voice).
    threadpool_limits(1, user_api="blas")
    # requests per second: per client address before auth, per tenant after it (ratelimit_guard)
    address_guard, tenant_guard = rate_limit_middlewares(config.rate_limit)
    app = web.Application(
        middlewares=[origin_middleware(config.server.allowed_origins), address_guard,
                     auth_middleware, tenant_guard, static_files_guard("/web/")],
        client_max_size=1024 * 1024)
    app[CONFIG] = config
    app[METRICS] = Metrics()
    app[CATALOG] = VoiceCatalog()
    app[LIVE] = LiveVoices()
    app[VOICE_REGISTRY] = VoiceRegistry()
    app[ENGINE_ERRORS] = {}
    app[ENGINES_LOADING] = set()
    app.cleanup_ctx.append(_database_ctx)
    app.cleanup_ctx.append(_tenancy_ctx)
    app.cleanup_ctx.append(_engines_ctx)
    # after the engines: running jobs fail as `interrupted` before the engines stop
    app.cleanup_ctx.append(functools.partial(
        rest_services, jobs=config.jobs, synthesis=config.synthesis, reference=config.reference))
    app.cleanup_ctx.append(_warm_base_voices_ctx)
    add_routes(app)
    add_openai_routes(app)
    add_elevenlabs_routes(app)
    add_twilio_routes(app)
    add_webrtc_routes(app)
    add_watermark_routes(app)
    add_voice_mix_routes(app)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/metrics", metrics_handler)
    app.router.add_get("/v1/stream", stream_handler)
    app.router.add_post("/v1/tokens", create_token)
    app.router.add_get("/demo/token", demo_token)
    app.router.add_get("/", index)
    app.router.add_static("/web/", WEB_DIR, show_index=False)
    return app


async def wait_ready(app: web.Application, timeout_s: float = 120.0) -> None:
    """Block until every engine is warmed up (tests and tooling)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while loop.time() < deadline:
        schedulers = app[CATALOG].schedulers()
        if (schedulers and not app[ENGINES_LOADING]
                and all(s.ready.is_set() for s in schedulers)):
            return
        failed = [s for s in schedulers if s.failed is not None]
        if failed:
            raise RuntimeError(f"engine {failed[0].engine.name} failed: {failed[0].failed}")
        await asyncio.sleep(0.05)
    raise TimeoutError("engines not ready in time")
