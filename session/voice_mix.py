"""Voice mixing: a new profile that blends stock voices and the tenant's profiles by weight.

A mix speaks on one engine. Its two halves blend separately:

* the base voice: on Kokoro, the sources' base style vectors (voicepacks) are blended by weight
  (``inference.kokoro_voice.mix``) and the result is the profile's own conditioning; an engine
  without style vectors (Piper's single ``joe``) needs every source on the same base voice;
* the conversion stage: each source's fitted conversion keeps its share of the weight (a stock
  voice's share is "no conversion"), and the filter applies the weighted sum of their spectral
  gains (``inference.conversion.SpectralFilter``).

Consent: a mix is made of people's voices, so it lives only while every one of their consents
does. It gets its own consent record (naming the sources' owners and consents, expiring with the
first of them), and ``engine_params["source_consents"]`` lists every consent it depends on (also
through mixed mixes): revoking or deleting any source revokes the mix (``VoiceService``).
"""

from __future__ import annotations

import base64
import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import numpy as np

from inference.kokoro import KokoroEngine
from inference.kokoro_voice import KokoroVoice, mix
from session.authn import Principal
from session.db import Stores
from session.errors import BadRequest, UnknownVoice
from session.files import is_voice_id
from session.ids import VoiceId
from session.limits import check_profiles
from session.store.audit import AuditAction
from session.store.consents import ConsentRecord
from session.store.voices import VoiceProfile, VoiceStatus
from session.tenancy import TenantDirectory
from session.voices import VoiceCatalog, VoiceUnavailable, conversion_of, encode_conversion

MIX_ENGINE = "mix"
"""``VoiceProfile.engine`` of a mixed profile."""
MAX_MIX_VOICES = 8


@dataclass(frozen=True)
class MixPart:
    voice_id: str
    """A stock voice (``kokoro:jf_alpha``) or one of the tenant's ready profiles."""
    weight: float


@dataclass(frozen=True)
class _Source:
    part: MixPart
    engine: str
    base: str
    """The stock base voice's name; for a mix on Kokoro, empty (see ``style``)."""
    style: KokoroVoice | None
    params: dict[str, Any]
    consent: ConsentRecord | None
    embedding: tuple[float, ...] | None


def validate_parts(parts: Sequence[MixPart]) -> None:
    if not 2 <= len(parts) <= MAX_MIX_VOICES:
        raise BadRequest(f"a mix needs 2 to {MAX_MIX_VOICES} voices")
    if len({p.voice_id for p in parts}) != len(parts):
        raise BadRequest("each voice may appear in a mix once")
    for part in parts:
        if not math.isfinite(part.weight) or not 0 < part.weight <= 100:
            raise BadRequest(f"the weight of {part.voice_id!r} must be a number in (0, 100]")


