"""Voice ids and which scheduler serves them.

A voice id is ``engine:name`` (``piper:joe``) for a stock voice (short aliases such as ``joe`` resolve
when exactly one engine has a voice of that name), or a tenant's voice profile id (``v_...``).
"""

from __future__ import annotations

import base64
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from inference.conversion import Blend, ConversionParams
from inference.engine import ClonesVoices
from inference.scheduler import Scheduler
from inference.voice_registry import VoiceRegistry
from session.errors import TimbreError, UnknownVoice
from session.ids import TenantId, VoiceId
from session.store.consents import ConsentRecord, ConsentStore
from session.store.voices import VoiceProfile, VoiceStatus, VoiceStore

PROFILE_PREFIX = "v_"
_Cached = tuple[VoiceProfile, ConsentRecord | None]


class VoiceUnavailable(TimbreError):
    """A profile that exists but cannot speak: still cloning, failed, or its consent revoked."""

    code = "voice_unavailable"
    http_status = 409
    close_code = None


@dataclass(frozen=True)
class ResolvedVoice:
    voice_id: str
    """Canonical id, ``engine:name``."""
    engine_voice: str
    """The name the engine knows."""
    scheduler: Scheduler
    conversion: Blend = ()
    """A cloned (or mixed) profile's conversion stage after the engine (``session.voicing``)."""


class VoiceCatalog:
    def __init__(self) -> None:
        self._schedulers: dict[str, Scheduler] = {}

    def add_engine(self, scheduler: Scheduler) -> None:
        self._schedulers[scheduler.engine.name] = scheduler

    def voice_ids(self) -> list[str]:
        return sorted(
            f"{name}:{voice}"
            for name, scheduler in self._schedulers.items()
            for voice in scheduler.engine.voices()
        )

    def schedulers(self) -> list[Scheduler]:
        return list(self._schedulers.values())

    def scheduler(self, engine_name: str) -> Scheduler | None:
        return self._schedulers.get(engine_name)

    def cloning_scheduler(self) -> Scheduler | None:
        """The scheduler of an engine that clones voices from reference audio, if one runs."""
        for scheduler in self._schedulers.values():
            if isinstance(scheduler.engine, ClonesVoices):
                return scheduler
        return None

    def resolve(self, voice_id: str) -> ResolvedVoice:
        """Raises ``UnknownVoice`` for an id no engine serves."""
        engine_name, sep, name = voice_id.partition(":")
        if sep:
            scheduler = self._schedulers.get(engine_name)
            if scheduler is not None and name in scheduler.engine.voices():
                return ResolvedVoice(voice_id, name, scheduler)
            raise UnknownVoice(f"unknown voice {voice_id!r}; available: {self._listing()}")
        matches = [
            (engine_name_, scheduler)
            for engine_name_, scheduler in self._schedulers.items()
            if voice_id in scheduler.engine.voices()
        ]
        if len(matches) != 1:
            raise UnknownVoice(f"unknown voice {voice_id!r}; available: {self._listing()}")
        engine_name, scheduler = matches[0]
        return ResolvedVoice(f"{engine_name}:{voice_id}", voice_id, scheduler)

    def _listing(self) -> str:
        stock = ", ".join(self.voice_ids()) or "(none)"
        return f"{stock}, or a voice profile id (v_...; GET /v1/voices lists yours)"


def profile_voice(catalog: VoiceCatalog, registry: VoiceRegistry,
                  profile: VoiceProfile) -> ResolvedVoice:
    """How a ready profile speaks: a stock voice its clone job chose (``engine`` + ``voice``), or
    its own conditioning on a cloning engine, handed to that engine through ``registry`` under the
    profile's id. Raises VoiceUnavailable when its engine does not run on this server."""
    params = profile.engine_params
    engine = str(params.get("engine"))
    if "conditioning" in params:  # made by a cloning engine (``ClonesVoices``)
        scheduler = catalog.scheduler(engine)
        if scheduler is None:
            raise VoiceUnavailable(f"voice {profile.voice_id} needs the {engine} engine, which "
                                   "this server does not run")
        registry.put(profile.voice_id, base64.b64decode(params["conditioning"]))
        return ResolvedVoice(profile.voice_id, profile.voice_id, scheduler,
                             conversion_of(params))
    base = catalog.resolve(f"{engine}:{params.get('voice')}")
    return ResolvedVoice(profile.voice_id, base.engine_voice, base.scheduler,
                         conversion_of(params))


