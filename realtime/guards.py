"""Guards at the HTTP edge, shared by every transport: request-body limits, the Origin check of
browser WebSockets, and an access log that never writes a credential.

Body limits. aiohttp's ``client_max_size`` answers an oversized body with a ``text/plain`` 413 from
deep inside ``request.read()``; a client of the OpenAI- or ElevenLabs-compatible API could not
read that. ``read_body`` applies each endpoint's own (much smaller) limit and raises
``MessageTooLarge``, which every handler answers in its own protocol's error shape.

Origin. A browser lets any page open a WebSocket to any host and sends the page's ``Origin`` with
the handshake; a page of another site that holds (or guesses its way to) a ``?token=`` must not
be able to talk to us. A WebSocket handshake that carries an ``Origin`` is accepted when the
origin is this server's own (same host and port as the ``Host`` header: the demo page) or is in
``ServerConfig.allowed_origins`` (``"*"`` allows every origin). A handshake without ``Origin`` is
not from a browser (SDKs, telephony, load tests); it is let through and authenticates as usual.
Refusals are a 403 ``origin_not_allowed`` before the upgrade, so no credential is even looked at.

Logs. Browsers carry their credential in the query (``?token=``, ElevenLabs'
``?authorization=`` / ``?xi_api_key=``); ``RedactingAccessLogger`` writes those values as
``[redacted]`` and never writes request headers, and ``RedactingFilter`` scrubs anything that
looks like a credential (query values, ``Bearer ...``, ``tk_...`` keys, JWTs) from aiohttp's own
log records, which quote requests they could not parse.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Awaitable, Callable, Collection
from urllib.parse import unquote_plus, urlsplit

from aiohttp import hdrs, web
from aiohttp.abc import AbstractAccessLogger
from aiohttp.typedefs import Middleware

from session.errors import MessageTooLarge, OriginNotAllowed

READ_CHUNK_BYTES = 64 * 1024
ANY_ORIGIN = "*"
SECRET_QUERY_NAMES = frozenset({"token", "authorization", "xi_api_key", "xi-api-key", "api_key",
                                "key", "access_token"})
"""Query parameters whose values are credentials (compared case-insensitively)."""
REDACTED = "[redacted]"
_DEFAULT_PORTS = {"http": 80, "ws": 80, "https": 443, "wss": 443}

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


# -- body limits -----------------------------------------------------------------------------------


async def read_body(request: web.Request, max_bytes: int) -> bytes:
    """The request body, at most ``max_bytes``. Raises ``MessageTooLarge`` (HTTP 413) as soon as
    the declared or the received length passes the limit, without reading the rest."""
    if request.content_length is not None and request.content_length > max_bytes:
        raise MessageTooLarge(f"the body is {request.content_length} bytes; the limit is "
                              f"{max_bytes} bytes")
    body = bytearray()
    while chunk := await request.content.read(READ_CHUNK_BYTES):
        body += chunk
        if len(body) > max_bytes:
            raise MessageTooLarge(f"the body is larger than the limit of {max_bytes} bytes")
    return bytes(body)


def json_body_limit(max_chars: int, overhead_bytes: int = 16 * 1024) -> int:
    """Bytes a JSON body may take to carry ``max_chars`` characters of text: each may be written
    as a 6-byte ``\\uXXXX`` escape, plus ``overhead_bytes`` for the other fields."""
    return 6 * max_chars + overhead_bytes


def is_valid_text(text: str) -> bool:
    """False for a string holding a lone UTF-16 surrogate (JSON's ``"\\ud800"``): it cannot be
    encoded, so it would fail later, in the engine or when it is echoed back to the client."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


# -- Origin ----------------------------------------------------------------------------------------


def origin_allowed(origin: str | None, host: str | None, allowed: Collection[str]) -> bool:
    """Whether a WebSocket handshake with this ``Origin`` (None: the header was absent) to this
    ``Host`` may go on (see the module docstring). ``allowed`` holds origins such as
    ``https://app.example.com`` (scheme, host and port; the default port may be left out)."""
    if origin is None:
        return True
    if ANY_ORIGIN in allowed:
        return True
    parsed = _origin(origin)
    if parsed is None:  # "null" (sandboxed frames, file: pages) or garbage
        return False
    if parsed in {_origin(entry) for entry in allowed}:
        return True
    scheme, hostname, port = parsed
    own = _host(host, scheme)
    return own is not None and own == (hostname, port)


def _origin(value: str) -> tuple[str, str, int] | None:
    """``(scheme, host, port)`` of an origin, lower-cased, the default port filled in."""
    try:
        parts = urlsplit(value.strip())
        port = parts.port
    except ValueError:
        return None
    scheme = parts.scheme.lower()
    if scheme not in _DEFAULT_PORTS or not parts.hostname or parts.path not in ("", "/"):
        return None
    return scheme, parts.hostname.lower(), port or _DEFAULT_PORTS[scheme]


def _host(host: str | None, scheme: str) -> tuple[str, int] | None:
    """``(host, port)`` of a ``Host`` header; a missing port is the origin scheme's default."""
    if not host:
        return None
    try:
        parts = urlsplit(f"//{host.strip()}")
        port = parts.port
    except ValueError:
        return None
    if not parts.hostname:
        return None
    return parts.hostname.lower(), port or _DEFAULT_PORTS[scheme]


def origin_middleware(allowed: Collection[str]) -> Middleware:
    """Middleware refusing a browser's WebSocket handshake from an origin not allowed (403)."""
    allowed = tuple(allowed)

    @web.middleware
    async def check_origin(request: web.Request, handler: Handler) -> web.StreamResponse:
        upgrade = request.headers.get(hdrs.UPGRADE, "").lower() == "websocket"
        if upgrade and not origin_allowed(request.headers.get(hdrs.ORIGIN), request.host,
                                          allowed):
            err = OriginNotAllowed(
                "this origin may not open WebSockets here; the server's operator can add it to "
                "[server] allowed_origins")
            return web.json_response({"error": {"code": err.code, "message": err.message}},
                                     status=err.http_status)
        return await handler(request)

    return check_origin


# -- static files ----------------------------------------------------------------------------------


def static_files_guard(prefix: str) -> Middleware:
    """Middleware answering 404 for a static-file path the filesystem itself rejects (a name over
    255 bytes, a NUL byte): aiohttp's static route lets that ``OSError`` / ``ValueError`` through
    as a 500. Only the path lookup is covered: the file is sent after the middleware returns."""

    @web.middleware
    async def guard(request: web.Request, handler: Handler) -> web.StreamResponse:
        if not request.path.startswith(prefix):
            return await handler(request)
        try:
            return await handler(request)
        except (OSError, ValueError):
            return web.json_response(
                {"error": {"code": "not_found", "message": "no such file"}}, status=404)

    return guard


# -- access log ------------------------------------------------------------------------------------

_QUERY_PAIR = re.compile(r"([^&=]*)=([^&]*)")


def redact_query(path_qs: str) -> str:
    """``path_qs`` with the values of credential parameters replaced by ``[redacted]``."""
    path, sep, query = path_qs.partition("?")
    if not sep:
        return path_qs

    def hide(match: re.Match[str]) -> str:
        name = match.group(1)
        secret = unquote_plus(name).strip().lower() in SECRET_QUERY_NAMES
        return f"{name}={REDACTED}" if secret else match.group(0)

    return f"{path}?{_QUERY_PAIR.sub(hide, query)}"


_SECRETS = (
    (re.compile(r"(?i)\b(token|authorization|xi_api_key|xi-api-key|api_key|access_token|key)"
                r"(=|%3D)[^&\s'\"]+"), r"\1\2" + REDACTED),
    (re.compile(r"(?i)\bbearer\s+[^\s'\",]+"), "Bearer " + REDACTED),
    (re.compile(r"\btk_[A-Za-z0-9_\-]+"), "tk_" + REDACTED),
    (re.compile(r"\beyJ[A-Za-z0-9_\-]*\.[A-Za-z0-9_\-]*\.?[A-Za-z0-9_\-]*"), REDACTED),
)
"""Credentials as they could appear in a log line: query values, bearer headers, API keys
(``tk_...``) and JWTs (base64url JSON, so they start ``eyJ``)."""


def redact_secrets(text: str) -> str:
    """``text`` with every credential-looking part replaced by ``[redacted]``."""
    for pattern, replacement in _SECRETS:
        text = pattern.sub(replacement, text)
    return text


class RedactingFilter(logging.Filter):
    """Scrubs credentials from a record's message and traceback. aiohttp's own loggers quote
    the start of a request it could not parse (``Got more than 8190 bytes when reading:
    b'/v1/stream?token=...'``), which would otherwise put a key into the server's log."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        record.msg, record.args = redact_secrets(message), None
        if record.exc_text:
            record.exc_text = redact_secrets(record.exc_text)
        record.exc_info = None if record.exc_text else record.exc_info
        return True


REDACTED_LOGGERS = ("aiohttp.server", "aiohttp.access", "aiohttp.web", "aiohttp.websocket",
                    "aiohttp.internal")


def install_log_redaction(names: Collection[str] = REDACTED_LOGGERS) -> None:
    """Attach one ``RedactingFilter`` to each of these loggers (idempotent; the app factory
    calls it)."""
    for name in names:
        logger = logging.getLogger(name)
        if not any(isinstance(f, RedactingFilter) for f in logger.filters):
            logger.addFilter(RedactingFilter())


class RedactingAccessLogger(AbstractAccessLogger):
    """One line per request: remote, method, path with credentials redacted, status, size, time.
    Pass as ``access_log_class`` to ``web.run_app`` / ``AppRunner``."""

    def log(self, request: web.BaseRequest, response: web.StreamResponse, time: float) -> None:
        self.logger.info('%s "%s %s" %d %d %.3fs', request.remote, request.method,
                         redact_query(request.path_qs), response.status,
                         response.body_length, time)

    @property
    def enabled(self) -> bool:
        return self.logger.isEnabledFor(logging.INFO)
