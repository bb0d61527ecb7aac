"""``GET /v1/stream``: the native protocol over an aiohttp WebSocket.

The handler only moves frames: ``NativeProtocol`` (sans-I/O) checks and serialises them, ``Session``
does the work, and ``NativeBridge`` translates between the two. One reader loop, one writer task.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, replace

from aiohttp import WSMsgType, web

from inference.engine import FloatAudio
from realtime.appkeys import (
    CATALOG,
    CONFIG,
    LIMITER,
    LIVE,
    METRICS,
    PRINCIPAL,
    PROFILES,
    TENANTS,
    VOICE_SERVICE,
)
from realtime.codecs import StreamEncoder, make_encoder
from realtime.metrics import Metrics
from realtime.native_connection import NativeProtocol
from realtime.native_query import StreamParams as StreamParams  # noqa: PLC0414 (re-exported)
from realtime.native_query import native_format
from realtime.native_query import parse_query as parse_query  # noqa: PLC0414 (re-exported)
from realtime.protocol import (
    Alignment,
    CancelMessage,
    ClientMessage,
    CloseContextMessage,
    ConfigMessage,
    ContextDone,
    ContextStarted,
    FlushMessage,
    Ready,
    ReportMessage,
    TextMessage,
    WordTime,
    error_message,
)
from session.authn import Scope
from session.context import (
    Context,
    ContextAudio,
    ContextError,
    ContextEvent,
    ContextFinished,
    ContextState,
    ContextWords,
)
from session.errors import (
    BadRequest,
    InactivityTimeout,
    ServerBusy,
    TimbreError,
    with_close,
)
from session.ids import TenantId
from session.languages import check_language
from session.live import LiveVoices
from session.output import OutputBuffer
from session.session import Session, SessionDefaults
from session.tenancy import StreamQuota
from session.voices import PROFILE_PREFIX, ProfileVoices, ResolvedVoice, VoiceUnavailable

log = logging.getLogger(__name__)

PROTOCOL_VERSION = 1


@dataclass
class _ContextOutput:
    encoder: StreamEncoder
    input_rate: int
    samples_in: int = 0
    pcm_bytes: int = 0

    @property
    def samples_sent(self) -> int:
        """Samples at the output rate: exact for PCM, from the input count for coded formats."""
        fmt = self.encoder.format
        if fmt.codec == "pcm_s16le":
            return self.pcm_bytes // 2
        return round(self.samples_in * fmt.sample_rate_hz / self.input_rate)


@dataclass(frozen=True)
class Tenancy:
    """The caller's side of a stream: who it is, its quota hold, and where profiles resolve."""

    tenant: TenantId
    quota: StreamQuota
    profiles: ProfileVoices
    live: LiveVoices
    record_use: Callable[[str], None]
    """Audit a context speaking with a voice profile (in the background)."""


