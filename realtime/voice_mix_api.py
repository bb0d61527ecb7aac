"""``POST /v1/voices/mix``: blend voices by weight into a new profile (``session.voice_mix``).

Body: ``{"name": "Blend", "voices": [{"voice_id": "v_...", "weight": 0.7},
{"voice_id": "kokoro:jm_kumo", "weight": 0.3}]}`` (2 to 8 voices: stock voices or the tenant's
ready profiles; weights are relative). Answer: 201 with the new profile, ready at once (mixing
fits nothing). Errors: 400 ``bad_request`` (fields, weights, voices that cannot be mixed), 404
``unknown_voice``, 409 ``voice_unavailable`` (a source not ready or its consent revoked), 402
``profile_limit``.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from realtime.appkeys import PRINCIPAL, VOICE_SERVICE
from realtime.rest import api, read_json, voice_json
from session.authn import Scope
from session.errors import BadRequest
from session.voice_mix import MAX_MIX_VOICES, MixPart

_MAX_BODY_BYTES = 16 * 1024


@api
async def mix_voices(request: web.Request) -> web.Response:
    principal = request[PRINCIPAL]
    principal.require(Scope.VOICES_WRITE)
    body = await read_json(request, _MAX_BODY_BYTES)
    name, parts = _parse(body)
    profile = await request.app[VOICE_SERVICE].mix(principal, name, parts)
    return web.json_response(voice_json(profile), status=201,
                             headers={"Location": f"/v1/voices/{profile.voice_id}"})


def _parse(body: Any) -> tuple[str, list[MixPart]]:
    if not isinstance(body, dict):
        raise BadRequest("the body must be a JSON object with 'name' and 'voices'")
    unknown = sorted(set(body) - {"name", "voices"})
    if unknown:
        raise BadRequest(f"unknown fields {unknown}; known: name, voices")
    name, voices = body.get("name"), body.get("voices")
    if not isinstance(name, str):
        raise BadRequest("'name' must be a string")
    if not isinstance(voices, list) or not 2 <= len(voices) <= MAX_MIX_VOICES:
        raise BadRequest(f"'voices' must be a list of 2 to {MAX_MIX_VOICES} "
                         "{voice_id, weight} objects")
    parts = []
    for item in voices:
        if not isinstance(item, dict) or set(item) - {"voice_id", "weight"}:
            raise BadRequest("each of 'voices' is an object {voice_id, weight}")
        voice_id, weight = item.get("voice_id"), item.get("weight", 1.0)
        if not isinstance(voice_id, str) or not voice_id:
            raise BadRequest("'voice_id' must be a non-empty string")
        if isinstance(weight, bool) or not isinstance(weight, int | float):
            raise BadRequest(f"the weight of {voice_id!r} must be a number")
        parts.append(MixPart(voice_id, float(weight)))
    return name, parts


def add_voice_mix_routes(app: web.Application) -> None:
    app.router.add_post("/v1/voices/mix", mix_voices)
