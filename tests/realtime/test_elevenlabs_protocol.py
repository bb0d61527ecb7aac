"""ElevenLabs' WebSocket messages, sans I/O: golden fixtures shaped like their documented messages
parse into typed messages and serialise back; malformed ones get their ``invalid_input_message``;
the socket lifecycle and the character alignment."""

from __future__ import annotations

import json

import pytest

from inference.engine import WordTiming
from realtime.elevenlabs import handles_own_auth
from realtime.elevenlabs.alignment import CharAligner
from realtime.elevenlabs.protocol import (
    AudioOutput,
    CharAlignment,
    CloseContext,
    CloseSocket,
    ElevenLabsError,
    ElevenLabsProtocol,
    EndOfInput,
    ErrorOutput,
    FinalOutput,
    FlushContext,
    InitializeConnection,
    InvalidProtocolState,
    KeepContextAlive,
    SendText,
    SocketState,
    VoiceSettings,
    parse_client_message,
    parse_query,
    parse_server_message,
    serialize,
)

INIT = {"text": " ", "voice_settings": {"stability": 0.5, "similarity_boost": 0.8, "speed": 1.1},
        "generation_config": {"chunk_length_schedule": [120, 160, 250, 290]},
        "xi_api_key": "tk_secret"}
TEXT = {"text": "Hello world. ", "try_trigger_generation": True}
MULTI_TEXT = {"text": "Hello ", "context_id": "ctx-1", "flush": True}
AUDIO = {"audio": "AAECAw==", "isFinal": None,
         "normalizedAlignment": {"chars": ["H", "i"], "charStartTimesMs": [0, 3],
                                 "charDurationsMs": [3, 5]},
         "alignment": {"chars": ["H", "i"], "charStartTimesMs": [0, 3], "charDurationsMs": [3, 5]}}
ERROR = {"message": "Could not parse input message", "error": "invalid_input_message",
         "code": 1008}


def single(obj: object, first: bool = False) -> object:
    return parse_client_message(json.dumps(obj), multi=False, first=first)


def multi(obj: object, first: bool = False) -> object:
    return parse_client_message(json.dumps(obj), multi=True, first=first)


def test_initial_message_round_trips() -> None:
    message = single(INIT, first=True)
    assert message == InitializeConnection(
        " ", VoiceSettings(stability=0.5, similarity_boost=0.8, speed=1.1),
        (120.0, 160.0, 250.0, 290.0), xi_api_key="tk_secret")
    assert isinstance(message, InitializeConnection) and message.credential == "tk_secret"
    assert single(message.to_json(), first=True) == message
    bearer = single({"text": " ", "authorization": "Bearer tk_x"}, first=True)
    assert isinstance(bearer, InitializeConnection) and bearer.credential == "tk_x"


def test_text_and_end_of_input_round_trip() -> None:
    message = single(TEXT)
    assert message == SendText("Hello world. ", try_trigger_generation=True)
    assert isinstance(message, SendText) and single(message.to_json()) == message
    assert single({"text": "Bye. ", "flush": True}) == SendText("Bye. ", flush=True)
    assert single({"text": ""}) == EndOfInput()


def test_multi_context_messages() -> None:
    assert multi(MULTI_TEXT) == SendText("Hello ", flush=True, context_id="ctx-1")
    assert multi({"context_id": "ctx-1", "flush": True}) == FlushContext("ctx-1")
    assert multi({"context_id": "ctx-1", "close_context": True}) == CloseContext("ctx-1")
    assert multi({"close_socket": True}) == CloseSocket()
    assert multi({"text": "", "context_id": "ctx-1"}) == KeepContextAlive("ctx-1")
    init = multi({"text": " ", "context_id": "ctx-2", "voice_settings": {"speed": 0.9}})
    assert init == InitializeConnection(" ", VoiceSettings(speed=0.9), context_id="ctx-2")
    for message in (FlushContext("a"), CloseContext("a"), CloseSocket(), KeepContextAlive("a")):
        assert multi(message.to_json()) == message


@pytest.mark.parametrize(("raw", "first"), [
    ("not json", False),
    ("[1]", False),
    ('{"flush": true}', False),
    ('{"text": 5}', False),
    ('{"voice_settings": {}}', True),
    ('{"text": " ", "voice_settings": {"speed": "fast"}}', True),
    ('{"text": " ", "generation_config": {"chunk_length_schedule": "x"}}', True),
    ('{"text": "a", "flush": "yes"}', False),
])
def test_malformed_messages_get_elevenlabs_error(raw: str, first: bool) -> None:
    with pytest.raises(ElevenLabsError) as caught:
        parse_client_message(raw, multi=False, first=first)
    err = caught.value
    assert (err.code, err.close_code) == ("invalid_input_message", 1008)
    assert json.loads(serialize(ErrorOutput.of(err))).keys() == ERROR.keys()


