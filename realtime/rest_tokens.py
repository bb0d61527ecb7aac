"""``POST /v1/tokens``: a short-lived JWT for a browser to open a WebSocket with (``?token=``).

Request (JSON, optional; an empty body takes the defaults)::

    {"ttl_s": 300, "scopes": ["tts"]}

``ttl_s`` defaults to the configured ``token_ttl_s`` and may not exceed ``max_token_ttl_s``;
``scopes`` default to the caller's and may only narrow them. Answer (200)::

    {"token": "<JWT>", "expires_at": 1767225600, "tenant": "t_..."}

``expires_at`` is in unix seconds; a token minted with another token never outlives it. Failures
are ``{"error": {"code", "message"}}``: 400 ``bad_request`` for a malformed body, an unknown scope
or a ttl out of range, 413 ``message_too_large`` for a body over ``MAX_BODY_BYTES``, 403 ``forbidden`` for a scope the caller lacks, 501 when this server holds no
signing key.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from aiohttp import web

from realtime.appkeys import AUTHENTICATOR, PRINCIPAL
from realtime.guards import read_body
from session.authn import parse_scopes
from session.errors import BadRequest, TimbreError

MAX_BODY_BYTES = 4096


@dataclass(frozen=True)
class TokenRequest:
    ttl_s: int | None = None
    scopes: tuple[str, ...] | None = None


def parse_token_request(body: bytes) -> TokenRequest:
    """The request body as a TokenRequest; raises BadRequest saying what is wrong with it."""
    if not body.strip():
        return TokenRequest()
    if len(body) > MAX_BODY_BYTES:
        raise BadRequest(f"body larger than {MAX_BODY_BYTES} bytes")
    try:
        fields = json.loads(body)
    except (ValueError, UnicodeDecodeError, RecursionError):  # Recursion: nested too deeply
        raise BadRequest("body is not valid JSON") from None
    if not isinstance(fields, dict):
        raise BadRequest("body must be a JSON object")
    unknown = sorted(set(fields) - {"ttl_s", "scopes"})
    if unknown:
        raise BadRequest(f"unknown fields {unknown}; known: ttl_s, scopes")
    ttl_s = fields.get("ttl_s")
    if ttl_s is not None and (not isinstance(ttl_s, int) or isinstance(ttl_s, bool)):
        raise BadRequest("ttl_s must be an integer number of seconds")
    scopes = fields.get("scopes")
    if scopes is not None and (
            not isinstance(scopes, list) or not all(isinstance(s, str) for s in scopes)):
        raise BadRequest("scopes must be a list of scope names")
    return TokenRequest(ttl_s, tuple(scopes) if scopes is not None else None)


async def create_token(request: web.Request) -> web.Response:
    """Mint a token for the authenticated caller (the auth middleware has set ``PRINCIPAL``)."""
    try:
        wanted = parse_token_request(await read_body(request, MAX_BODY_BYTES))
        scopes = parse_scopes(wanted.scopes) if wanted.scopes is not None else None
        principal = request[PRINCIPAL]
        minted = request.app[AUTHENTICATOR].mint_token(principal, wanted.ttl_s, scopes)
    except TimbreError as err:
        return web.json_response({"error": {"code": err.code, "message": err.message}},
                                 status=err.http_status)
    return web.json_response({"token": minted.token, "expires_at": minted.expires_at,
                              "tenant": principal.tenant},
                             headers={"Cache-Control": "no-store"})
