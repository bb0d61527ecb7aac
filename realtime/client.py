"""Asyncio client of the native streaming protocol (docs/protocol.md), for tools, tests and load tests.

Two layers, as on the server side:

* ``Demux`` (``realtime.demux``) is pure: it takes parsed server messages with the time they
  arrived and files them under their context in a ``ContextRecord`` (audio bytes, frame arrival
  times, alignment, errors, completion). The caller notes what it sent, with the time, so a record
  holds both sides of one utterance's timeline.
* ``StreamClient`` drives one WebSocket (aiohttp): it connects and waits for ``ready``, sends client
  messages, and runs one reader task that timestamps every incoming message (``time.monotonic()``)
  and feeds the demux.

Usage::

    async with await StreamClient.connect("ws://127.0.0.1:8080", api_key) as client:
        await client.stream_words("turn-1", "Hello there, how are you?", words_per_s=8)
        await client.close_context("turn-1")
        record = await client.wait_done("turn-1", timeout_s=30)

Connection failures raise a ``ClientError`` subclass whose ``code`` names the failure; errors the
server sends during a session are recorded, not raised (a session survives most of them).
"""

from __future__ import annotations

import asyncio
import os
import re
import time
import urllib.parse
from pathlib import Path
from types import TracebackType
from typing import Self

import aiohttp

from realtime.demux import (
    PCM_S16LE,
    REFUSING_CODES,
    ContextRecord,
    ControlSent,
    Demux,
    ErrorEvent,
    FrameArrived,
    TextSent,
)
from realtime.protocol import (
    CancelMessage,
    ClientMessage,
    CloseContextMessage,
    ErrorMessage,
    FlushMessage,
    Ready,
    ReportMessage,
    TextMessage,
    parse_server_message,
)
from session.errors import TimbreError

__all__ = [
    "PCM_S16LE", "REFUSING_CODES", "ClientError", "ConnectFailed", "ConnectionLost",
    "ContextRecord", "ControlSent", "Demux", "DoneTimeout", "ErrorEvent", "FrameArrived",
    "ServerRefused", "StreamClient", "TextSent", "Unauthorized", "resolve_api_key",
    "split_words", "stream_url",
]

"""Error codes that, before ``context_started``, mean the server did not start the context."""


# -- client-side errors ---------------------------------------------------------------------------


class ClientError(Exception):
    """Base of the failures a client sees: ``code`` names it (a server error code where the server
    gave one), ``retryable`` says whether trying again later can help."""

    code = "client_error"
    retryable = False

    def __init__(self, message: str, *, code: str | None = None, close_code: int | None = None):
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code
        self.close_code = close_code


class ConnectFailed(ClientError):
    """No WebSocket could be opened (refused, unreachable, timed out, HTTP error)."""

    code = "connect_failed"
    retryable = True


class Unauthorized(ClientError):
    """The server answered the upgrade with HTTP 401: missing or wrong API key."""

    code = "unauthorized"


class ServerRefused(ClientError):
    """The server opened the socket but sent ``error`` and closed instead of ``ready``
    (``server_busy``, ``bad_sample_rate``, ...); ``code`` is the server's code."""

    @property
    def retryable(self) -> bool:  # type: ignore[override]
        return self.code == "server_busy" or self.close_code == 1013


class ConnectionLost(ClientError):
    """The socket closed while the client still expected messages."""

    code = "connection_closed"
    retryable = True


class DoneTimeout(ClientError):
    """A context did not finish within the time the caller allowed."""

    code = "done_timeout"
    retryable = True


# -- the asyncio driver ---------------------------------------------------------------------------

_WORD = re.compile(r"\S+\s*")


def split_words(text: str) -> list[str]:
    """Split ``text`` into LLM-like pieces: each word keeps the whitespace after it, so joining the
    pieces gives ``text`` back (less any leading whitespace)."""
    return _WORD.findall(text)


