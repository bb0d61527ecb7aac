"""Property-based fuzzing of every protocol core (sans I/O, so millions of frames cost seconds):
native protocol messages and its per-connection state machine, ElevenLabs' two sockets and query,
Twilio Media Streams, OpenAI speech requests, ``/v1/tokens`` bodies, and credentials through the
real authenticator.

The properties, for any input: the core returns a typed message or raises a ``TimbreError`` that is
a clear refusal (``assert_clear``), never another exception; what it returns survives a
serialise/parse round trip; and the state it keeps stays inside its limits (contexts per
connection, characters per context), so a hostile peer cannot grow it.
"""

from __future__ import annotations

import base64
import hmac
import json
import time
from typing import Any

import jwt
from hypothesis import given
from hypothesis import strategies as st

from realtime.appkeys import AUTHENTICATOR
from realtime.elevenlabs.http import parse_body as parse_elevenlabs_body
from realtime.elevenlabs.protocol import (
    ElevenLabsError,
    ElevenLabsProtocol,
    EndOfInput,
    SendText,
    bearer,
)
from realtime.elevenlabs.protocol import parse_query as parse_elevenlabs_query
from realtime.native_connection import ContextState as WireState
from realtime.native_connection import InvalidContextState, NativeProtocol
from realtime.openai_speech import (
    InvalidSpeechRequest,
    OpenAISpeechRequest,
    error_body,
    parse_speech_request,
)
from realtime.protocol import (
    AudioFrame,
    ClientMessage,
    ContextDone,
    ContextStarted,
    TextMessage,
    parse_client_message,
    parse_server_message,
)
from realtime.rest_tokens import TokenRequest, parse_token_request
from realtime.twilio.protocol import StreamSequenceError, TwilioStream
from realtime.ws_native import StreamParams
from realtime.ws_native import parse_query as parse_native_query
from session.authn import Principal, Unauthorized, parse_scopes
from session.errors import TimbreError
from tests.security.conftest import JWT_SECRET, new_tenant, on_server
from tests.security.fuzzing import (
    FUZZ,
    NUMBERS,
    TEXT,
    Tally,
    assert_clear,
    dumps,
    frames,
    objects,
    to_bytes,
)
from tests.server import RunningServer

# -- native protocol -------------------------------------------------------------------------------

CONTEXT_IDS = st.sampled_from(["a", "b", "c", "d", "default"]) | TEXT
NATIVE = objects({
    "type": st.sampled_from(["text", "flush", "close_context", "cancel", "config", "report"])
    | TEXT,
    "context_id": CONTEXT_IDS, "text": TEXT, "voice": TEXT, "speed": NUMBERS,
    "format": st.sampled_from(["pcm_s16le", "ulaw_8000", "mp3", "opus", "wav"]) | TEXT,
    "sample_rate": NUMBERS, "underruns": NUMBERS, "buffered_ms": NUMBERS,
})


@FUZZ
@given(frame=frames(NATIVE))
def test_native_messages_parse_or_are_refused_clearly(tally: Tally, frame: str | bytes) -> None:
    tally.hit()
    try:
        message = parse_client_message(frame)
    except TimbreError as err:
        assert_clear(err)
        return
    assert parse_client_message(message.to_wire()) == message  # the typed message round-trips


@FUZZ
@given(frame=st.binary(max_size=300) | frames(NATIVE).map(to_bytes))
def test_native_server_frames_parse_or_are_refused_clearly(tally: Tally,
                                                           frame: str | bytes) -> None:
    """Our client's side of the wire (``realtime.client`` reads what a server sends)."""
    tally.hit()
    for data in (frame, frame.decode("utf-8", "replace") if isinstance(frame, bytes) else frame):
        try:
            message = parse_server_message(data)
        except TimbreError as err:
            assert_clear(err)
            continue
        if isinstance(message, AudioFrame):
            assert AudioFrame.parse(message.to_wire()) == message