class NativeBridge:
    """Turns client messages into session calls and session events into wire frames."""

    def __init__(self, session: Session, protocol: NativeProtocol, output: OutputBuffer,
                 params: StreamParams, metrics: Metrics, tenancy: Tenancy) -> None:
        self.session = session
        self.protocol = protocol
        self.output = output
        self.format = params.format
        self.sample_rate = params.sample_rate
        self.metrics = metrics
        self.tenancy = tenancy
        self._outputs: dict[str, _ContextOutput] = {}
        self._unregister: dict[str, Callable[[], None]] = {}
        self.fatal: TimbreError | None = None

    # client -> session

    async def handle(self, message: ClientMessage) -> None:
        """Apply one checked client message. Raises TimbreError for refusals."""
        match message:
            case TextMessage():
                await self._text(message)
            case FlushMessage():
                self.session.context(message.context_id).flush()
            case CloseContextMessage():
                ctx = self.session.contexts.get(message.context_id)
                if ctx is not None and ctx.state is ContextState.ACTIVE:
                    ctx.close()  # else it races context_done: nothing left to do
            case CancelMessage():
                self._cancel(message.context_id)
            case ConfigMessage():
                await self._configure(message)
            case ReportMessage():
                if message.underruns > 0:
                    self.metrics.underruns.inc(message.underruns)

    async def _text(self, message: TextMessage) -> None:
        ctx = self.session.contexts.get(message.context_id)
        if ctx is None or ctx.finished:
            ctx = await self._start(message)
        self.tenancy.quota.allow_text(len(message.text))
        ctx.add_text(message.text)

    async def _start(self, message: TextMessage) -> Context:
        try:
            voice = None
            if message.voice is not None:
                voice = await self.tenancy.profiles.resolve(self.tenancy.tenant, message.voice)
            language = self._language(voice, message.language)
            ctx = self.session.start_context(message.context_id, voice, message.speed,
                                             message.pitch, language)
        except TimbreError as err:
            self.protocol.refuse(message.context_id, err.code)
            err.context_id = err.context_id or message.context_id
            raise
        voice_id = ctx.settings.voice.voice_id
        if voice_id.startswith(PROFILE_PREFIX):
            self.tenancy.record_use(voice_id)
            context_id = ctx.context_id

            def end(reason: str) -> None:
                self._revoked(context_id, reason)

            self._unregister[context_id] = self.tenancy.live.add(
                self.tenancy.tenant, voice_id, end)
        engine_rate = ctx.scheduler.engine.sample_rate_hz
        self._outputs[ctx.context_id] = _ContextOutput(
            make_encoder(native_format(self.format, self.sample_rate), engine_rate), engine_rate)
        self.metrics.active_contexts.inc()
        settings = ctx.settings
        self._put(self.protocol.send(ContextStarted(
            ctx.context_id, settings.voice.voice_id, self.format, self.sample_rate,
            settings.speed, settings.pitch, settings.language)))
        return ctx

    def _language(self, voice: ResolvedVoice | None, language: str | None) -> str | None:
        """The language contexts with ``voice`` (None: the session's) will speak, normalised.
        Raises UnsupportedLanguage when that voice cannot speak it, whether the language was
        asked for now or is the session's default (set for another voice)."""
        return check_language(voice or self.session.defaults.voice,
                              language if language is not None else self.session.defaults.language)

    def _cancel(self, context_id: str) -> None:
        ctx = self.session.contexts.get(context_id)
        if ctx is None or ctx.finished:
            return  # it raced context_done
        dropped = self.output.drop(context_id)
        if dropped:
            self.metrics.dropped_frames.inc(dropped)
        ctx.cancel()

    def _revoked(self, context_id: str, reason: str) -> None:
        """The context's voice profile was revoked or deleted: it ends now, with an error."""
        self._unregister.pop(context_id, None)
        ctx = self.session.contexts.get(context_id)
        if ctx is None or ctx.finished:
            return
        self.send_error(VoiceUnavailable(reason, context_id=context_id))
        self.protocol.cancel(context_id)
        self._cancel(context_id)

    async def _configure(self, message: ConfigMessage) -> None:
        voice = None
        if message.voice is not None:
            voice = await self.tenancy.profiles.resolve(self.tenancy.tenant, message.voice)
        language = self._language(voice, message.language)  # checked before anything changes
        fmt = message.format or self.format
        rate = native_format(fmt, message.sample_rate or self.sample_rate).sample_rate_hz
        self.session.configure(voice, message.speed, message.pitch, language)
        self.format, self.sample_rate = fmt, rate

    # session -> client

    def on_event(self, event: ContextEvent) -> None:
        try:
            self._on_event(event)
        except TimbreError as err:  # slow consumer: the connection ends
            self.fatal = err
            self.output.close()

    def _on_event(self, event: ContextEvent) -> None:
        if isinstance(event, ContextAudio):
            self._audio(event.context_id, event.audio)
        elif isinstance(event, ContextWords):
            words = tuple(WordTime(w.word, round(w.start_ms, 1), round(w.end_ms, 1))
                          for w in event.words)
            self._put(self.protocol.send(Alignment(event.context_id, words)))
        elif isinstance(event, ContextError):
            self.metrics.errors.labels(event.error.code).inc()
            self._put(error_message(event.error).to_wire())
        elif isinstance(event, ContextFinished):
            self._finished(event)

    def _audio(self, context_id: str, audio: FloatAudio) -> None:
        out = self._outputs[context_id]
        ctx = self.session.contexts[context_id]
        if out.samples_in == 0 and ctx.first_unit_at is not None:
            self.metrics.ttfa.observe(time.monotonic() - ctx.first_unit_at)
        out.samples_in += len(audio)
        self.metrics.audio_seconds.inc(len(audio) / out.input_rate)
        self._send(context_id, out, out.encoder.encode(audio))

    def _send(self, context_id: str, out: _ContextOutput, payload: bytes) -> None:
        if not payload:
            return
        frame = self.protocol.send_audio(context_id, payload)
        if frame is None:  # the client cancelled this context: audio in flight is dropped
            self.metrics.dropped_frames.inc()
            return
        out.pcm_bytes += len(payload)
        self._put(frame, context_id)

    def _finished(self, event: ContextFinished) -> None:
        out = self._outputs.pop(event.context_id)
        unregister = self._unregister.pop(event.context_id, None)
        if unregister is not None:
            unregister()
        if event.reason == "completed":
            self._send(event.context_id, out, out.encoder.finish())
        else:
            out.encoder.close()
        self.metrics.active_contexts.dec()
        self.metrics.characters.inc(event.spoken_characters)
        self.tenancy.quota.meter(event.spoken_characters, out.samples_in / out.input_rate)
        self._put(self.protocol.send(ContextDone(
            event.context_id, out.samples_sent, event.characters, event.reason)))

    def _put(self, frame: str | bytes, tag: str | None = None) -> None:
        self.output.put(frame, tag)

    def send_error(self, err: TimbreError) -> None:
        self.metrics.errors.labels(err.code).inc()
        self._put(error_message(err).to_wire())

    def close(self) -> None:
        self.session.close()
        for out in self._outputs.values():
            out.encoder.close()
            self.metrics.active_contexts.dec()
        self._outputs.clear()