_decoded: dict[str, ConversionParams] = {}


def conversion_of(engine_params: Mapping[str, Any]) -> Blend:
    """The conversion blend stored in a profile's ``engine_params["conversion"]`` (a list of
    ``{"weight", "params"}``, params ``ConversionParams.to_bytes`` in base64); () for none.
    Decoded blobs are kept (by their text) so opening a stream does not decode again."""
    parts = []
    for part in engine_params.get("conversion") or ():
        blob = str(part["params"])
        params = _decoded.get(blob)
        if params is None:
            params = ConversionParams.from_bytes(base64.b64decode(blob))
            if len(_decoded) >= 256:
                _decoded.pop(next(iter(_decoded)))
            _decoded[blob] = params
        parts.append((params, float(part["weight"])))
    return tuple(parts)


def encode_conversion(parts: Blend) -> list[dict[str, Any]]:
    """``engine_params["conversion"]`` for a blend (the inverse of ``conversion_of``)."""
    return [{"weight": float(weight),
             "params": base64.b64encode(params.to_bytes()).decode("ascii")}
            for params, weight in parts]


class ProfileVoices:
    """Voice profiles (``v_...`` ids) on the streaming path: a profile speaks through the engine
    voice its clone job chose (``engine_params``). Lookups are cached for ``ttl_s`` so opening a
    stream costs no database round trip in the common case; ``forget`` drops a profile at once
    (revoke, delete)."""

    def __init__(self, catalog: VoiceCatalog, store: VoiceStore, consents: ConsentStore,
                 registry: VoiceRegistry, ttl_s: float = 5.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._catalog = catalog
        self._registry = registry
        self._store = store
        self._consents = consents
        self._ttl_s = ttl_s
        self._clock = clock
        self._cache: dict[tuple[TenantId, str], tuple[float, _Cached | None]] = {}

    async def resolve(self, tenant: TenantId, voice_id: str) -> ResolvedVoice:
        """A stock voice id or one of ``tenant``'s ready profiles. Raises UnknownVoice (also for
        another tenant's profile: its existence is not revealed) or VoiceUnavailable."""
        if not voice_id.startswith(PROFILE_PREFIX):
            return self._catalog.resolve(voice_id)
        cached = await self._profile(tenant, voice_id)
        if cached is None:
            raise UnknownVoice(f"unknown voice {voice_id!r}")
        profile, consent = cached
        if profile.status is not VoiceStatus.READY:
            raise VoiceUnavailable(f"voice {voice_id!r} is {profile.status.value}")
        if consent is None or not consent.valid_at(datetime.now(UTC)):
            raise VoiceUnavailable(f"the consent behind voice {voice_id!r} is revoked or expired")
        return profile_voice(self._catalog, self._registry, profile)

    async def _profile(self, tenant: TenantId, voice_id: str) -> _Cached | None:
        key = (tenant, voice_id)
        hit = self._cache.get(key)
        now = self._clock()
        if hit is not None and now - hit[0] < self._ttl_s:
            return hit[1]
        profile = await self._store.get(tenant, VoiceId(voice_id))
        cached = None
        if profile is not None:
            cached = (profile, await self._consents.get(tenant, profile.consent_id))
        self._cache[key] = (now, cached)
        if len(self._cache) > 10_000:
            self._cache.pop(next(iter(self._cache)))
        return cached

    def forget(self, tenant: TenantId, voice_id: str) -> None:
        self._cache.pop((tenant, voice_id), None)