@FUZZ
@given(script=st.lists(frames(NATIVE) | st.sampled_from(["started", "done"]), max_size=16))
def test_native_connection_state_stays_bounded(tally: Tally, script: list[str | bytes]) -> None:
    """A connection fed any sequence of frames (with the server announcing and finishing
    contexts in between) never has more than ``max_contexts`` open, never accepts more than
    ``max_context_chars`` into one context, and tracks every context it accepted text for."""
    tally.hit()
    protocol = NativeProtocol(max_contexts=3, max_context_chars=60, max_message_bytes=4096)
    accepted: dict[str, int] = {}  # characters taken per context since it (re)started
    for step in script:
        if step in ("started", "done"):
            _server_step(protocol, accepted, step == "done")
            continue
        try:
            message: ClientMessage = protocol.receive(step)
        except TimbreError as err:
            assert_clear(err)
            if err.fatal:
                break
            continue
        if isinstance(message, TextMessage):
            assert protocol.context_state(message.context_id) is WireState.OPEN
            accepted[message.context_id] = accepted.get(message.context_id, 0) + len(message.text)
        assert protocol.open_contexts <= 3
        assert all(chars <= 60 for chars in accepted.values())


def _server_step(protocol: NativeProtocol, accepted: dict[str, int], finish: bool) -> None:
    """What the server does between client frames: announce a context, or finish one."""
    for context_id in list(accepted):
        state = protocol.context_state(context_id)
        if state is None or state is WireState.DONE:
            del accepted[context_id]
            continue
        try:
            if finish:
                protocol.send(ContextDone(context_id, 0, 0, "completed"))
                del accepted[context_id]
            else:
                protocol.send(ContextStarted(context_id, "piper:joe", "pcm_s16le", 24000))
            return
        except InvalidContextState:
            continue  # announced already: try the next one


@FUZZ
@given(query=st.dictionaries(st.sampled_from(["voice", "format", "sample_rate", "speed", "x"]),
                             TEXT, max_size=5))
def test_native_connect_query(tally: Tally, query: dict[str, str]) -> None:
    tally.hit()
    try:
        params = parse_native_query(query, "piper:joe")
    except TimbreError as err:
        assert_clear(err)
        return
    assert isinstance(params, StreamParams) and 0.5 <= params.speed <= 2.0


# -- ElevenLabs ------------------------------------------------------------------------------------

ELEVENLABS = objects({
    "text": TEXT, "context_id": CONTEXT_IDS, "flush": st.booleans(),
    "close_context": st.booleans(), "close_socket": st.booleans(),
    "try_trigger_generation": st.booleans(), "xi_api_key": TEXT, "authorization": TEXT,
    "voice_settings": objects({"speed": NUMBERS, "stability": NUMBERS,
                               "use_speaker_boost": st.booleans()}),
    "generation_config": objects({"chunk_length_schedule": st.lists(NUMBERS, max_size=4)}),
})


@FUZZ
@given(multi=st.booleans(), script=st.lists(frames(ELEVENLABS), min_size=1, max_size=8))
def test_elevenlabs_sockets_parse_or_refuse_in_their_shape(
        tally: Tally, multi: bool, script: list[str | bytes]) -> None:
    tally.hit()
    protocol = ElevenLabsProtocol(multi, max_message_bytes=4096)
    for frame in script:
        try:
            message = protocol.receive(frame)
        except ElevenLabsError as err:  # every refusal is theirs, and closes the socket (1008)
            assert_clear(err)
            assert err.close_code == 1008
            return
        if isinstance(message, SendText):
            assert message.text and message.text.encode()
            assert message.context_id is None or len(message.context_id) <= 256
        if isinstance(message, EndOfInput):
            assert not multi
        assert json.loads(dumps(message.to_json())) is not None


