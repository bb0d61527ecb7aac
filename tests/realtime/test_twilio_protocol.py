"""Twilio Media Streams' sans-I/O core, fed text frames with no socket: golden fixtures shaped like
Twilio's documented messages round-trip through every message type, malformed frames raise the
documented errors, and the stream's state machine refuses events out of order."""

from __future__ import annotations

import base64
import json

import pytest

from realtime.twilio.protocol import (
    Clear,
    Connected,
    Dtmf,
    Mark,
    Media,
    MediaFormat,
    OutboundMark,
    OutboundMedia,
    Start,
    Stop,
    StreamSequenceError,
    StreamState,
    TwilioStream,
    parse_inbound,
    parse_outbound,
    to_wire,
)
from session.errors import BadJson, BadMessage, BinaryNotSupported, TimbreError, UnknownType

STREAM = "MZ18ad3ab5a668481ce02b83e7395059f0"
ACCOUNT = "AC123cc7f9c8a0a4f1c6e1b4a0b6d2e9f00"
CALL = "CA8bd0e7b39b5e6c2b3a1f5e4d3c2b1a0f9"
AUDIO = bytes(range(160))

# Golden fixtures: Twilio's documented shapes (https://www.twilio.com/docs/voice/media-streams/
# websocket-messages), with our own SIDs.
INBOUND_FIXTURES = {
    "connected": {"event": "connected", "protocol": "Call", "version": "1.0.0"},
    "start": {
        "event": "start",
        "sequenceNumber": "1",
        "start": {
            "accountSid": ACCOUNT,
            "streamSid": STREAM,
            "callSid": CALL,
            "tracks": ["inbound"],
            "customParameters": {"voice": "piper:joe", "FirstName": "Jane"},
            "mediaFormat": {"encoding": "audio/x-mulaw", "sampleRate": 8000, "channels": 1},
        },
        "streamSid": STREAM,
    },
    "media": {
        "event": "media",
        "sequenceNumber": "3",
        "media": {"track": "inbound", "chunk": "1", "timestamp": "5",
                  "payload": base64.b64encode(AUDIO).decode()},
        "streamSid": STREAM,
    },
    "dtmf": {"event": "dtmf", "streamSid": STREAM, "sequenceNumber": "5",
             "dtmf": {"track": "inbound_track", "digit": "1"}},
    "mark": {"event": "mark", "sequenceNumber": "4", "streamSid": STREAM,
             "mark": {"name": "u1"}},
    "stop": {"event": "stop", "sequenceNumber": "6",
             "stop": {"accountSid": ACCOUNT, "callSid": CALL}, "streamSid": STREAM},
}
OUTBOUND_FIXTURES = {
    "media": {"event": "media", "streamSid": STREAM,
              "media": {"payload": base64.b64encode(AUDIO).decode()}},
    "mark": {"event": "mark", "streamSid": STREAM, "mark": {"name": "u1"}},
    "clear": {"event": "clear", "streamSid": STREAM},
}
EXPECTED_INBOUND = {
    "connected": Connected("Call", "1.0.0"),
    "start": Start(1, STREAM, ACCOUNT, CALL, ("inbound",), MediaFormat("audio/x-mulaw", 8000, 1),
                   {"voice": "piper:joe", "FirstName": "Jane"}),
    "media": Media(3, STREAM, "inbound", 1, 5, AUDIO),
    "dtmf": Dtmf(5, STREAM, "inbound_track", "1"),
    "mark": Mark(4, STREAM, "u1"),
    "stop": Stop(6, STREAM, ACCOUNT, CALL),
}
EXPECTED_OUTBOUND = {
    "media": OutboundMedia(STREAM, AUDIO),
    "mark": OutboundMark(STREAM, "u1"),
    "clear": Clear(STREAM),
}


@pytest.mark.parametrize("event", sorted(INBOUND_FIXTURES))
def test_inbound_fixtures_round_trip(event: str) -> None:
    message = parse_inbound(json.dumps(INBOUND_FIXTURES[event]))
    assert message == EXPECTED_INBOUND[event]
    assert message.type == event
    assert json.loads(to_wire(message)) == INBOUND_FIXTURES[event]


@pytest.mark.parametrize("event", sorted(OUTBOUND_FIXTURES))
def test_outbound_fixtures_round_trip(event: str) -> None:
    message = parse_outbound(json.dumps(OUTBOUND_FIXTURES[event]))
    assert message == EXPECTED_OUTBOUND[event]
    assert json.loads(to_wire(message)) == OUTBOUND_FIXTURES[event]


