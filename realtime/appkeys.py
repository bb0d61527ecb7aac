"""Typed keys for what the app factory wires into the aiohttp application."""

from __future__ import annotations

from aiohttp import web

from inference.voice_registry import VoiceRegistry
from realtime.config import AppConfig
from realtime.metrics import Metrics
from session.authn import Authenticator, Principal
from session.db import Stores
from session.limits import StreamLimiter
from session.live import LiveVoices
from session.synthesis import SynthesisService
from session.tenancy import TenantDirectory
from session.voice_service import VoiceService
from session.voices import ProfileVoices, VoiceCatalog
from session.watermark.stamp import Stamper

CONFIG = web.AppKey("config", AppConfig)
METRICS = web.AppKey("metrics", Metrics)
CATALOG = web.AppKey("catalog", VoiceCatalog)
STORES = web.AppKey("stores", Stores)
"""MongoDB stores (tenants, keys, voices, consents, usage, jobs, audit)."""
AUTHENTICATOR = web.AppKey("authenticator", Authenticator)
TENANTS = web.AppKey("tenants", TenantDirectory)
"""Cached tenant -> tier and usage, plus metering."""
LIMITER = web.AppKey("limiter", StreamLimiter)
"""Concurrent streams per tenant (in process, or Redis when REDIS_URL is set)."""
PROFILES = web.AppKey("profiles", ProfileVoices)
"""Stock voices and tenants' voice profiles on the streaming path (cached)."""
VOICE_REGISTRY = web.AppKey("voice_registry", VoiceRegistry)
"""Voice profiles' engine parameters (e.g. XTTS conditioning), fetched by engines by name."""
LIVE = web.AppKey("live", LiveVoices)
"""Live contexts by voice profile (revocation ends them)."""
VOICE_SERVICE = web.AppKey("voice_service", VoiceService)
"""Voice profiles: create (checks, consent, clone job), list, revoke, delete, audit."""
SYNTHESIS = web.AppKey("synthesis", SynthesisService)
"""Long-text synthesis jobs."""
STAMPER = web.AppKey("stamper", Stamper)
"""Watermarks every stream and records its provenance (session/watermark)."""
DEMO_KEY = web.AppKey("demo_key", str)
ENGINE_ERRORS = web.AppKey("engine_errors", dict[str, str])
"""Engines that failed to load, by name (reported by /readyz)."""
ENGINES_LOADING = web.AppKey("engines_loading", set[str])
"""Engines still being built: the server is not ready while any is."""

PRINCIPAL = web.RequestKey("principal", Principal)
"""Set by the auth middleware on every /v1/ request."""