def stream_url(
    base_url: str,
    *,
    voice: str | None = None,
    audio_format: str = PCM_S16LE,
    sample_rate_hz: int | None = None,
    speed: float | None = None,
    pitch: float | None = None,
    language: str | None = None,
) -> str:
    """The ``/v1/stream`` URL for ``base_url`` (``ws://host:port``; a URL that already has a path is
    used as it is) with the query parameters given (None: left out, the server's default)."""
    parts = urllib.parse.urlsplit(base_url)
    if parts.scheme not in ("ws", "wss", "http", "https"):
        raise ValueError(f"not a WebSocket URL: {base_url!r}")
    path = parts.path if parts.path not in ("", "/") else "/v1/stream"
    query = dict(urllib.parse.parse_qsl(parts.query))
    query["format"] = audio_format
    if voice is not None:
        query["voice"] = voice
    if sample_rate_hz is not None:
        query["sample_rate"] = str(sample_rate_hz)
    if speed is not None:
        query["speed"] = str(speed)
    if pitch is not None:
        query["pitch"] = str(pitch)
    if language is not None:
        query["language"] = language
    return urllib.parse.urlunsplit(
        (parts.scheme, parts.netloc, path, urllib.parse.urlencode(query), "")
    )


class StreamClient:
    """One session over one WebSocket. Create with ``await StreamClient.connect(...)``; close with
    ``await client.close()`` or ``async with``. Not safe to share between event loops."""

    def __init__(
        self,
        http: aiohttp.ClientSession,
        ws: aiohttp.ClientWebSocketResponse,
        demux: Demux,
    ) -> None:
        self._http = http
        self._ws = ws
        self.demux = demux
        self._finished: dict[str, asyncio.Event] = {}
        self._heard: dict[str, asyncio.Event] = {}
        self._reader = asyncio.create_task(self._read(), name="timbre-client-reader")

    @classmethod
    async def connect(
        cls,
        url: str,
        api_key: str | None,
        *,
        voice: str | None = None,
        audio_format: str = PCM_S16LE,
        sample_rate_hz: int | None = 24000,
        speed: float | None = None,
        pitch: float | None = None,
        language: str | None = None,
        timeout_s: float = 10.0,
    ) -> StreamClient:
        """Open a session and wait for ``ready``. ``voice``, ``speed``, ``pitch`` (semitones) and
        ``language`` are the session's defaults for its contexts (None: the server's).

        Raises ``Unauthorized`` (HTTP 401), ``ConnectFailed`` (refused, unreachable, other HTTP
        status, no ``ready`` within ``timeout_s``) or ``ServerRefused`` (the server sent ``error``
        and closed, e.g. ``server_busy``, ``bad_sample_rate`` or ``unsupported_language``).
        """
        target = stream_url(
            url,
            voice=voice,
            audio_format=audio_format,
            sample_rate_hz=sample_rate_hz,
            speed=speed,
            pitch=pitch,
            language=language,
        )
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        http = aiohttp.ClientSession()
        try:
            async with asyncio.timeout(timeout_s):
                ws = await _open(http, target, headers)
                demux = Demux(sample_rate_hz or 24000, audio_format)
                await _await_ready(ws, demux)
        except TimeoutError:
            await http.close()
            raise ConnectFailed(f"no ready from {target} within {timeout_s:g} s") from None
        except BaseException:
            await http.close()
            raise
        return cls(http, ws, demux)

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    @property
    def ready(self) -> Ready:
        assert self.demux.ready is not None  # connect() returns only after ready
        return self.demux.ready

    @property
    def closed(self) -> bool:
        return self._reader.done()

    def context(self, context_id: str) -> ContextRecord:
        return self.demux.record(context_id)

    async def send_text(
        self,
        context_id: str,
        text: str,
        *,
        voice: str | None = None,
        speed: float | None = None,
        pitch: float | None = None,
        language: str | None = None,
    ) -> float:
        """Send one ``text`` message; returns its send time (monotonic seconds). The voice options
        (``pitch`` in semitones) count only on the message that starts the context; None: the
        session's. The server answers a bad value with an ``error`` for the context (recorded)."""
        now = time.monotonic()
        self.demux.note_text(context_id, text, now)
        await self._send(
            TextMessage(
                context_id=context_id,
                text=text,
                voice=voice,
                speed=speed,
                pitch=pitch,
                language=language,
            )
        )
        return now

    async def stream_words(
        self,
        context_id: str,
        text: str,
        words_per_s: float,
        *,
        voice: str | None = None,
        speed: float | None = None,
        pitch: float | None = None,
        language: str | None = None,
    ) -> None:
        """Send ``text`` word by word at ``words_per_s`` (on an absolute schedule, so the rate does
        not drift); ``words_per_s <= 0`` sends it all in one message. ``voice``, ``speed``,
        ``pitch`` and ``language`` go with the first message, which starts the context. Stops early
        once the server has refused the context (its record says ``refused``): the rest would only
        be refused too. Does not close the context."""
        pieces = split_words(text) if words_per_s > 0 else [text]
        start = time.monotonic()
        for index, piece in enumerate(pieces):
            if index:
                await asyncio.sleep(max(0.0, start + index / words_per_s - time.monotonic()))
                if self.demux.record(context_id).refused:
                    return
            if index == 0:
                await self.send_text(
                    context_id, piece, voice=voice, speed=speed, pitch=pitch, language=language
                )
            else:
                await self.send_text(context_id, piece)

    async def flush(self, context_id: str) -> None:
        self.demux.note_control(context_id, "flush", time.monotonic())
        await self._send(FlushMessage(context_id=context_id))

    async def close_context(self, context_id: str) -> None:
        self.demux.note_control(context_id, "close_context", time.monotonic())
        await self._send(CloseContextMessage(context_id=context_id))

    async def cancel(self, context_id: str) -> None:
        self.demux.note_control(context_id, "cancel", time.monotonic())
        await self._send(CancelMessage(context_id=context_id))

    async def report(self, underruns: int, buffered_ms: float | None = None) -> None:
        await self._send(ReportMessage(underruns=underruns, buffered_ms=buffered_ms))

    async def wait_done(self, context_id: str, timeout_s: float) -> ContextRecord:
        """Wait until ``context_id`` is finished (``context_done`` or refused) and return its record.

        Raises ``DoneTimeout`` after ``timeout_s``, ``ConnectionLost`` if the socket closes first.
        """
        record = self.demux.record(context_id)
        if not record.finished and not self.closed:
            await self._wait(self._finished, context_id, timeout_s, "not done")
        if not record.finished:
            raise self._lost()
        return record

    async def wait_audio(self, context_id: str, timeout_s: float) -> ContextRecord:
        """Wait until ``context_id`` has its first audio frame, or has finished without one, and
        return its record (a finished one may hold no audio: refused, cancelled, empty text).

        Raises ``DoneTimeout`` after ``timeout_s``, ``ConnectionLost`` if the socket closes first.
        """
        record = self.demux.record(context_id)
        if not (record.frames or record.finished) and not self.closed:
            await self._wait(self._heard, context_id, timeout_s, "no audio")
        if not (record.frames or record.finished):
            raise self._lost()
        return record

    async def _wait(
        self, events: dict[str, asyncio.Event], context_id: str, timeout_s: float, failure: str
    ) -> None:
        event = events.setdefault(context_id, asyncio.Event())
        try:
            async with asyncio.timeout(timeout_s):
                await event.wait()
        except TimeoutError:
            raise DoneTimeout(f"context {context_id!r}: {failure} within {timeout_s:g} s") from None

    async def close(self) -> None:
        """Close the socket (code 1000) and stop the reader. Safe to call twice."""
        try:
            await self._ws.close()
            await asyncio.wait_for(asyncio.shield(self._reader), timeout=5.0)
        except TimeoutError:
            self._reader.cancel()
        except (aiohttp.ClientError, ConnectionError):
            pass  # the socket is gone either way; the reader recorded why
        finally:
            if self.demux.close_code is None:
                self.demux.close_code = self._ws.close_code
            await self._http.close()

    async def _send(self, message: ClientMessage) -> None:
        if self._ws.closed:
            raise self._lost()
        try:
            await self._ws.send_str(message.to_wire())
        except (ConnectionError, aiohttp.ClientError) as exc:
            raise self._lost() from exc

    def _lost(self) -> ConnectionLost:
        code = self.demux.close_code if self.demux.close_code is not None else self._ws.close_code
        fatal = self.demux.session_errors[-1].code if self.demux.session_errors else None
        reason = f": {fatal}" if fatal else ""
        return ConnectionLost(f"connection closed (code {code}){reason}", close_code=code)

    async def _read(self) -> None:
        try:
            async for msg in self._ws:
                now = time.monotonic()
                if msg.type == aiohttp.WSMsgType.ERROR:
                    self.demux.session_errors.append(
                        ErrorEvent(now, "connection_error", str(self._ws.exception()))
                    )
                    break
                if msg.type in (aiohttp.WSMsgType.TEXT, aiohttp.WSMsgType.BINARY):
                    self._dispatch(msg.data, now)
        except (aiohttp.ClientError, ConnectionError) as exc:
            self.demux.session_errors.append(
                ErrorEvent(time.monotonic(), "connection_error", str(exc))
            )
        finally:
            self.demux.connection_lost(self._ws.close_code, time.monotonic())
            for event in (*self._finished.values(), *self._heard.values()):
                event.set()

    def _dispatch(self, data: str | bytes, now: float) -> None:
        try:
            message = parse_server_message(data)
        except TimbreError as exc:
            self.demux.session_errors.append(ErrorEvent(now, "bad_server_message", str(exc)))
            return
        record = self.demux.feed(message, now)
        if record is None:
            return
        if record.finished:
            self._finished.setdefault(record.context_id, asyncio.Event()).set()
        if record.frames or record.finished:
            self._heard.setdefault(record.context_id, asyncio.Event()).set()