def test_out_of_range_settings_are_refused() -> None:
    with pytest.raises(ElevenLabsError) as caught:
        single({"text": " ", "voice_settings": {"speed": 2.0}}, first=True)
    assert caught.value.code == "invalid_voice_settings"
    with pytest.raises(ElevenLabsError):
        single({"text": " ", "generation_config": {"chunk_length_schedule": [10]}}, first=True)
    with pytest.raises(ElevenLabsError):
        multi({"close_context": True})


def test_server_messages_match_the_golden_shapes() -> None:
    alignment = CharAlignment(("H", "i"), (0, 3), (3, 5))
    assert json.loads(serialize(AudioOutput(b"\0\1\2\3", alignment, alignment))) == AUDIO
    assert parse_server_message(json.dumps(AUDIO)) == AudioOutput(b"\0\1\2\3", alignment,
                                                                   alignment)
    assert json.loads(serialize(FinalOutput())) == {"isFinal": True}
    assert json.loads(serialize(FinalOutput("c"))) == {"isFinal": True, "contextId": "c"}
    with_context = json.loads(serialize(AudioOutput(b"x", context_id="c")))
    assert with_context["contextId"] == "c" and with_context["alignment"] is None
    assert parse_server_message(json.dumps(ERROR)) == ErrorOutput(
        ERROR["message"], "invalid_input_message", 1008)


def test_query_defaults_and_limits() -> None:
    query = parse_query({})
    assert (query.output_format, query.inactivity_timeout_s, query.sync_alignment) == (
        "mp3_44100_128", 20, False)
    query = parse_query({"output_format": "pcm_16000", "inactivity_timeout": "180",
                         "sync_alignment": "true", "auto_mode": "true"})
    assert (query.output_format, query.inactivity_timeout_s, query.auto_mode) == (
        "pcm_16000", 180, True)
    for bad in ({"inactivity_timeout": "181"}, {"inactivity_timeout": "x"},
                {"sync_alignment": "maybe"}):
        with pytest.raises(ElevenLabsError):
            parse_query(bad)


def test_socket_lifecycle() -> None:
    protocol = ElevenLabsProtocol(multi=False)
    assert isinstance(protocol.receive(json.dumps(INIT)), InitializeConnection)
    assert protocol.state is SocketState.OPEN
    assert isinstance(protocol.receive(json.dumps(TEXT)), SendText)
    protocol.context_started("default")
    assert protocol.receive('{"text": ""}') == EndOfInput()
    assert protocol.state is SocketState.ENDING and not protocol.done
    assert protocol.context_finished("default") == FinalOutput(None)
    assert protocol.done
    protocol.close()
    with pytest.raises(InvalidProtocolState, match="closed"):
        protocol.receive(json.dumps(TEXT))


def test_multi_finals_name_their_context() -> None:
    protocol = ElevenLabsProtocol(multi=True)
    protocol.receive(json.dumps({"text": " "}))
    protocol.context_started("a")
    assert protocol.context_finished("a") == FinalOutput("a")
    assert protocol.audio("a", b"x", None).context_id == "a"


def test_alignment_chars_add_up_to_the_text() -> None:
    aligner = CharAligner()
    aligner.add_text("Hello big ")
    first = aligner.align([WordTiming("hello", 100, 400)], chunk_start_ms=100)
    assert first is not None and "".join(first.chars) == "Hello "
    assert first.char_start_times_ms[0] == 0 and first.char_durations_ms[-1] == 0
    aligner.add_text("world.")
    second = aligner.align([WordTiming("big", 400, 600), WordTiming("world", 600, 900)], 400)
    assert second is not None and "".join(second.chars) == "big world."
    assert list(second.char_start_times_ms) == sorted(second.char_start_times_ms)
    assert aligner.rest(500) is None
    aligner.add_text(" tail")
    rest = aligner.rest(500)
    assert rest is not None and "".join(rest.chars) == " tail"


def test_only_elevenlabs_websockets_handle_their_own_auth() -> None:
    assert handles_own_auth("/v1/text-to-speech/piper:joe/stream-input")
    assert handles_own_auth("/v1/text-to-speech/v_1/multi-stream-input")
    assert handles_own_auth("/v1/text-to-speech/piper:joe/stream")
    assert not handles_own_auth("/v1/stream")