async def stream_handler(request: web.Request) -> web.StreamResponse:
    app = request.app
    config, metrics = app[CONFIG], app[METRICS]
    principal = request[PRINCIPAL]
    try:
        principal.require(Scope.TTS)
    except TimbreError as err:
        return _http_error(metrics, err)
    limit = config.server.max_message_bytes
    ws = web.WebSocketResponse(max_msg_size=4 * limit, heartbeat=30.0)
    if not ws.can_prepare(request).ok:
        return _http_error(metrics, not_a_websocket())
    await ws.prepare(request)
    try:
        params = parse_query(dict(request.query), config.session.default_voice)
        voice = await app[PROFILES].resolve(principal.tenant, params.voice)
        params = replace(params, language=check_language(voice, params.language))
    except TimbreError as err:
        await _refuse(ws, metrics, with_close(err, 4400))
        return ws
    scheduler = voice.scheduler
    if not scheduler.ready.is_set() or scheduler.busy_streams >= scheduler.capacity_streams():
        await _refuse(ws, metrics, with_close(ServerBusy("server at capacity, retry later"), 1013))
        return ws
    try:
        codec = native_format(params.format, params.sample_rate).codec
        quota = await StreamQuota.open(app[TENANTS], app[LIMITER], principal.tenant, codec)
    except TimbreError as err:
        await _refuse(ws, metrics, with_close(err, err.close_code or 4403))
        return ws
    tenancy = Tenancy(principal.tenant, quota, app[PROFILES], app[LIVE],
                      audit_use(app, principal.tenant, principal.key_id))
    try:
        await _serve(ws, request, params, voice, tenancy)
    finally:
        await quota.close()
    return ws


def audit_use(app: web.Application, tenant: TenantId, actor: str) -> Callable[[str], None]:
    """A function that records, in the background, that a voice profile was used (audit log)."""
    service = app[VOICE_SERVICE]
    pending: set[asyncio.Task[None]] = set()

    def record(voice_id: str) -> None:
        task = asyncio.get_running_loop().create_task(
            service.record_use(tenant, voice_id, actor, {"via": "stream"}))
        pending.add(task)
        task.add_done_callback(pending.discard)

    return record


def not_a_websocket() -> BadRequest:
    """The refusal of a plain HTTP request to a WebSocket endpoint (JSON, rather than aiohttp's
    text answer)."""
    return BadRequest("this endpoint is a WebSocket: open it with an 'Upgrade: websocket' "
                      "handshake")