async def _open(
    http: aiohttp.ClientSession, url: str, headers: dict[str, str]
) -> aiohttp.ClientWebSocketResponse:
    try:
        return await http.ws_connect(url, headers=headers, autoping=True, max_msg_size=0)
    except aiohttp.WSServerHandshakeError as exc:
        if exc.status == 401:
            raise Unauthorized(f"{url}: the server refused the API key (HTTP 401)") from None
        raise ConnectFailed(
            f"{url}: HTTP {exc.status} {exc.message}", code=f"http_{exc.status}"
        ) from None
    except aiohttp.ClientConnectorError as exc:
        if isinstance(exc.os_error, ConnectionRefusedError):
            raise ConnectFailed(f"cannot connect to {url}: connection refused") from None
        raise ConnectFailed(f"cannot connect to {url}: {exc.os_error or exc}") from None
    except (aiohttp.ClientError, OSError) as exc:
        raise ConnectFailed(f"cannot connect to {url}: {exc}") from None


async def _await_ready(ws: aiohttp.ClientWebSocketResponse, demux: Demux) -> None:
    """Read until ``ready``; an ``error`` (followed by the server's close) raises ``ServerRefused``."""
    refusal: ErrorMessage | None = None
    while True:
        msg = await ws.receive()
        now = time.monotonic()
        if msg.type in (aiohttp.WSMsgType.TEXT, aiohttp.WSMsgType.BINARY):
            try:
                message = parse_server_message(msg.data)
            except TimbreError as exc:
                await ws.close()
                raise ConnectFailed(f"bad message before ready: {exc}", code="bad_server_message")
            if isinstance(message, ErrorMessage):
                refusal = refusal or message
                continue
            demux.feed(message, now)
            if isinstance(message, Ready):
                return
            continue
        close_code = ws.close_code
        await ws.close()
        if refusal is not None:
            raise ServerRefused(
                f"server refused the session: {refusal.code}: {refusal.message}",
                code=refusal.code,
                close_code=close_code,
            )
        raise ConnectFailed(
            f"socket closed before ready (code {close_code})", close_code=close_code
        )


def resolve_api_key(explicit: str | None, data_dir: Path | None = None) -> str | None:
    """The API key a command-line client uses: ``explicit`` (``--key``), else ``$TIMBRE_API_KEY``,
    else the demo key the server wrote to ``data_dir/demo-api-key`` (default: ``$DATA_DIR``, else
    ``./data``, as ``timbre serve`` uses); ``None`` when there is none."""
    if explicit:
        return explicit
    from_env = os.environ.get("TIMBRE_API_KEY", "").strip()
    if from_env:
        return from_env
    directory = data_dir if data_dir is not None else Path(os.environ.get("DATA_DIR") or "data")
    demo = directory / "demo-api-key"
    try:
        return demo.read_text(encoding="utf-8").strip() or None
    except OSError:
        return None