@FUZZ
@given(query=st.dictionaries(st.sampled_from([
    "output_format", "inactivity_timeout", "sync_alignment", "auto_mode", "model_id",
    "authorization", "xi_api_key"]), TEXT, max_size=7), header=TEXT | st.none())
def test_elevenlabs_query_and_credentials(tally: Tally, query: dict[str, str],
                                          header: str | None) -> None:
    tally.hit()
    credential = bearer(header)
    assert credential is None or isinstance(credential, str)
    try:
        parsed = parse_elevenlabs_query(query)
    except ElevenLabsError as err:
        assert_clear(err)
        return
    assert 1 <= parsed.inactivity_timeout_s <= 180


@FUZZ
@given(body=frames(objects({"text": TEXT, "model_id": TEXT, "voice_settings": objects(
    {"speed": NUMBERS})})).map(to_bytes))
def test_elevenlabs_http_bodies(tally: Tally, body: bytes) -> None:
    tally.hit()
    try:
        text, speed = parse_elevenlabs_body(body)
    except ElevenLabsError as err:
        assert_clear(err)
        return
    assert text.strip() and text.encode() and 0.7 <= speed <= 1.2


# -- Twilio ----------------------------------------------------------------------------------------

SID = st.sampled_from(["MZ1", "MZ2"]) | TEXT
TWILIO = objects({
    "event": st.sampled_from(["connected", "start", "media", "dtmf", "mark", "stop"]) | TEXT,
    "sequenceNumber": st.sampled_from(["1", "2"]) | NUMBERS | TEXT,
    "streamSid": SID, "protocol": TEXT, "version": TEXT,
    "start": objects({"streamSid": SID, "accountSid": TEXT, "callSid": TEXT,
                      "tracks": st.lists(TEXT, max_size=2),
                      "customParameters": st.dictionaries(TEXT, TEXT, max_size=2),
                      "mediaFormat": objects({"encoding": TEXT, "sampleRate": NUMBERS,
                                              "channels": NUMBERS})}),
    "media": objects({"track": TEXT, "chunk": NUMBERS | TEXT, "timestamp": NUMBERS | TEXT,
                      "payload": st.binary(max_size=40).map(
                          lambda b: base64.b64encode(b).decode()) | TEXT}),
    "dtmf": objects({"track": TEXT, "digit": TEXT}),
    "mark": objects({"name": TEXT}),
    "stop": objects({"accountSid": TEXT, "callSid": TEXT}),
})


@FUZZ
@given(script=st.lists(frames(TWILIO), min_size=1, max_size=8))
def test_twilio_stream_parses_or_refuses(tally: Tally, script: list[str | bytes]) -> None:
    tally.hit()
    stream = TwilioStream()
    for frame in script:
        try:
            stream.receive(frame)
        except StreamSequenceError as err:  # fatal: the socket closes with 1008
            assert_clear(err)
            assert err.close_code == 1008
            return
        except TimbreError as err:  # dropped, the call goes on
            assert_clear(err)
            assert not err.fatal
        if stream.start is not None:
            assert isinstance(stream.stream_sid, str)


# -- OpenAI speech ---------------------------------------------------------------------------------

OPENAI = objects({
    "model": TEXT, "input": TEXT, "voice": TEXT | objects({"id": TEXT}),
    "response_format": st.sampled_from(["mp3", "opus", "aac", "flac", "wav", "pcm"]) | TEXT,
    "speed": NUMBERS, "stream_format": st.sampled_from(["audio", "sse"]) | TEXT,
    "instructions": TEXT,
})


@FUZZ
@given(body=frames(OPENAI).map(to_bytes))
def test_openai_requests_parse_or_are_refused_in_openais_shape(tally: Tally, body: bytes) -> None:
    tally.hit()
    try:
        request = parse_speech_request(body)
    except InvalidSpeechRequest as err:
        assert_clear(err)
        shape = error_body(err)["error"]
        assert set(shape) == {"message", "type", "param", "code"}
        assert shape["type"] == "invalid_request_error"
        return
    assert isinstance(request, OpenAISpeechRequest)
    assert request.input.strip() and len(request.input) <= 4096 and request.input.encode()
    assert 0.5 <= request.speed <= 2.0


