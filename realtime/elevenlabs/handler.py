"""``/v1/text-to-speech/{voice_id}/stream-input`` and ``.../multi-stream-input`` over aiohttp.

The handler only moves frames: ``ElevenLabsProtocol`` (sans-I/O) parses and checks them, a
``Session`` does the work, and ``ElevenLabsBridge`` translates between the two. Every refusal is sent
as ElevenLabs' error object (``{"message", "error", "code": 1008}``) and ends the socket with 1008,
as ElevenLabs does.

Credentials, in the order looked at: the ``xi-api-key`` header, ``Authorization: Bearer``, the
``authorization`` (or ``token``) query value, then ``xi_api_key`` / ``authorization`` in the first
message. ``voice_id`` is a Timbre voice id or one of the caller's voice profiles (``v_...``);
ElevenLabs' stock voice ids are not Timbre's and answer ``unknown_voice``. The query's
``language_code`` (and Timbre's ``pitch``) become the session's defaults; a language the voice cannot
speak is refused at connect (``unsupported_language``).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass, field

from aiohttp import WSMsgType, web

from inference.engine import FloatAudio
from realtime.appkeys import (
    AUTHENTICATOR,
    CATALOG,
    CONFIG,
    LIMITER,
    LIVE,
    METRICS,
    PROFILES,
    TENANTS,
)
from realtime.codecs import OutputFormat, StreamEncoder, make_encoder, parse_output_format
from realtime.elevenlabs.alignment import CharAligner, fit, merge
from realtime.elevenlabs.errors import POLICY_VIOLATION
from realtime.elevenlabs.protocol import (
    DEFAULT_CONTEXT_ID,
    CharAlignment,
    ClientMessage,
    CloseContext,
    CloseSocket,
    ElevenLabsError,
    ElevenLabsProtocol,
    EndOfInput,
    ErrorOutput,
    FlushContext,
    InitializeConnection,
    KeepContextAlive,
    SendText,
    SocketState,
    serialize,
)
from realtime.elevenlabs.query import StreamQuery, bearer, parse_query
from realtime.metrics import Metrics
from realtime.ws_native import Tenancy, audit_use, drain_output, not_a_websocket
from session.authn import Principal, Scope
from session.context import (
    Context,
    ContextAudio,
    ContextError,
    ContextEvent,
    ContextFinished,
    ContextState,
    ContextWords,
)
from session.errors import ServerBusy, TimbreError
from session.languages import check_language
from session.output import OutputBuffer
from session.session import Session, SessionDefaults
from session.tenancy import StreamQuota
from session.voices import PROFILE_PREFIX, ResolvedVoice, VoiceUnavailable
from session.watermark import stamp

log = logging.getLogger(__name__)

FIRST_MESSAGE_TIMEOUT_S = 20.0
"""How long a socket without a credential in its handshake may take to send its first message."""


def request_credential(request: web.Request, query: StreamQuery) -> str | None:
    return (request.headers.get("xi-api-key") or bearer(request.headers.get("Authorization"))
            or bearer(query.authorization) or request.query.get("token") or None)


@dataclass
class _ContextOutput:
    encoder: StreamEncoder
    input_rate_hz: int
    aligner: CharAligner = field(default_factory=CharAligner)
    samples_in: int = 0
    pending_audio: bytes = b""
    pending_alignment: CharAlignment | None = None
    pending_start_ms: float | None = None
    flush_scheduled: bool = False

    @property
    def elapsed_ms(self) -> float:
        return 1000.0 * self.samples_in / self.input_rate_hz


class ElevenLabsBridge:
    """Turns client messages into session calls and session events into ElevenLabs frames."""

    def __init__(self, session: Session, protocol: ElevenLabsProtocol, output: OutputBuffer,
                 fmt: OutputFormat, metrics: Metrics, tenancy: Tenancy) -> None:
        self.session = session
        self.protocol = protocol
        self.output = output
        self.format = fmt
        self.metrics = metrics
        self.tenancy = tenancy
        self._outputs: dict[str, _ContextOutput] = {}
        self._unregister: dict[str, Callable[[], None]] = {}
        self._unflushed: set[str] = set()
        """Contexts that were sent text since their last flush (see ``_close_context``)."""
        self.fatal: TimbreError | None = None
        self.ended = asyncio.Event()
        """Set when the socket should close: end of input spoken, or a fatal error."""

    # client -> session

    async def handle(self, message: ClientMessage) -> None:
        """Apply one parsed message. Raises TimbreError for refusals (all fatal here)."""
        match message:
            case InitializeConnection():
                self._initialize(message)
            case SendText():
                self._text(self.protocol.context_of(message), message.text, message.flush)
            case FlushContext():
                ctx = self._live(message.context_id)
                self._unflushed.discard(message.context_id)
                if ctx is not None:
                    ctx.flush()
            case CloseContext():
                self._close_context(message.context_id)
            case EndOfInput() | CloseSocket():
                for ctx in list(self.session.contexts.values()):
                    if ctx.state is ContextState.ACTIVE:
                        ctx.close()
                self._check_done()
            case KeepContextAlive():
                pass  # the reader already reset the inactivity clock

    def _initialize(self, message: InitializeConnection) -> None:
        speed = message.voice_settings.speed if message.voice_settings else None
        context_id = message.context_id or DEFAULT_CONTEXT_ID
        if message.context_id is not None and self._live(context_id) is None:
            self._start(context_id, speed)  # multi: (re)initialise this context
        elif speed is not None:
            self.session.configure(speed=speed)
        if message.text.strip():
            self._text(context_id, message.text, False)

    def _text(self, context_id: str, text: str, flush: bool) -> None:
        ctx = self._live(context_id) or self._start(context_id, None)
        self.tenancy.quota.allow_text(len(text))
        ctx.add_text(text)
        self._outputs[context_id].aligner.add_text(text)
        if flush:
            ctx.flush()
            self._unflushed.discard(context_id)
        elif text.strip():
            self._unflushed.add(context_id)

    def _close_context(self, context_id: str) -> None:
        """``close_context``: right after a flush, speak the flushed text and then send
        ``isFinal`` (Pipecat and LiveKit end every turn with flush then close_context and wait
        for that audio); with text sent since the last flush, a barge-in: stop now. A context
        already closing is cancelled (a second close_context interrupts it)."""
        ctx = self._live(context_id)
        if ctx is not None and context_id not in self._unflushed:
            ctx.close()
        else:
            self._cancel(context_id)
        self._unflushed.discard(context_id)

    def _live(self, context_id: str) -> Context | None:
        ctx = self.session.contexts.get(context_id)
        return ctx if ctx is not None and ctx.state is ContextState.ACTIVE else None

    def _start(self, context_id: str, speed: float | None) -> Context:
        if self.protocol.state is SocketState.ENDING:
            raise ElevenLabsError("the socket is closing: no new text is accepted")
        ctx = self.session.start_context(context_id, None, speed)
        voice_id = ctx.settings.voice.voice_id
        if voice_id.startswith(PROFILE_PREFIX):
            self.tenancy.record_use(voice_id)
            self._unregister[context_id] = self.tenancy.live.add(
                self.tenancy.tenant, voice_id, lambda reason: self._revoked(context_id, reason))
        rate = ctx.scheduler.engine.sample_rate_hz
        self._outputs[context_id] = _ContextOutput(make_encoder(self.format, rate), rate)
        self.protocol.context_started(context_id)
        self.metrics.active_contexts.inc()
        return ctx

    def _cancel(self, context_id: str) -> None:
        ctx = self.session.contexts.get(context_id)
        if ctx is None or ctx.finished:
            return
        dropped = self.output.drop(context_id)
        if dropped:
            self.metrics.dropped_frames.inc(dropped)
        ctx.cancel()

    def _revoked(self, context_id: str, reason: str) -> None:
        self._unregister.pop(context_id, None)
        self._fail(VoiceUnavailable(reason, context_id=context_id))

    # session -> client

    def on_event(self, event: ContextEvent) -> None:
        try:
            if isinstance(event, ContextAudio):
                self._audio(event.context_id, event.audio)
            elif isinstance(event, ContextWords):
                out = self._outputs[event.context_id]
                start = out.pending_start_ms if out.pending_start_ms is not None else 0.0
                out.pending_alignment = merge(out.pending_alignment,
                                              out.aligner.align(event.words, start))
            elif isinstance(event, ContextError):
                self._fail(event.error)
            elif isinstance(event, ContextFinished):
                self._finished(event)
        except TimbreError as err:  # slow consumer: the connection ends
            self._fail(err)

    def _audio(self, context_id: str, audio: FloatAudio) -> None:
        out = self._outputs[context_id]
        if out.pending_start_ms is None:
            out.pending_start_ms = out.elapsed_ms
        out.samples_in += len(audio)
        self.metrics.audio_seconds.inc(len(audio) / out.input_rate_hz)
        out.pending_audio += out.encoder.encode(audio)
        if not out.flush_scheduled:
            # The words of this audio follow in the same callback: send both together.
            out.flush_scheduled = True
            asyncio.get_running_loop().call_soon(self._flush, context_id, out)

    def _flush(self, context_id: str, out: _ContextOutput) -> None:
        out.flush_scheduled = False
        if not out.pending_audio or context_id not in self._outputs:
            return  # an encoder still filling its first frame: the alignment waits with it
        try:
            self._send_audio(context_id, out)
        except TimbreError as err:
            self._fail(err)

    def _send_audio(self, context_id: str, out: _ContextOutput) -> None:
        start = out.pending_start_ms if out.pending_start_ms is not None else out.elapsed_ms
        alignment = fit(out.pending_alignment, out.elapsed_ms - start)
        message = self.protocol.audio(context_id, out.pending_audio, alignment)
        out.pending_audio, out.pending_alignment, out.pending_start_ms = b"", None, None
        self.output.put(serialize(message), context_id)

    def _finished(self, event: ContextFinished) -> None:
        out = self._outputs.pop(event.context_id)
        self._unflushed.discard(event.context_id)
        unregister = self._unregister.pop(event.context_id, None)
        if unregister is not None:
            unregister()
        if event.reason == "completed":
            out.pending_audio += out.encoder.finish()
            start = out.pending_start_ms if out.pending_start_ms is not None else out.elapsed_ms
            out.pending_alignment = merge(out.pending_alignment,
                                          out.aligner.rest(out.elapsed_ms - start))
            if out.pending_start_ms is None:
                out.pending_start_ms = start
            if out.pending_audio or out.pending_alignment is not None:
                self._send_audio(event.context_id, out)
        else:
            out.encoder.close()
        self.metrics.active_contexts.dec()
        self.metrics.characters.inc(event.spoken_characters)
        self.tenancy.quota.meter(event.spoken_characters, out.samples_in / out.input_rate_hz)
        self.output.put(serialize(self.protocol.context_finished(event.context_id)))
        self._check_done()

    def _check_done(self) -> None:
        if self.protocol.done:
            self.ended.set()

    def _fail(self, err: TimbreError) -> None:
        if self.fatal is None:
            self.fatal = err
        self.ended.set()

    def close(self) -> None:
        self.session.close()
        for context_id, out in self._outputs.items():
            out.encoder.close()
            self.metrics.active_contexts.dec()
            unregister = self._unregister.pop(context_id, None)
            if unregister is not None:
                unregister()
        self._outputs.clear()


# -- the aiohttp handlers -----------------------------------------------------------------------------


async def stream_input_handler(request: web.Request) -> web.StreamResponse:
    return await _handle(request, multi=False)


async def multi_stream_input_handler(request: web.Request) -> web.StreamResponse:
    return await _handle(request, multi=True)


async def _handle(request: web.Request, *, multi: bool) -> web.StreamResponse:
    app = request.app
    config = app[CONFIG]
    ws = web.WebSocketResponse(max_msg_size=4 * config.server.max_message_bytes, heartbeat=30.0)
    if not ws.can_prepare(request).ok:  # a plain HTTP request: their error shape, as JSON
        err = ElevenLabsError(not_a_websocket().message, "invalid_request")
        return web.json_response({"detail": {"status": err.code, "message": err.message}},
                                 status=400)
    await ws.prepare(request)
    protocol = ElevenLabsProtocol(multi, config.server.max_message_bytes)
    try:
        query = parse_query(dict(request.query))
        fmt = parse_output_format(query.output_format)
        credential = request_credential(request, query)
        first: ClientMessage | None = None
        if credential is None:
            first = await _first_message(ws, protocol)
            if first is None:
                return ws
            credential = first.credential if isinstance(first, InitializeConnection) else None
        principal = await _authenticate(request, credential)
        voice = await app[PROFILES].resolve(principal.tenant, request.match_info["voice_id"])
        language = check_language(voice, query.language_code)
        _check_capacity(voice)
        quota = await StreamQuota.open(app[TENANTS], app[LIMITER], principal.tenant, fmt.codec)
    except TimbreError as err:
        await _refuse(ws, app[METRICS], err)
        return ws
    tenancy = Tenancy(principal.tenant, quota, app[PROFILES], app[LIVE],
                      audit_use(app, principal.tenant, principal.key_id))
    try:
        defaults = SessionDefaults(voice, pitch=query.pitch, language=language)
        await _serve(ws, request, protocol, query, fmt, defaults, tenancy, first)
    finally:
        await quota.close()
    return ws


async def _first_message(ws: web.WebSocketResponse,
                         protocol: ElevenLabsProtocol) -> ClientMessage | None:
    try:
        msg = await ws.receive(timeout=FIRST_MESSAGE_TIMEOUT_S)
    except TimeoutError:
        raise ElevenLabsError("no initial message received", "input_timeout_exceeded") from None
    if msg.type not in (WSMsgType.TEXT, WSMsgType.BINARY):
        return None
    return protocol.receive(msg.data)


async def _authenticate(request: web.Request, credential: str | None) -> Principal:
    try:
        principal = await request.app[AUTHENTICATOR].authenticate(credential)
        principal.require(Scope.TTS)
    except TimbreError as err:
        raise ElevenLabsError(err.message, "invalid_api_key" if credential else "auth_error") \
            from None
    stamp.claim(principal.tenant)  # this route authenticates itself: its streams' provenance
    return principal


def _check_capacity(voice: ResolvedVoice) -> None:
    scheduler = voice.scheduler
    if not scheduler.ready.is_set() or scheduler.busy_streams >= scheduler.capacity_streams():
        raise ServerBusy("server at capacity, retry later")


async def _refuse(ws: web.WebSocketResponse, metrics: Metrics, err: TimbreError) -> None:
    metrics.errors.labels(err.code).inc()
    if not ws.closed:
        await ws.send_str(serialize(ErrorOutput.of(err)))
        await ws.close(code=POLICY_VIOLATION, message=err.code.encode()[:120])


async def _serve(ws: web.WebSocketResponse, request: web.Request, protocol: ElevenLabsProtocol,
                 query: StreamQuery, fmt: OutputFormat, defaults: SessionDefaults,
                 tenancy: Tenancy, first: ClientMessage | None) -> None:
    app = request.app
    config, metrics = app[CONFIG], app[METRICS]
    output = OutputBuffer(config.session.output_buffer_bytes)
    holder: list[ElevenLabsBridge] = []
    session = Session(app[CATALOG], config.session, defaults,
                      lambda event: holder[0].on_event(event), asyncio.get_running_loop())
    bridge = ElevenLabsBridge(session, protocol, output, fmt, metrics, tenancy)
    holder.append(bridge)
    metrics.active_sessions.inc()
    writer = asyncio.create_task(drain_output(ws, output))
    reader = asyncio.create_task(_read(ws, bridge, query, first))
    ended = asyncio.create_task(bridge.ended.wait())
    try:
        await asyncio.wait({reader, ended}, return_when=asyncio.FIRST_COMPLETED)
    except Exception:
        log.exception("elevenlabs session %s failed", session.session_id)
        bridge.fatal = bridge.fatal or TimbreError("internal error")
    finally:
        for task in (reader, ended):
            task.cancel()
        protocol.close()
        bridge.close()
        metrics.active_sessions.dec()
        await _finish(ws, bridge, output, writer)


async def _read(ws: web.WebSocketResponse, bridge: ElevenLabsBridge, query: StreamQuery,
                first: ClientMessage | None) -> None:
    try:
        if first is not None:
            await bridge.handle(first)
        while bridge.fatal is None:
            try:
                msg = await ws.receive(timeout=query.inactivity_timeout_s)
            except TimeoutError:
                if bridge.protocol.state is not SocketState.ENDING:
                    raise ElevenLabsError(
                        f"Have not received a new text input within the timeout of "
                        f"{query.inactivity_timeout_s} seconds. Streaming input terminated. Please "
                        "make sure to either feed the input in a timely manner, or to send the end "
                        'of input text (empty string "") when done.',
                        "input_timeout_exceeded") from None
                continue
            if msg.type in (WSMsgType.CLOSE, WSMsgType.CLOSING, WSMsgType.CLOSED, WSMsgType.ERROR):
                return
            bridge.session.touch()
            await bridge.handle(bridge.protocol.receive(msg.data))
    except TimbreError as err:
        bridge.fatal = bridge.fatal or err
    except Exception:
        log.exception("elevenlabs reader failed")
        bridge.fatal = bridge.fatal or TimbreError("internal error")


async def _finish(ws: web.WebSocketResponse, bridge: ElevenLabsBridge, output: OutputBuffer,
                  writer: asyncio.Task[None]) -> None:
    err = bridge.fatal
    if err is not None and not ws.closed:
        bridge.metrics.errors.labels(err.code).inc()
        if err.code != "slow_consumer":
            try:
                output.put(serialize(ErrorOutput.of(err)))
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
        code = 1000 if err is None else POLICY_VIOLATION
        await ws.close(code=code, message=(err.code if err else "").encode()[:120])