def _http_error(metrics: Metrics, err: TimbreError) -> web.Response:
    metrics.errors.labels(err.code).inc()
    return web.json_response({"error": {"code": err.code, "message": err.message}},
                             status=err.http_status)


async def _refuse(ws: web.WebSocketResponse, metrics: Metrics, err: TimbreError) -> None:
    metrics.errors.labels(err.code).inc()
    await ws.send_str(error_message(err).to_wire())
    await ws.close(code=err.close_code or 1011, message=err.code.encode())


async def _serve(ws: web.WebSocketResponse, request: web.Request, params: StreamParams,
                 voice: ResolvedVoice, tenancy: Tenancy) -> None:
    app = request.app
    config, metrics = app[CONFIG], app[METRICS]
    limit = config.server.max_message_bytes
    output = OutputBuffer(config.session.output_buffer_bytes)
    protocol = NativeProtocol(
        max_contexts=config.session.max_contexts,
        max_context_chars=config.session.max_context_chars,
        max_message_bytes=limit,
    )
    holder: list[NativeBridge] = []
    defaults = SessionDefaults(voice, params.speed, params.pitch, params.language)
    session = Session(app[CATALOG], config.session, defaults,
                      lambda event: holder[0].on_event(event), asyncio.get_running_loop())
    bridge = NativeBridge(session, protocol, output, params, metrics, tenancy)
    holder.append(bridge)
    metrics.active_sessions.inc()
    writer = asyncio.create_task(drain_output(ws, output))
    try:
        output.put(Ready(session.session_id, PROTOCOL_VERSION, voice.voice_id, params.format,
                         params.sample_rate).to_wire())
        await _read(ws, bridge, session)
    except Exception:
        log.exception("session %s failed", session.session_id)
        bridge.fatal = bridge.fatal or TimbreError("internal error")
    finally:
        bridge.close()
        metrics.active_sessions.dec()
        await _finish(ws, bridge, output, writer)


async def _read(ws: web.WebSocketResponse, bridge: NativeBridge, session: Session) -> None:
    poll_s = min(5.0, session.config.inactivity_timeout_s)
    while bridge.fatal is None:
        try:
            msg = await ws.receive(timeout=poll_s)
        except TimeoutError:
            if session.idle_expired():
                bridge.fatal = InactivityTimeout(
                    f"no message for {session.config.inactivity_timeout_s:.0f} s")
            continue
        if msg.type in (WSMsgType.CLOSE, WSMsgType.CLOSING, WSMsgType.CLOSED, WSMsgType.ERROR):
            return
        session.touch()
        data = msg.data if msg.type in (WSMsgType.TEXT, WSMsgType.BINARY) else b""
        await _receive(bridge, data)


async def _receive(bridge: NativeBridge, data: str | bytes) -> None:
    try:
        await bridge.handle(bridge.protocol.receive(data))
    except TimbreError as err:
        if err.fatal:
            bridge.fatal = err
        else:
            bridge.send_error(err)


async def _finish(ws: web.WebSocketResponse, bridge: NativeBridge, output: OutputBuffer,
                  writer: asyncio.Task[None]) -> None:
    err = bridge.fatal
    if err is not None and not ws.closed:
        bridge.metrics.errors.labels(err.code).inc()
        if err.code != "slow_consumer":
            try:
                output.put(error_message(err).to_wire())
            except TimbreError:
                pass
    output.close()
    if err is not None and err.code == "slow_consumer":
        writer.cancel()
    try:
        await asyncio.wait_for(writer, timeout=5.0)
    except (TimeoutError, asyncio.CancelledError):
        pass
    if not ws.closed:
        code = err.close_code if err is not None and err.close_code else 1000
        await ws.close(code=code, message=(err.code if err else "bye").encode())


async def drain_output(ws: web.WebSocketResponse, output: OutputBuffer) -> None:
    """The writer task of a WebSocket session: send queued frames until the buffer is closed and
    empty or the socket goes away (shared by the native and ElevenLabs-compatible handlers)."""
    while True:
        frame = await output.get()
        if frame is None or ws.closed:
            return
        try:
            if isinstance(frame, bytes):
                await ws.send_bytes(frame)
            else:
                await ws.send_str(frame)
        except (ConnectionResetError, RuntimeError):
            return