# -- tokens and credentials ------------------------------------------------------------------------

SCOPES = st.lists(st.sampled_from(["tts", "voices:read", "voices:write"]) | TEXT, max_size=4)


@FUZZ
@given(body=frames(objects({"ttl_s": NUMBERS, "scopes": SCOPES})).map(to_bytes))
def test_token_requests_parse_or_are_refused(tally: Tally, body: bytes) -> None:
    tally.hit()
    try:
        request = parse_token_request(body)
        if request.scopes is not None:
            parse_scopes(request.scopes)
    except TimbreError as err:
        assert_clear(err)
        return
    assert isinstance(request, TokenRequest)


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _jwt_like(header: Any, claims: Any, signature: bytes) -> str:
    return ".".join((_b64(dumps(header).encode("utf-8", "surrogatepass")),
                     _b64(dumps(claims).encode("utf-8", "surrogatepass")), _b64(signature)))


def _signed(claims: Any) -> str:
    """``claims`` (any JSON, NaN and all) as an HS256 token signed with the server's secret, so
    that every claim check runs (pyjwt's ``encode`` would refuse some of these claims)."""
    signing_input = ".".join((_b64(b'{"alg":"HS256","typ":"JWT"}'),
                              _b64(dumps(claims).encode("utf-8", "surrogatepass"))))
    signature = hmac.new(JWT_SECRET.encode(), signing_input.encode(), "sha256").digest()
    return f"{signing_input}.{_b64(signature)}"


CLAIMS = objects({"tenant": TEXT, "aud": TEXT | st.lists(TEXT, max_size=2), "exp": NUMBERS,
                  "iat": NUMBERS, "nbf": NUMBERS, "iss": TEXT, "sub": TEXT, "scopes": SCOPES})
CREDENTIALS = st.one_of(
    TEXT, st.text(max_size=50).map(lambda s: "tk_" + s),
    st.builds(_jwt_like, objects({"alg": st.sampled_from(["HS256", "none", "RS256"]) | TEXT,
                                  "typ": TEXT, "kid": TEXT}), CLAIMS, st.binary(max_size=40)),
    # correctly signed, so every claim check runs: the claims are the fuzzed part
    CLAIMS.map(_signed),
)


@FUZZ
@given(credential=CREDENTIALS)
def test_credentials_authenticate_or_are_refused(server: RunningServer, tally: Tally,
                                                 credential: str) -> None:
    """Through the server's own authenticator (its stores, on its loop)."""
    tally.hit()
    authenticator = server.app[AUTHENTICATOR]

    async def verdict() -> Principal | Unauthorized:
        try:
            return await authenticator.authenticate(credential)
        except Unauthorized as err:
            return err

    result = on_server(server, verdict())
    if isinstance(result, Unauthorized):
        assert_clear(result)
        assert result.http_status == 401
        assert credential not in result.message or len(credential) < 8  # never echoed back
    else:  # only a correctly signed token for an existing tenant gets here
        assert result.via == "jwt" and result.expires_at is not None
        assert result.expires_at > time.time() - 60


def test_a_fuzzed_claim_set_can_still_be_accepted(server: RunningServer) -> None:
    """The control for the property above: its 'accepted' branch is reachable."""
    tenant, _ = new_tenant(server, "single")
    token = jwt.encode({"tenant": tenant, "aud": "timbre", "exp": int(time.time()) + 60,
                        "scopes": "tts", "extra": [None, 1.5]}, JWT_SECRET, algorithm="HS256")
    principal = on_server(server, server.app[AUTHENTICATOR].authenticate(token))
    assert principal.tenant == tenant
