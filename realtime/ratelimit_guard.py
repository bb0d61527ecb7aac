"""The requests-per-second limits at the HTTP edge (buckets and policy: ``realtime.ratelimit``).

Two middlewares around the app's auth middleware::

    origin -> address_guard -> auth -> tenant_guard -> handlers

``address_guard`` refuses an API request from a client address whose bucket of failed requests
is empty, before anything looks at its credential; after the request, a 401 from the auth
middleware costs that address a token. ``tenant_guard`` charges the authenticated tenant one
token per request. The ElevenLabs-compatible routes authenticate themselves (the auth middleware
lets them through), so ``tenant_guard`` reads the same credentials they do (``xi-api-key``,
``Authorization``, ``?authorization=``/``?xi_api_key=``/``?token=``) to find the tenant, and
charges the client address when there is none it can see (an ElevenLabs WebSocket whose key comes
in its first message) or when it is refused; the handler then answers the refusal itself, in its
own shape. Authenticating twice costs little: API keys are cached, a JWT is checked in memory.

Only ``/v1/`` is limited: health, readiness, metrics, the demo page, its static files and the
API description are never refused. A refusal is a 429 with ``Retry-After`` (whole seconds) and a
JSON error in the endpoint's shape: Timbre's ``{"error": {"code": "rate_limited", ...}}``,
OpenAI's on ``/v1/audio/speech``, ElevenLabs' ``{"detail": {...}}`` on their routes.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from aiohttp import web
from aiohttp.typedefs import Middleware

from realtime.appkeys import AUTHENTICATOR, METRICS, PRINCIPAL
from realtime.elevenlabs import handles_own_auth
from realtime.elevenlabs.http import error_response as elevenlabs_error
from realtime.elevenlabs.query import bearer
from realtime.openai_speech import PATH as OPENAI_SPEECH_PATH
from realtime.openai_speech import error_response as openai_error
from realtime.ratelimit import RateLimitConfig, RateLimits, address_key, retry_after_s
from session.errors import TimbreError

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
LIMITED_PREFIX = "/v1/"


class RateLimited(TimbreError):
    """Too many requests per second (HTTP 429; retrying after ``Retry-After`` helps)."""

    code = "rate_limited"
    http_status = 429
    close_code = None
    retryable = True


def rate_limit_middlewares(config: RateLimitConfig) -> tuple[Middleware, Middleware]:
    """``(address_guard, tenant_guard)``: register the first before the auth middleware and the
    second after it. With ``enabled = false`` both let everything through."""
    limits = RateLimits(config)

    @web.middleware
    async def address_guard(request: web.Request, handler: Handler) -> web.StreamResponse:
        if not config.enabled or not request.path.startswith(LIMITED_PREFIX):
            return await handler(request)
        address = address_key(request.remote)
        wait_s = limits.addresses.wait_s(address)
        if wait_s > 0:
            return refusal(request, wait_s, "too many failed or unauthenticated requests from "
                           "this address")
        response = await handler(request)
        if response.status == 401 and not handles_own_auth(request.path):
            limits.addresses.take(address)  # the auth middleware refused the credential
        return response

    @web.middleware
    async def tenant_guard(request: web.Request, handler: Handler) -> web.StreamResponse:
        if not config.enabled or not request.path.startswith(LIMITED_PREFIX):
            return await handler(request)
        principal = request.get(PRINCIPAL)
        tenant = principal.tenant if principal is not None else None
        if tenant is None and handles_own_auth(request.path):
            tenant = await _own_auth_tenant(request)
            if tenant is None:
                wait_s = limits.addresses.take(address_key(request.remote))
                if wait_s > 0:
                    return refusal(request, wait_s, "too many failed or unauthenticated "
                                   "requests from this address")
        if tenant is not None:
            wait_s = limits.tenants.take(tenant)
            if wait_s > 0:
                return refusal(request, wait_s, (
                    f"too many requests: a tenant may make {config.requests_per_s:g} requests "
                    f"per second (bursts of {config.burst})"))
        return await handler(request)

    return address_guard, tenant_guard


async def _own_auth_tenant(request: web.Request) -> str | None:
    """The tenant behind the credential an ElevenLabs-compatible request shows at the edge, or
    None (none visible, or refused: the handler refuses it again, in ElevenLabs' shape)."""
    query = request.query
    credential = (request.headers.get("xi-api-key") or bearer(request.headers.get("Authorization"))
                  or bearer(query.get("authorization") or query.get("xi_api_key"))
                  or query.get("token"))
    if not credential:
        return None
    try:
        principal = await request.app[AUTHENTICATOR].authenticate(credential)
    except TimbreError:
        return None
    return principal.tenant


def refusal(request: web.Request, wait_s: float, reason: str) -> web.Response:
    """The 429 for ``request``, in its endpoint's error shape, with ``Retry-After``."""
    retry = retry_after_s(wait_s)
    err = RateLimited(f"{reason}; retry in {retry} s")
    request.app[METRICS].errors.labels(err.code).inc()
    if request.path == OPENAI_SPEECH_PATH:
        response = openai_error(err)
    elif handles_own_auth(request.path):
        response = elevenlabs_error(err)
    else:
        response = web.json_response({"error": {"code": err.code, "message": err.message}},
                                     status=err.http_status)
    response.headers["Retry-After"] = str(retry)
    return response


__all__ = ["RateLimited", "rate_limit_middlewares", "refusal"]
