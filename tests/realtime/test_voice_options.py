"""The ``pitch`` and ``language`` voice options as every way in parses them (no sockets): the native
protocol's messages and connect query, OpenAI's ``/v1/audio/speech`` body, ElevenLabs' query and
body, and ``POST /v1/synthesize``. Good values come through as given; bad ones are refused with
the error code each API documents, naming the field. Whether a voice speaks a language is checked
when a context starts (``tests/realtime/test_voice_options_server.py``)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from realtime.elevenlabs.errors import ElevenLabsError
from realtime.elevenlabs.http import parse_tts_body
from realtime.elevenlabs.query import parse_query as parse_elevenlabs_query
from realtime.native_query import parse_query as parse_native_query
from realtime.openai_speech import InvalidSpeechRequest, error_body, parse_speech_request
from realtime.protocol import (
    ConfigMessage,
    ContextStarted,
    TextMessage,
    parse_client_message,
    parse_server_message,
)
from session.errors import BadMessage, BadRequest
from session.languages import UnsupportedLanguage
from session.pitch import MAX_PITCH, MIN_PITCH
from session.synthesis import SynthesisRequest


def wire(**fields: Any) -> str:
    return json.dumps(fields)


# -- native protocol messages ---------------------------------------------------------------------


def test_text_and_config_carry_pitch_and_language() -> None:
    text = parse_client_message(wire(type="text", context_id="a", text="Hi.", pitch=-2.5,
                                     language="pt_BR"))
    assert text == TextMessage("a", "Hi.", pitch=-2.5, language="pt_BR")
    config = parse_client_message(wire(type="config", pitch=3, language="fr"))
    assert config == ConfigMessage(pitch=3.0, language="fr")
    assert isinstance(config, ConfigMessage) and isinstance(config.pitch, float)
    bare = parse_client_message(wire(type="text", context_id="a", text="Hi."))
    assert isinstance(bare, TextMessage) and bare.pitch is None and bare.language is None


@pytest.mark.parametrize("message", [
    TextMessage("a", "Hi.", voice="joe", speed=1.2, pitch=MAX_PITCH, language="en-us"),
    ConfigMessage(pitch=MIN_PITCH, language="es"),
])
def test_messages_with_options_round_trip(message: TextMessage | ConfigMessage) -> None:
    assert parse_client_message(message.to_wire()) == message


def test_context_started_reports_the_settings_and_round_trips() -> None:
    started = ContextStarted("a", "kokoro:jf_alpha", "pcm_s16le", 24000, 1.0, 2.0, "fr")
    assert json.loads(started.to_wire())["language"] == "fr"
    assert parse_server_message(started.to_wire()) == started
    own_language = ContextStarted("a", "piper:joe", "pcm_s16le", 24000, 1.0, 0.0, None)
    assert "language" not in json.loads(own_language.to_wire())
    older = parse_server_message(wire(type="context_started", context_id="a", voice="joe",
                                      format="pcm_s16le", sample_rate=24000))
    assert older == ContextStarted("a", "joe", "pcm_s16le", 24000)


@pytest.mark.parametrize("field, value, says", [
    ("pitch", MAX_PITCH + 0.5, "between -6 and 6 semitones"),
    ("pitch", MIN_PITCH - 1, "between -6 and 6 semitones"),
    ("pitch", "high", "must be a number"),
    ("pitch", True, "must be a number"),
    ("language", 7, "must be a string"),
    ("language", "", "language code"),
    ("language", "english please", "language code"),
    ("language", "en-" + "x" * 20, "language code"),
])
def test_bad_options_are_bad_message_naming_the_field(field: str, value: object,
                                                      says: str) -> None:
    for kind in ("text", "config"):
        body = {"type": kind, "context_id": "c1", "text": "Hi.", field: value}
        with pytest.raises(BadMessage) as info:
            parse_client_message(json.dumps(body))
        assert info.value.code == "bad_message"
        assert f"'{field}'" in info.value.message and says in info.value.message
        if kind == "text":
            assert info.value.context_id == "c1"  # the error names the context it refused


# -- native connect query ----------------------------------------------------------------------------


def test_connect_query_takes_pitch_and_language() -> None:
    params = parse_native_query({"pitch": "-3.5", "language": "EN_us"}, "piper:joe")
    assert (params.pitch, params.language) == (-3.5, "EN_us")
    default = parse_native_query({}, "piper:joe")
    assert (default.pitch, default.language) == (0.0, None)


@pytest.mark.parametrize("query", [
    {"pitch": "7"}, {"pitch": "nan"}, {"pitch": "inf"}, {"pitch": "up"}, {"language": "fr fr"},
    {"language": "1x"},
])
def test_bad_connect_query_is_refused_with_4400(query: dict[str, str]) -> None:
    with pytest.raises(BadRequest) as info:
        parse_native_query(query, "piper:joe")
    assert info.value.close_code == 4400
    assert next(iter(query)) in info.value.message


# -- OpenAI /v1/audio/speech (Timbre extensions) -----------------------------------------------------


def speech_body(**extra: Any) -> bytes:
    return json.dumps({"model": "tts-1", "input": "Hello.", "voice": "alloy", **extra}).encode()


def test_openai_body_takes_pitch_and_language() -> None:
    request = parse_speech_request(speech_body(pitch=1.5, language="fr"))
    assert (request.pitch, request.language) == (1.5, "fr")
    plain = parse_speech_request(speech_body())
    assert (plain.pitch, plain.language) == (0.0, None)


@pytest.mark.parametrize("extra, param, code", [
    ({"pitch": 12}, "pitch", "invalid_value"),
    ({"pitch": "up"}, "pitch", "invalid_type"),
    ({"language": ["fr"]}, "language", "invalid_type"),
    ({"language": "français"}, "language", "invalid_value"),
])
def test_bad_openai_options_name_their_param(extra: dict[str, Any], param: str,
                                             code: str) -> None:
    with pytest.raises(InvalidSpeechRequest) as info:
        parse_speech_request(speech_body(**extra))
    body = error_body(info.value)["error"]
    assert (body["param"], body["code"], body["type"]) == (param, code, "invalid_request_error")


def test_an_unsupported_language_points_at_the_language_param() -> None:
    body = error_body(UnsupportedLanguage("voice piper:joe does not speak 'fr'"))["error"]
    assert (body["param"], body["code"]) == ("language", "unsupported_language")


# -- ElevenLabs ------------------------------------------------------------------------------------


def test_elevenlabs_query_takes_language_code_and_pitch() -> None:
    query = parse_elevenlabs_query({"language_code": "fr", "pitch": "2"})
    assert (query.language_code, query.pitch) == ("fr", 2.0)
    assert (parse_elevenlabs_query({}).language_code, parse_elevenlabs_query({}).pitch) == (None,
                                                                                            0.0)


@pytest.mark.parametrize("query", [{"language_code": "fr!"}, {"pitch": "6.5"},
                                   {"pitch": "low"}])
def test_bad_elevenlabs_query_is_invalid_request(query: dict[str, str]) -> None:
    with pytest.raises(ElevenLabsError) as info:
        parse_elevenlabs_query(query)
    assert info.value.code == "invalid_request" and next(iter(query)) in info.value.message


def test_elevenlabs_body_takes_language_code() -> None:
    body = parse_tts_body(json.dumps({"text": "Bonjour.", "language_code": "fr",
                                      "voice_settings": {"speed": 1.1}}).encode())
    assert (body.text, body.speed, body.language_code) == ("Bonjour.", 1.1, "fr")
    assert parse_tts_body(b'{"text": "Hi.", "language_code": null}').language_code is None
    with pytest.raises(ElevenLabsError) as info:
        parse_tts_body(b'{"text": "Hi.", "language_code": 5}')
    assert info.value.code == "invalid_request"


# -- POST /v1/synthesize -------------------------------------------------------------------------------


def test_synthesize_body_knows_pitch_and_language() -> None:
    request = SynthesisRequest.from_json({"text": "Hi.", "voice": "piper:joe", "pitch": -1,
                                          "language": "en"})
    assert (request.pitch, request.language) == (-1.0, "en")
    with pytest.raises(BadRequest, match="'pitch'"):
        SynthesisRequest.from_json({"text": "Hi.", "voice": "piper:joe", "pitch": "up"})
    with pytest.raises(BadRequest, match="'language'"):
        SynthesisRequest.from_json({"text": "Hi.", "voice": "piper:joe", "language": 1})
    with pytest.raises(BadRequest, match="known: text, voice, format, speed, pitch, language"):
        SynthesisRequest.from_json({"text": "Hi.", "voice": "piper:joe", "tone": 1})
