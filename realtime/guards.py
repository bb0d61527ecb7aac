"""Guards at the HTTP edge, shared by every transport: request-body limits, the Origin check of
browser WebSockets, and an access log that never writes a credential.

Body limits. aiohttp's ``client_max_size`` answers an oversized body with a ``text/plain`` 413 from
deep inside ``request.read()``; a client of the OpenAI- or ElevenLabs-compatible API could not
read that. ``read_body`` applies each endpoint's own (much smaller) limit and raises
``MessageTooLarge``, which every handler answers in its own protocol's error shape.

Body deadlines. aiohttp puts no deadline on reading a request body: a client that sends its
headers and then trickles or stops its body holds the handler (and its connection) for ever, and
a chunked body whose framing breaks after the handler started reading is never failed either
(aiohttp 3.14, C parser, issue #10596: the 400 is queued behind the request). ``BodyReadClock``
bounds every read of a body -- ``read_body`` and the multipart readers (``realtime.voice_form``,
``realtime.watermark_api``) -- by an idle deadline (no byte for ``[server] body_idle_timeout_s``)
and a whole-body deadline (``body_timeout_s`` plus the expected size at
``body_min_bytes_per_s``, so a 50 MiB upload on a slow link still fits while a small JSON body
cannot be dribbled out for minutes). Past either: ``BodyTimeout`` (408 ``body_timeout``), and the
handler answers and is freed; aiohttp then reads (and drops) the rest of the body for at most its
10 s lingering time and closes the connection.

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

import asyncio
import logging
import re
from collections.abc import Awaitable, Callable, Collection
from dataclasses import dataclass
from functools import partial
from typing import TypeVar
from urllib.parse import unquote_plus, urlsplit

from aiohttp import hdrs, web
from aiohttp.abc import AbstractAccessLogger
from aiohttp.typedefs import Middleware

from realtime.appkeys import CONFIG
from session.errors import BodyTimeout, MessageTooLarge, OriginNotAllowed, TimbreError

READ_CHUNK_BYTES = 64 * 1024
ANY_ORIGIN = "*"
SECRET_QUERY_NAMES = frozenset({"token", "authorization", "xi_api_key", "xi-api-key", "api_key",
                                "key", "access_token"})
"""Query parameters whose values are credentials (compared case-insensitively)."""
REDACTED = "[redacted]"
_DEFAULT_PORTS = {"http": 80, "ws": 80, "https": 443, "wss": 443}

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
T = TypeVar("T")


# -- body deadlines --------------------------------------------------------------------------------


@dataclass(frozen=True)
class BodyDeadlines:
    """How long a request body may take (``[server] body_*``; see the module docstring)."""

    idle_s: float = 15.0
    """No byte for this long: the client has stalled (or its chunked framing broke)."""
    floor_s: float = 60.0
    """Every body gets this long, however small."""
    min_bytes_per_s: float = 64 * 1024
    """Plus its expected size at this rate (512 kbit/s): the slowest uplink we wait for."""

    def total_s(self, expected_bytes: int) -> float:
        """The whole-body deadline of a body expected to be ``expected_bytes`` long."""
        return self.floor_s + max(0, expected_bytes) / self.min_bytes_per_s

    @classmethod
    def of(cls, request: web.BaseRequest) -> BodyDeadlines:
        """The app's configured deadlines (the defaults for an app without a config)."""
        config = request.app.get(CONFIG) if isinstance(request, web.Request) else None
        if config is None:
            return cls()
        server = config.server
        return cls(server.body_idle_timeout_s, server.body_timeout_s,
                   server.body_min_bytes_per_s)


class BodyReadClock:
    """The deadlines of reading one request body: every read of it goes through ``read`` and is
    cut at the idle deadline or at the whole-body deadline, whichever comes first.

    ``max_bytes`` is the endpoint's body limit; the whole-body deadline is sized from the declared
    ``Content-Length`` when there is one (a client announcing 200 bytes gets no 50-MiB
    allowance), else from the limit (chunked bodies)."""

    def __init__(self, request: web.BaseRequest, max_bytes: int) -> None:
        self.deadlines = BodyDeadlines.of(request)
        declared = request.content_length
        expected = max_bytes if declared is None else min(declared, max_bytes)
        self._loop = asyncio.get_running_loop()
        self._total_s = self.deadlines.total_s(expected)
        self._end = self._loop.time() + self._total_s

    async def read(self, read: Callable[[], Awaitable[T]]) -> T:
        """``await read()``, or ``BodyTimeout`` when it outlasts either deadline (the read is
        cancelled; the body is abandoned)."""
        remaining = self._end - self._loop.time()
        idle = remaining >= self.deadlines.idle_s
        budget = self.deadlines.idle_s if idle else remaining
        if budget <= 0:
            raise self._timeout(idle=False)
        try:
            async with asyncio.timeout(budget):
                return await read()
        except TimeoutError:
            raise self._timeout(idle=idle) from None

    def _timeout(self, *, idle: bool) -> BodyTimeout:
        if idle:
            return BodyTimeout(f"no part of the request body arrived for "
                               f"{self.deadlines.idle_s:g} s; send the body without pausing")
        return BodyTimeout(f"the request body was not complete within {self._total_s:.0f} s")


# -- body limits -----------------------------------------------------------------------------------


async def read_body(request: web.Request, max_bytes: int, *,
                    too_large: Callable[[str], TimbreError] = MessageTooLarge) -> bytes:
    """The request body, at most ``max_bytes``. Raises ``too_large`` (``MessageTooLarge``, HTTP
    413, unless the endpoint has its own) as soon as the declared or the received length passes
    the limit, without reading the rest, and ``BodyTimeout`` (408) when the body stalls or takes
    too long (``BodyReadClock``)."""
    if request.content_length is not None and request.content_length > max_bytes:
        raise too_large(f"the body is {request.content_length} bytes; the limit is "
                        f"{max_bytes} bytes")
    clock = BodyReadClock(request, max_bytes)
    body = bytearray()
    next_chunk = partial(request.content.read, READ_CHUNK_BYTES)
    while chunk := await clock.read(next_chunk):
        body += chunk
        if len(body) > max_bytes:
            raise too_large(f"the body is larger than the limit of {max_bytes} bytes")
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
