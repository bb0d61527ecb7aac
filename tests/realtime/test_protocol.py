"""realtime.protocol: the native protocol core, fed frames (str/bytes) only, no sockets."""

from __future__ import annotations

import json
import struct
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from realtime.audio import SUPPORTED_SAMPLE_RATES
from realtime.native_connection import ContextState, InvalidContextState, NativeProtocol
from realtime.protocol import (
    Alignment,
    AudioFrame,
    CancelMessage,
    ClientMessage,
    CloseContextMessage,
    ConfigMessage,
    ContextDone,
    ContextStarted,
    ErrorMessage,
    FlushMessage,
    Ready,
    ReportMessage,
    ServerMessage,
    TextMessage,
    WordTime,
    error_message,
    parse_client_message,
    parse_server_message,
)
from session import errors


def wire(**fields: Any) -> str:
    return json.dumps(fields)


# --- round trips ---------------------------------------------------------------------------------

CLIENT_EXAMPLES: list[ClientMessage] = [
    TextMessage("turn-1", "Hello there, "),
    TextMessage("a.b:c_d-9", "", voice="piper:joe", speed=1.25),
    TextMessage("x" * 64, 'héllo 👋 "quoted" \\ \n'),
    FlushMessage("turn-1"),
    CloseContextMessage("turn-1"),
    CancelMessage("turn-1"),
    ConfigMessage(),
    ConfigMessage(voice="joe", speed=0.5, format="pcm_s16le", sample_rate=8000),
    ReportMessage(3),
    ReportMessage(0, buffered_ms=120.5),
]

SERVER_EXAMPLES: list[ServerMessage] = [
    Ready("s_4f1c", 1, "piper:joe", "pcm_s16le", 24000),
    ContextStarted("turn-1", "piper:joe", "pcm_s16le", 48000),
    AudioFrame("turn-1", 0, b""),
    AudioFrame("t", 2**32 - 1, bytes(range(256))),
    Alignment("turn-1", (WordTime("Hello", 0.0, 310.0), WordTime("there", 310.0, 560.5))),
    Alignment("turn-1", ()),
    ContextDone("turn-1", samples=48000, characters=31, reason="completed"),
    ContextDone("turn-2", samples=0, characters=0, reason="cancelled"),
    ErrorMessage("bad_json", "not valid JSON"),
    ErrorMessage("text_too_long", "over 5000 characters", context_id="turn-1"),
]


@pytest.mark.parametrize("message", CLIENT_EXAMPLES, ids=repr)
def test_client_messages_round_trip(message: ClientMessage) -> None:
    assert parse_client_message(message.to_wire()) == message


@pytest.mark.parametrize("message", SERVER_EXAMPLES, ids=repr)
def test_server_messages_round_trip(message: ServerMessage) -> None:
    assert parse_server_message(message.to_wire()) == message


def test_json_wire_shape_is_tagged_and_leaves_out_absent_fields() -> None:
    assert (
        TextMessage("turn-1", "Hi").to_wire() == '{"type":"text","context_id":"turn-1","text":"Hi"}'
    )
    assert json.loads(ErrorMessage("bad_json", "nope").to_wire()) == {
        "type": "error",
        "code": "bad_json",
        "message": "nope",
    }
    assert json.loads(Alignment("c", (WordTime("hi", 0, 5),)).to_wire())["words"] == [
        {"word": "hi", "start_ms": 0, "end_ms": 5}
    ]


def test_spec_examples_parse() -> None:
    assert parse_client_message(
        '{"type": "text", "context_id": "turn-1", "text": "Hello there, "}'
    ) == TextMessage("turn-1", "Hello there, ")
    assert parse_client_message(
        '{"type": "close_context", "context_id": "turn-1"}'
    ) == CloseContextMessage("turn-1")
    ready = (
        '{"type": "ready", "session_id": "s_4f1c...", "protocol": 1, "voice": "piper:joe",'
        ' "format": "pcm_s16le", "sample_rate": 24000}'
    )
    assert parse_server_message(ready) == Ready("s_4f1c...", 1, "piper:joe", "pcm_s16le", 24000)


def test_context_id_defaults_to_default_and_extra_fields_are_ignored() -> None:
    assert parse_client_message('{"type": "text", "text": "hi"}') == TextMessage("default", "hi")
    assert parse_client_message('{"type": "cancel", "context_id": null}') == CancelMessage(
        "default"
    )
    assert parse_client_message(
        wire(type="flush", context_id="c", extra={"x": 1}, try_trigger_generation=True)
    ) == FlushMessage("c")