class VoiceMixer:
    def __init__(self, stores: Stores, tenants: TenantDirectory, catalog: VoiceCatalog) -> None:
        self._stores = stores
        self._tenants = tenants
        self._catalog = catalog

    async def mix(self, principal: Principal, name: str,
                  parts: Sequence[MixPart]) -> VoiceProfile:
        """Create the ready mixed profile. Raises BadRequest (bad parts, voices that cannot be
        mixed), UnknownVoice, VoiceUnavailable (a source not ready or its consent invalid),
        ProfileLimit."""
        validate_parts(parts)
        tenant = principal.tenant
        account = await self._tenants.account(tenant)
        check_profiles(account.tier, await self._stores.voices.count(tenant))
        sources = [await self._source(principal, part) for part in parts]
        if len({s.part.voice_id for s in sources}) != len(sources):  # ``joe`` is ``piper:joe``
            raise BadRequest("each voice may appear in a mix once")
        engines = {s.engine for s in sources}
        if len(engines) != 1:
            raise BadRequest(f"voices of different engines cannot be mixed ({sorted(engines)})")
        engine = engines.pop()
        total = sum(s.part.weight for s in sources)
        params: dict[str, Any] = {"engine": engine, "sources": [
            {"voice_id": s.part.voice_id, "weight": s.part.weight / total} for s in sources]}
        params.update(self._base(engine, sources, total))
        blend = [(p, w * s.part.weight / total) for s in sources for p, w in conversion_of(s.params)]
        if blend:
            params["conversion"] = encode_conversion(blend)
        consents = [s.consent for s in sources if s.consent is not None]
        depends = sorted({c.consent_id for c in consents}
                         | {c for s in sources for c in s.params.get("source_consents", ())})
        params["source_consents"] = depends
        consent = await self._stores.consents.create(
            tenant, owner_name="; ".join(sorted({c.owner_name for c in consents})) or "Timbre",
            statement=("A mix of " + ", ".join(f"{s.part.voice_id} ({s.part.weight / total:.2f})"
                                               for s in sources)
                       + (f", under the consents {', '.join(depends)}" if depends else "")),
            accepted=True, purpose="voice mix",
            expires_at=min((c.expires_at for c in consents if c.expires_at), default=None),
            uploaded_by=principal.key_id)
        profile = await self._stores.voices.create(
            tenant, name, engine=MIX_ENGINE, consent_id=consent.consent_id, reference_files=[],
            max_profiles=account.tier.max_profiles)
        ready = await self._stores.voices.set_ready(tenant, profile.voice_id, params,
                                                    _mean_embedding(sources))
        assert ready is not None
        await self._stores.audit.record(tenant, AuditAction.VOICE_CREATE, profile.voice_id,
                                        principal.key_id, {"name": name, "mix": params["sources"],
                                                           "consent_id": consent.consent_id})
        return ready

    async def _source(self, principal: Principal, part: MixPart) -> _Source:
        if not is_voice_id(part.voice_id):
            stock = self._catalog.resolve(part.voice_id)
            engine = stock.scheduler.engine.name
            return _Source(MixPart(stock.voice_id, part.weight), engine, stock.engine_voice,
                           None, {}, None, None)
        profile = await self._stores.voices.get(principal.tenant, VoiceId(part.voice_id))
        if profile is None:
            raise UnknownVoice(f"no voice {part.voice_id!r}")
        if profile.status is not VoiceStatus.READY:
            raise VoiceUnavailable(f"voice {part.voice_id!r} is {profile.status.value}")
        consent = await self._stores.consents.get(principal.tenant, profile.consent_id)
        if consent is None or not consent.valid_at(datetime.now(UTC)):
            raise VoiceUnavailable(f"the consent behind voice {part.voice_id!r} is not valid")
        params = dict(profile.engine_params)
        style = None
        if "conditioning" in params:
            if params.get("engine") != "kokoro":
                raise BadRequest(f"voice {part.voice_id!r} was made by the "
                                 f"{params.get('engine')} engine, which cannot mix voices")
            style = KokoroVoice.from_bytes(base64.b64decode(params["conditioning"]))
        return _Source(part, str(params.get("engine")), str(params.get("voice") or ""), style,
                       params, consent, tuple(profile.embedding) if profile.embedding else None)

    def _base(self, engine: str, sources: Sequence[_Source], total: float) -> dict[str, Any]:
        scheduler = self._catalog.scheduler(engine)
        if scheduler is None:
            raise VoiceUnavailable(f"the {engine} engine does not run on this server")
        model = scheduler.engine
        if isinstance(model, KokoroEngine):
            styles = [(s.style or model.stock_voice(s.base), s.part.weight / total)
                      for s in sources]
            blended = mix(styles)
            return {"conditioning": base64.b64encode(blended.to_bytes()).decode("ascii")}
        bases = {s.base for s in sources}
        if len(bases) != 1:
            raise BadRequest(f"the {engine} engine cannot blend its voices {sorted(bases)}; "
                             "mix voices that share a base voice, or Kokoro voices")
        return {"voice": bases.pop()}


def _mean_embedding(sources: Sequence[_Source]) -> list[float] | None:
    rows = [s for s in sources if s.embedding]
    if not rows:
        return None
    mean = np.average(np.array([s.embedding for s in rows], dtype=np.float64), axis=0,
                      weights=[s.part.weight for s in rows])
    norm = float(np.linalg.norm(mean))
    return [float(x) for x in (mean / norm if norm else mean)]