def test_unknown_extra_fields_are_ignored() -> None:
    fixture = {**INBOUND_FIXTURES["mark"], "futureField": {"x": 1}}
    assert parse_inbound(json.dumps(fixture)) == EXPECTED_INBOUND["mark"]


def _with(event: str, path: tuple[str, ...], value: object) -> str:
    fixture = json.loads(json.dumps(INBOUND_FIXTURES[event]))
    target = fixture
    for key in path[:-1]:
        target = target[key]
    if value is None:
        del target[path[-1]]
    else:
        target[path[-1]] = value
    return json.dumps(fixture)


@pytest.mark.parametrize(("frame", "error", "says"), [
    (b"\x00\x01", BinaryNotSupported, "JSON text"),
    ("not json", BadJson, "not valid JSON"),
    ("[1, 2]", BadJson, "JSON object"),
    ('{"event": "teleport"}', UnknownType, "teleport"),
    ('{"no_event": 1}', UnknownType, "None"),
    (_with("media", ("media", "payload"), "***"), BadMessage, "media.payload"),
    (_with("media", ("media", "chunk"), "one"), BadMessage, "media.chunk"),
    (_with("media", ("streamSid",), None), BadMessage, "streamSid"),
    (_with("start", ("start", "callSid"), None), BadMessage, "start.callSid"),
    (_with("start", ("start", "customParameters"), {"a": 1}), BadMessage, "customParameters"),
    (_with("start", ("sequenceNumber",), "-1"), BadMessage, "sequenceNumber"),
    (_with("mark", ("mark",), "u1"), BadMessage, "mark"),
    (_with("dtmf", ("dtmf", "digit"), 1), BadMessage, "dtmf.digit"),
])
def test_malformed_frames_raise_documented_non_fatal_errors(
        frame: str | bytes, error: type[TimbreError], says: str) -> None:
    with pytest.raises(error, match=says) as caught:
        parse_inbound(frame)
    assert not caught.value.fatal  # the call goes on; the handler counts and drops the frame


def _frame(event: str) -> str:
    return json.dumps(INBOUND_FIXTURES[event])


def test_stream_lifecycle() -> None:
    stream = TwilioStream()
    assert stream.state is StreamState.AWAITING_START
    assert stream.receive(_frame("connected")) == EXPECTED_INBOUND["connected"]
    stream.receive(_frame("start"))
    assert stream.state is StreamState.STREAMING and stream.stream_sid == STREAM
    for event in ("media", "dtmf", "mark"):
        assert stream.receive(_frame(event)) == EXPECTED_INBOUND[event]
    assert json.loads(stream.media(AUDIO)) == OUTBOUND_FIXTURES["media"]
    assert json.loads(stream.mark("u1")) == OUTBOUND_FIXTURES["mark"]
    assert json.loads(stream.clear()) == OUTBOUND_FIXTURES["clear"]
    stream.receive(_frame("stop"))
    assert stream.state is StreamState.STOPPED


@pytest.mark.parametrize(("before", "event", "state"), [
    ((), "media", "awaiting_start"),
    ((), "stop", "awaiting_start"),
    (("start",), "start", "streaming"),
    (("start",), "connected", "streaming"),
    (("start", "stop"), "media", "stopped"),
])
def test_events_out_of_order_are_fatal_and_name_the_state(
        before: tuple[str, ...], event: str, state: str) -> None:
    stream = TwilioStream()
    for name in before:
        stream.receive(_frame(name))
    with pytest.raises(StreamSequenceError, match=state) as caught:
        stream.receive(_frame(event))
    assert caught.value.fatal and caught.value.close_code == 1008


def test_sending_needs_a_started_stream() -> None:
    with pytest.raises(StreamSequenceError, match="awaiting_start"):
        TwilioStream().media(AUDIO)
    stream = TwilioStream()
    stream.receive(_frame("start"))
    stream.receive(_frame("stop"))
    with pytest.raises(StreamSequenceError, match="stopped"):
        stream.clear()


def test_another_streams_sid_is_dropped_not_fatal() -> None:
    stream = TwilioStream()
    stream.receive(_frame("start"))
    with pytest.raises(BadMessage, match="not this stream"):
        stream.receive(_with("mark", ("streamSid",), "MZother"))
    assert stream.state is StreamState.STREAMING