def test_numbers_normalise_to_their_field_types() -> None:
    message = parse_client_message(wire(type="text", context_id="c", text="a", speed=1))
    assert isinstance(message, TextMessage) and message.speed == 1.0
    assert isinstance(message.speed, float)


# --- property-style round trips ------------------------------------------------------------------

context_ids = st.from_regex(r"[A-Za-z0-9_.:\-]{1,64}", fullmatch=True)
names = st.text(min_size=1, max_size=40)
speeds = st.floats(0.5, 2.0)
rates = st.sampled_from(SUPPORTED_SAMPLE_RATES)
counts = st.integers(0, 2**53)
millis = st.floats(0, 1e9, allow_nan=False)
formats = st.just("pcm_s16le")


def maybe(strategy: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return st.none() | strategy


word_times = st.builds(
    lambda word, a, b: WordTime(word, min(a, b), max(a, b)), st.text(max_size=20), millis, millis
)

client_messages = st.one_of(
    st.builds(TextMessage, context_ids, st.text(max_size=200), maybe(names), maybe(speeds)),
    st.builds(FlushMessage, context_ids),
    st.builds(CloseContextMessage, context_ids),
    st.builds(CancelMessage, context_ids),
    st.builds(ConfigMessage, maybe(names), maybe(speeds), maybe(formats), maybe(rates)),
    st.builds(ReportMessage, counts, maybe(millis)),
)

server_messages = st.one_of(
    st.builds(Ready, names, st.integers(1, 100), names, formats, rates),
    st.builds(ContextStarted, context_ids, names, formats, rates),
    st.builds(AudioFrame, context_ids, st.integers(0, 2**32 - 1), st.binary(max_size=512)),
    st.builds(Alignment, context_ids, st.lists(word_times, max_size=5).map(tuple)),
    st.builds(
        ContextDone, context_ids, counts, counts, st.sampled_from(["completed", "cancelled"])
    ),
    st.builds(ErrorMessage, names, st.text(max_size=100), maybe(context_ids)),
)


@given(client_messages)
def test_any_client_message_round_trips(message: ClientMessage) -> None:
    assert parse_client_message(message.to_wire()) == message


@given(server_messages)
def test_any_server_message_round_trips(message: ServerMessage) -> None:
    assert parse_server_message(message.to_wire()) == message


# --- binary audio frames -------------------------------------------------------------------------


def test_audio_frame_golden_bytes() -> None:
    """Layout (docs/protocol.md): kind 0x01 | id length L (1 byte) | sequence (uint32 big endian) |
    context id (L bytes, UTF-8) | payload (pcm_s16le: little-endian int16)."""
    payload = struct.pack("<3h", 0, 1, -2)  # 00 00 01 00 fe ff
    frame = AudioFrame("turn-1", 258, payload)
    golden = bytes.fromhex("010600000102") + b"turn-1" + bytes.fromhex("000001 00feff")
    assert frame.to_wire() == golden
    assert parse_server_message(golden) == frame


@pytest.mark.parametrize(
    "data",
    [
        b"",
        bytes.fromhex("0106000000"),  # header cut short
        bytes.fromhex("02 01 00000000") + b"a",  # unknown frame kind
        bytes.fromhex("01 00 00000000"),  # empty context id
        bytes.fromhex("01 41 00000000") + b"a" * 65,  # id longer than 64
        bytes.fromhex("01 05 00000000") + b"abc",  # id runs past the end
        bytes.fromhex("01 02 00000000") + "é".encode(),  # not from the allowed characters
        bytes.fromhex("01 01 00000000") + b"\xff",  # not UTF-8
    ],
)
def test_malformed_audio_frames_are_bad_messages(data: bytes) -> None:
    with pytest.raises(errors.BadMessage):
        parse_server_message(data)


# --- the error table -----------------------------------------------------------------------------

TEXT = {"type": "text", "context_id": "c"}
BAD_INPUTS: list[tuple[str, str | bytes, type[errors.TimbreError]]] = [
    ("malformed json", '{"type": "text", ', errors.BadJson),
    ("empty frame", "", errors.BadJson),
    ("json array", "[1, 2]", errors.BadJson),
    ("json string", '"hello"', errors.BadJson),
    ("json null", "null", errors.BadJson),
    ("NaN is not JSON", '{"type": "text", "text": "a", "speed": NaN}', errors.BadJson),
    ("no type", '{"context_id": "c", "text": "hi"}', errors.UnknownType),
    ("unknown type", wire(type="speak", text="hi"), errors.UnknownType),
    ("type not a string", wire(type=5), errors.UnknownType),
    ("server type from client", wire(type="ready"), errors.UnknownType),
    ("text missing", wire(type="text", context_id="c"), errors.BadMessage),
    ("text null", wire(**TEXT, text=None), errors.BadMessage),
    ("text not a string", wire(**TEXT, text=5), errors.BadMessage),
    ("text with lone surrogate", '{"type": "text", "text": "\\ud800"}', errors.BadMessage),
    ("report missing underruns", wire(type="report"), errors.BadMessage),
    ("underruns negative", wire(type="report", underruns=-1), errors.BadMessage),
    ("underruns boolean", wire(type="report", underruns=True), errors.BadMessage),
    ("underruns float", wire(type="report", underruns=1.5), errors.BadMessage),
    ("buffered_ms string", wire(type="report", underruns=0, buffered_ms="9"), errors.BadMessage),
    ("context_id empty", wire(type="flush", context_id=""), errors.BadMessage),
    ("context_id space", wire(type="flush", context_id="turn 1"), errors.BadMessage),
    ("context_id too long", wire(type="flush", context_id="x" * 65), errors.BadMessage),
    ("context_id non-ascii", wire(type="cancel", context_id="tür"), errors.BadMessage),
    ("context_id slash", wire(type="cancel", context_id="a/b"), errors.BadMessage),
    ("context_id number", wire(type="close_context", context_id=7), errors.BadMessage),
    ("speed too slow", wire(**TEXT, text="a", speed=0.49), errors.BadMessage),
    ("speed too fast", wire(**TEXT, text="a", speed=2.01), errors.BadMessage),
    ("speed string", wire(type="config", speed="fast"), errors.BadMessage),
    ("speed boolean", wire(type="config", speed=True), errors.BadMessage),
    ("voice empty", wire(**TEXT, text="a", voice=""), errors.BadMessage),
    ("voice number", wire(type="config", voice=3), errors.BadMessage),
    ("sample_rate unsupported", wire(type="config", sample_rate=12345), errors.BadSampleRate),
    ("sample_rate string", wire(type="config", sample_rate="24000"), errors.BadMessage),
    ("sample_rate float", wire(type="config", sample_rate=24000.0), errors.BadMessage),
    ("format unsupported", wire(type="config", format="wav"), errors.BadFormat),
    ("format number", wire(type="config", format=1), errors.BadMessage),
    ("binary frame", b"\x01\x01\x00\x00\x00\x00a\x00\x00", errors.BinaryNotSupported),
    ("oversized", wire(**TEXT, text="a" * 65_536), errors.MessageTooLarge),
    (
        "oversized in utf-8",
        wire(**TEXT, text="é" * 40_000).replace("\\u00e9", "é"),
        errors.MessageTooLarge,
    ),
    ("oversized binary", b"\x00" * 65_537, errors.MessageTooLarge),
]

# Per the spec's error table: the session survives all of these but message_too_large (close 1009).
EXPECTED: dict[type[errors.TimbreError], tuple[str, int | None]] = {
    errors.BadJson: ("bad_json", None),
    errors.UnknownType: ("unknown_type", None),
    errors.BadMessage: ("bad_message", None),
    errors.BinaryNotSupported: ("binary_not_supported", None),
    errors.BadSampleRate: ("bad_sample_rate", None),
    errors.BadFormat: ("bad_format", None),
    errors.ContextClosed: ("context_closed", None),
    errors.UnknownContext: ("unknown_context", None),
    errors.TooManyContexts: ("too_many_contexts", None),
    errors.TextTooLong: ("text_too_long", None),
    errors.MessageTooLarge: ("message_too_large", 1009),
}


def assert_error(err: errors.TimbreError, kind: type[errors.TimbreError]) -> None:
    assert type(err) is kind
    assert (err.code, err.close_code) == EXPECTED[kind]
    assert err.fatal is (err.close_code is not None)
    sent = parse_server_message(error_message(err).to_wire())
    assert sent == ErrorMessage(err.code, err.message, err.context_id)


@pytest.mark.parametrize(("name", "data", "kind"), BAD_INPUTS, ids=[c[0] for c in BAD_INPUTS])
def test_bad_input_raises_the_spec_error(
    name: str, data: str | bytes, kind: type[errors.TimbreError]
) -> None:
    with pytest.raises(kind) as caught:
        parse_client_message(data)
    assert_error(caught.value, kind)
    with pytest.raises(kind):  # the connection's state machine raises the same
        NativeProtocol().receive(data)


def test_message_size_limit_counts_utf8_bytes_and_is_inclusive() -> None:
    head = wire(**TEXT, text="")[:-2]  # '{"type": "text", "context_id": "c", "text": "'
    exact = head + "é" + "a" * (65_536 - len(head) - 4) + '"}'
    assert len(exact.encode()) == 65_536
    assert isinstance(parse_client_message(exact), TextMessage)
    with pytest.raises(errors.MessageTooLarge):
        parse_client_message(exact, max_message_bytes=65_535)
    with pytest.raises(errors.MessageTooLarge):
        NativeProtocol(max_message_bytes=100).receive(wire(**TEXT, text="a" * 100))


def test_field_errors_name_the_field_and_carry_a_valid_context_id() -> None:
    with pytest.raises(errors.BadMessage, match="speed") as caught:
        parse_client_message(wire(type="text", context_id="turn-3", text="a", speed=9))
    assert caught.value.context_id == "turn-3"
    assert error_message(caught.value) == ErrorMessage(
        "bad_message", caught.value.message, "turn-3"
    )
    with pytest.raises(errors.BadMessage) as caught:
        parse_client_message(wire(type="text", context_id="bad id", text="a"))
    assert caught.value.context_id is None


def test_server_side_validation_of_server_messages() -> None:
    with pytest.raises(errors.BadSampleRate):
        parse_server_message(
            wire(
                type="context_started",
                context_id="c",
                voice="v",
                format="pcm_s16le",
                sample_rate=11025,
            )
        )
    with pytest.raises(errors.BadMessage, match="reason"):
        parse_server_message(
            wire(type="context_done", context_id="c", samples=1, characters=1, reason="finished")
        )
    with pytest.raises(errors.BadMessage, match="ends before"):
        parse_server_message(
            wire(
                type="alignment", context_id="c", words=[{"word": "a", "start_ms": 5, "end_ms": 1}]
            )
        )
    with pytest.raises(errors.UnknownType):
        parse_server_message(wire(type="text", text="a"))


# --- the connection state machine ----------------------------------------------------------------


def start(protocol: NativeProtocol, context_id: str, text: str = "Hello. ") -> None:
    protocol.receive(wire(type="text", context_id=context_id, text=text))
    protocol.send(ContextStarted(context_id, "piper:joe", "pcm_s16le", 24000))


def done(protocol: NativeProtocol, context_id: str, reason: str = "completed") -> str:
    return protocol.send(ContextDone(context_id, 0, 0, reason))  # type: ignore[arg-type]


def test_sequence_numbers_count_from_zero_per_context_across_many_contexts() -> None:
    protocol = NativeProtocol()
    ids = [f"turn-{i}" for i in range(6)]
    for context_id in ids:
        start(protocol, context_id)
    assert protocol.open_contexts == 6
    seen: dict[str, list[int]] = {context_id: [] for context_id in ids}
    for round_ in range(4):
        for context_id in ids[round_ % 3 :]:  # interleaved, uneven frame counts per context
            wire_frame = protocol.send_audio(context_id, b"\x00\x01" * 10)
            assert wire_frame is not None
            frame = parse_server_message(wire_frame)
            assert isinstance(frame, AudioFrame) and frame.context_id == context_id
            assert frame.payload == b"\x00\x01" * 10
            seen[context_id].append(frame.sequence)
    for context_id, sequences in seen.items():
        assert sequences == list(range(len(sequences)))
    assert [len(s) for s in seen.values()] == [2, 3, 4, 4, 4, 4]


def test_text_flush_close_and_done_walk_the_lifecycle() -> None:
    protocol = NativeProtocol()
    assert isinstance(protocol.receive(wire(type="text", context_id="c", text="Hi ")), TextMessage)
    assert protocol.context_state("c") is ContextState.OPEN
    assert isinstance(protocol.receive(wire(type="flush", context_id="c")), FlushMessage)
    protocol.receive(wire(type="text", context_id="c", text="there."))
    protocol.receive(wire(type="close_context", context_id="c"))
    assert protocol.context_state("c") is ContextState.CLOSING
    protocol.send(ContextStarted("c", "piper:joe", "pcm_s16le", 24000))
    protocol.send_audio("c", b"\x00\x00")  # audio still flows after close_context
    assert json.loads(done(protocol, "c"))["type"] == "context_done"
    assert protocol.context_state("c") is ContextState.DONE
    assert protocol.open_contexts == 0


@pytest.mark.parametrize("end", ["close_context", "cancel", "done"])
@pytest.mark.parametrize("kind", ["text", "flush"])
def test_text_or_flush_after_the_context_ended_is_context_closed(kind: str, end: str) -> None:
    protocol = NativeProtocol()
    start(protocol, "c")
    if end == "done":
        done(protocol, "c")
    else:
        protocol.receive(wire(type=end, context_id="c"))
    with pytest.raises(errors.ContextClosed, match=kind) as caught:
        protocol.receive(wire(type=kind, context_id="c", text="more"))
    assert_error(caught.value, errors.ContextClosed)
    assert caught.value.context_id == "c"


@pytest.mark.parametrize("kind", ["flush", "close_context", "cancel"])
def test_control_message_for_a_context_that_never_started_is_unknown_context(kind: str) -> None:
    protocol = NativeProtocol()
    start(protocol, "other")
    with pytest.raises(errors.UnknownContext) as caught:
        protocol.receive(wire(type=kind, context_id="nope"))
    assert_error(caught.value, errors.UnknownContext)
    with pytest.raises(errors.UnknownContext):
        protocol.receive(wire(type=kind))  # the implicit "default" context never started either


def test_too_many_contexts_until_one_has_sent_context_done() -> None:
    protocol = NativeProtocol(max_contexts=3)
    for context_id in ("a", "b", "c"):
        start(protocol, context_id)
    with pytest.raises(errors.TooManyContexts) as caught:
        protocol.receive(wire(type="text", context_id="d", text="x"))
    assert_error(caught.value, errors.TooManyContexts)
    assert protocol.context_state("d") is None
    protocol.receive(wire(type="close_context", context_id="a"))
    with pytest.raises(errors.TooManyContexts):  # closing is not finishing: audio is still owed
        protocol.receive(wire(type="text", context_id="e", text="x"))
    done(protocol, "a")
    with pytest.raises(errors.ContextClosed, match="refused"):  # its first text was lost
        protocol.receive(wire(type="text", context_id="d", text="x"))
    protocol.receive(wire(type="text", context_id="f", text="x"))
    assert protocol.open_contexts == 3


def test_default_limit_is_eight_open_contexts() -> None:
    protocol = NativeProtocol()
    for i in range(8):
        protocol.receive(wire(type="text", context_id=f"c{i}", text="x"))
    with pytest.raises(errors.TooManyContexts):
        protocol.receive(wire(type="text", context_id="c8", text="x"))


def test_text_too_long_does_not_extend_the_context() -> None:
    protocol = NativeProtocol()
    protocol.receive(wire(type="text", context_id="c", text="a" * 4_990))
    with pytest.raises(errors.TextTooLong) as caught:
        protocol.receive(wire(type="text", context_id="c", text="b" * 11))
    assert_error(caught.value, errors.TextTooLong)
    assert caught.value.context_id == "c"
    protocol.receive(wire(type="text", context_id="c", text="b" * 10))  # exactly 5,000 in all
    with pytest.raises(errors.TextTooLong):
        protocol.receive(wire(type="text", context_id="c", text="!"))
    assert protocol.context_state("c") is ContextState.OPEN


def test_a_first_text_over_the_limit_starts_nothing() -> None:
    protocol = NativeProtocol(max_context_chars=10)
    with pytest.raises(errors.TextTooLong):
        protocol.receive(wire(type="text", context_id="c", text="é" * 11))
    assert protocol.context_state("c") is None and protocol.open_contexts == 0
    with pytest.raises(errors.ContextClosed, match=r"refused \(text_too_long\)"):
        protocol.receive(wire(type="text", context_id="c", text="é"))
    protocol.receive(wire(type="text", context_id="d", text="é" * 10))  # characters, not bytes


def test_cancel_stops_audio_and_ends_with_cancelled() -> None:
    protocol = NativeProtocol()
    start(protocol, "c")
    assert protocol.send_audio("c", b"\x00\x00") is not None
    protocol.receive(wire(type="cancel", context_id="c"))
    assert protocol.context_state("c") is ContextState.CANCELLED
    assert protocol.send_audio("c", b"\x00\x00") is None  # in flight when the cancel came: dropped
    sent = parse_server_message(done(protocol, "c", "completed"))  # a completion that crossed it
    assert isinstance(sent, ContextDone) and sent.reason == "cancelled"
    assert protocol.open_contexts == 0


def test_cancel_after_close_context_is_a_barge_in() -> None:
    protocol = NativeProtocol()
    start(protocol, "c")
    protocol.receive(wire(type="close_context", context_id="c"))
    protocol.receive(wire(type="cancel", context_id="c"))
    assert protocol.context_state("c") is ContextState.CANCELLED


@pytest.mark.parametrize("late", ["close_context", "cancel"])
def test_late_close_or_cancel_is_a_harmless_no_op(late: str) -> None:
    """A cancel can cross the server's context_done on the wire; it must not error."""
    protocol = NativeProtocol()
    start(protocol, "c")
    protocol.receive(wire(type="cancel", context_id="c"))
    assert isinstance(protocol.receive(wire(type=late, context_id="c")), ClientMessage)
    assert protocol.context_state("c") is ContextState.CANCELLED
    done(protocol, "c", "cancelled")
    protocol.receive(wire(type=late, context_id="c"))
    assert protocol.context_state("c") is ContextState.DONE


def test_server_bugs_raise_invalid_context_state_naming_the_state() -> None:
    protocol = NativeProtocol()
    with pytest.raises(InvalidContextState, match="not started"):
        protocol.send_audio("ghost", b"")
    protocol.receive(wire(type="text", context_id="c", text="Hi"))
    with pytest.raises(InvalidContextState, match="before context_started: context 'c' is open"):
        protocol.send_audio("c", b"")
    protocol.send(ContextStarted("c", "piper:joe", "pcm_s16le", 24000))
    with pytest.raises(InvalidContextState, match="twice"):
        protocol.send(ContextStarted("c", "piper:joe", "pcm_s16le", 24000))
    done(protocol, "c")
    for bug in (
        lambda: protocol.send_audio("c", b"\x00\x00"),
        lambda: done(protocol, "c"),
        lambda: protocol.send(Alignment("c", ())),
    ):
        with pytest.raises(InvalidContextState, match="'c' is done") as caught:
            bug()
        assert caught.value.state is ContextState.DONE


def test_refused_context_frees_its_slot_and_never_starts() -> None:
    protocol = NativeProtocol(max_contexts=1)
    protocol.receive(wire(type="text", context_id="c", text="Hi"))
    protocol.send(error_message(errors.ServerBusy("try later", context_id="c")))
    protocol.refuse("c", "server_busy")
    assert protocol.context_state("c") is None and protocol.open_contexts == 0
    # the rest of its text would make it speak a sentence without its beginning
    refused = r"refused \(server_busy\).*new context_id"
    with pytest.raises(errors.ContextClosed, match=refused):
        protocol.receive(wire(type="text", context_id="c", text="there"))
    with pytest.raises(errors.ContextClosed, match=refused):
        protocol.receive(wire(type="flush", context_id="c"))
    for kind in ("close_context", "cancel"):  # they crossed the refusal: nothing to end
        assert protocol.receive(wire(type=kind, context_id="c")).context_id == "c"
    start(protocol, "d")  # the slot is free for a new id
    with pytest.raises(InvalidContextState):
        protocol.refuse("d", "server_busy")  # once announced, it must end with context_done


def test_finished_ids_are_remembered_up_to_a_bound() -> None:
    protocol = NativeProtocol(remember_finished=2)
    for context_id in ("a", "b", "c"):
        start(protocol, context_id)
        done(protocol, context_id)
    assert protocol.context_state("a") is None  # forgotten: the oldest beyond the bound
    with pytest.raises(errors.ContextClosed):
        protocol.receive(wire(type="text", context_id="b", text="x"))


def test_config_and_report_pass_through_the_state_machine() -> None:
    protocol = NativeProtocol()
    assert protocol.receive(wire(type="config", sample_rate=16000)) == ConfigMessage(
        sample_rate=16000
    )
    assert protocol.receive(wire(type="report", underruns=2, buffered_ms=80)) == ReportMessage(
        2, 80.0
    )
    assert protocol.send(Ready("s1", 1, "piper:joe", "pcm_s16le", 24000)).startswith(
        '{"type":"ready"'
    )
