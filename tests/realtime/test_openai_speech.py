"""OpenAI-compatible ``POST /v1/audio/speech``: the request parser and error shape on their own, then
the official ``openai`` SDK against a real server (embedded SecantusDB, auth, Piper): whole and
streamed responses that a recogniser understands, OpenAI-shaped refusals the SDK raises as its own
exceptions, tier limits and metering, and a client that leaves mid-stream leaving no compute
behind."""

from __future__ import annotations

import asyncio
import io
import json
import re
import time
from collections.abc import AsyncIterator, Iterator

import httpx2
import numpy as np
import openai
import pytest
import soundfile

from realtime.audio import pcm16_to_float
from realtime.openai_speech import (
    MAX_INPUT_CHARS,
    OPENAI_VOICES,
    InvalidSpeechRequest,
    error_body,
    parse_speech_request,
)
from session.db import Stores, open_database
from session.ids import TenantId
from session.quota_errors import QuotaExceeded
from tests.asr import recognize, word_overlap
from tests.server import RunningServer, ServerThread

SENTENCE = "The quick brown fox jumps over the lazy dog near the river bank."
LONG_TEXT = " ".join(["A long passage that keeps the engine busy for a good while."] * 20)


# -- the request parser and error shape, no socket -----------------------------------------------------


def body(**fields: object) -> bytes:
    return json.dumps({"model": "tts-1", "input": "Hello there.", "voice": "alloy", **fields}
                      ).encode()


def refusal(raw: bytes) -> InvalidSpeechRequest:
    with pytest.raises(InvalidSpeechRequest) as caught:
        parse_speech_request(raw)
    return caught.value


def test_defaults_follow_openai() -> None:
    request = parse_speech_request(body())
    assert (request.model, request.input, request.voice) == ("tts-1", "Hello there.", "piper:joe")
    assert (request.response_format, request.speed) == ("mp3", 1.0)


@pytest.mark.parametrize("model", ["tts-1", "tts-1-hd", "gpt-4o-mini-tts", "anything-else"])
def test_any_model_name_is_accepted(model: str) -> None:
    assert parse_speech_request(body(model=model)).model == model


def test_openai_voices_map_to_the_stock_voice_and_timbre_ids_pass_through() -> None:
    assert {parse_speech_request(body(voice=name)).voice for name in OPENAI_VOICES} == {
        "piper:joe"}
    assert parse_speech_request(body(voice="Nova")).voice == "piper:joe"
    assert parse_speech_request(body(voice="v_123")).voice == "v_123"
    assert parse_speech_request(body(voice={"id": "piper:joe"})).voice == "piper:joe"


def test_instructions_and_unknown_fields_are_ignored() -> None:
    request = parse_speech_request(body(instructions="Speak warmly.", stream_format="audio",
                                        future_field=1))
    assert request.input == "Hello there."


@pytest.mark.parametrize(("fields", "param", "code", "message"), [
    ({"input": ""}, "input", "empty_string", "'input' must not be empty"),
    ({"input": "   "}, "input", "empty_string", "input must contain text"),
    ({"input": "x" * (MAX_INPUT_CHARS + 1)}, "input", "string_above_max_length",
     f"the maximum is {MAX_INPUT_CHARS}"),
    ({"model": ""}, "model", "empty_string", "'model' must not be empty"),
    ({"voice": None}, "voice", "missing_required_parameter", "'voice' is required"),
    ({"voice": 3}, "voice", "invalid_type", "voice name or id"),
    ({"response_format": "ogg"}, "response_format", "invalid_value", "is not one of"),
    ({"speed": 3.0}, "speed", "invalid_value", "0.5 to 2.0"),
    ({"speed": 0.25}, "speed", "invalid_value", "OpenAI's API allows 0.25 to 4.0"),
    ({"speed": "fast"}, "speed", "invalid_type", "speed must be a number"),
    ({"stream_format": "sse"}, "stream_format", "unsupported_value", "'sse' is not supported"),
])
def test_bad_fields_are_named(fields: dict[str, object], param: str, code: str,
                              message: str) -> None:
    err = refusal(body(**fields))
    assert (err.param, err.code, err.http_status) == (param, code, 400)
    assert message in err.message


def test_a_body_that_is_not_a_json_object_is_refused() -> None:
    assert refusal(b"not json").code == "invalid_json"
    assert refusal(b"[1, 2]").code == "invalid_json"
    assert refusal(json.dumps({"voice": "alloy"}).encode()).param == "model"


def test_errors_have_openais_shape() -> None:
    err = refusal(body(speed=9))
    assert error_body(err) == {"error": {"message": err.message, "type": "invalid_request_error",
                                         "param": "speed", "code": "invalid_value"}}
    quota = error_body(QuotaExceeded("used up"))["error"]
    assert (quota["type"], quota["code"], quota["param"]) == (
        "insufficient_quota", "quota_exceeded", None)


# -- the SDK against a real server ------------------------------------------------------------------


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    thread = ServerThread(tmp_path_factory.mktemp("openai"))
    yield thread.start()
    thread.stop()


@pytest.fixture
async def stores(server: RunningServer) -> AsyncIterator[Stores]:
    db = open_database(server.mongo_url)
    yield Stores.over(db)
    db.client.close()


def client(server: RunningServer, key: str | None = None) -> openai.OpenAI:
    return openai.OpenAI(base_url=server.url + "/v1", api_key=key or server.key, max_retries=0,
                         timeout=120)


def understood(audio: np.ndarray, rate: int, text: str = SENTENCE) -> float:
    return word_overlap(text, recognize(audio.astype(np.float32), rate))


def test_the_sdk_gets_a_wav_that_says_the_text(server: RunningServer) -> None:
    response = client(server).audio.speech.create(
        model="tts-1", voice="alloy", input=SENTENCE, response_format="wav")
    assert response.response.headers["content-type"] == "audio/wav"
    audio, rate = soundfile.read(io.BytesIO(response.content), dtype="float32")
    assert rate == 24000 and len(audio) / rate > 2.0
    assert understood(audio, rate) >= 0.5


def test_mp3_is_the_default_format(server: RunningServer) -> None:
    response = client(server).audio.speech.create(model="gpt-4o-mini-tts", voice="nova",
                                                  input=SENTENCE, instructions="Cheerfully.")
    assert response.response.headers["content-type"] == "audio/mpeg"
    audio, rate = soundfile.read(io.BytesIO(response.content), dtype="float32")
    assert understood(audio, rate) >= 0.5


def test_the_streamed_response_arrives_in_pieces_and_says_the_text(
    server: RunningServer,
) -> None:
    started = time.monotonic()
    with client(server).audio.speech.with_streaming_response.create(
            model="tts-1", voice="piper:joe", input=SENTENCE, response_format="pcm") as response:
        assert response.headers["content-type"] == "audio/pcm"
        assert response.headers["transfer-encoding"] == "chunked"
        pieces = []
        first_at = None
        for piece in response.iter_bytes():
            first_at = first_at or time.monotonic()
            pieces.append(piece)
    total_s = time.monotonic() - started
    assert len(pieces) > 1
    assert first_at is not None and first_at - started < total_s
    audio = pcm16_to_float(b"".join(pieces))
    assert understood(audio, 24000) >= 0.5


def test_speed_changes_the_duration(server: RunningServer) -> None:
    def seconds(speed: float) -> float:
        data = client(server).audio.speech.create(
            model="tts-1", voice="alloy", input=SENTENCE, response_format="pcm",
            speed=speed).content
        return len(data) / 2 / 24000

    assert seconds(2.0) < 0.7 * seconds(1.0)


@pytest.mark.parametrize(("kwargs", "param", "message"), [
    ({"input": ""}, "input", "must not be empty"),
    ({"input": "word " * 1000}, "input", "5000 characters; the maximum is 4096"),
    ({"response_format": "ogg"}, "response_format", "'ogg' is not one of"),
    ({"speed": 4.0}, "speed", "this server speaks at 0.5 to 2.0"),
    ({"voice": "nobody"}, "voice", "unknown voice 'nobody'"),
])
def test_refusals_are_the_sdks_bad_request_errors(server: RunningServer, kwargs: dict[str, object],
                                                  param: str, message: str) -> None:
    request: dict[str, object] = {"model": "tts-1", "voice": "alloy", "input": SENTENCE,
                                  "response_format": "wav", **kwargs}
    with pytest.raises(openai.BadRequestError) as caught:
        client(server).audio.speech.create(**request)  # type: ignore[arg-type]
    err = caught.value
    assert message in err.message
    assert (err.status_code, err.type, err.param) == (400, "invalid_request_error", param)


def test_a_wrong_key_is_the_sdks_authentication_error(server: RunningServer) -> None:
    with pytest.raises(openai.AuthenticationError):
        client(server, key="tk_wrong").audio.speech.create(
            model="tts-1", voice="alloy", input=SENTENCE)


def metric(server: RunningServer, name: str) -> float:
    match = re.search(rf"^{name}(?:{{[^}}]*}})? (\S+)$", server.metrics_text, re.MULTILINE)
    assert match is not None, name
    return float(match.group(1))


def wait_idle(server: RunningServer, timeout_s: float = 15.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if (metric(server, "timbre_active_contexts") == 0
                and metric(server, "timbre_busy_streams") == 0
                and metric(server, "timbre_queue_depth") == 0):
            return
        time.sleep(0.05)
    raise AssertionError(f"compute left behind:\n{server.metrics_text}")


def test_a_client_that_leaves_mid_stream_leaves_no_context_behind(server: RunningServer) -> None:
    with client(server).audio.speech.with_streaming_response.create(
            model="tts-1", voice="alloy", input=LONG_TEXT, response_format="mp3") as response:
        first = next(response.iter_bytes())
        assert first
        assert metric(server, "timbre_active_contexts") == 1
    started = time.monotonic()
    wait_idle(server)
    assert time.monotonic() - started < 5.0  # long before the passage could have been spoken


# -- tenants -------------------------------------------------------------------------------------------


async def new_tenant(stores: Stores, name: str, tier: str) -> tuple[TenantId, str]:
    tenant = await stores.tenants.create(name, tier)
    key, _ = await stores.api_keys.create(tenant.tenant_id)
    return tenant.tenant_id, key


async def test_characters_are_metered(server: RunningServer, stores: Stores) -> None:
    tenant, key = await new_tenant(stores, "openai-meter", "pro")
    await asyncio.to_thread(lambda: client(server, key).audio.speech.create(
        model="tts-1", voice="alloy", input=SENTENCE, response_format="pcm").content)
    for _ in range(100):
        usage = await stores.usage.get(tenant)
        if usage.characters:
            break
        await asyncio.sleep(0.05)
    assert len(SENTENCE) - SENTENCE.count(" ") <= usage.characters <= len(SENTENCE)
    assert usage.audio_s > 2.0


async def test_a_tiers_concurrent_streams_and_characters_are_enforced(
    server: RunningServer, stores: Stores,
) -> None:
    tenant, key = await new_tenant(stores, "openai-free", "free")
    speech = client(server, key).audio.speech

    def while_one_streams() -> None:
        with speech.with_streaming_response.create(
                model="tts-1", voice="alloy", input=LONG_TEXT, response_format="pcm") as first:
            next(first.iter_bytes())
            with pytest.raises(openai.RateLimitError) as caught:
                speech.create(model="tts-1", voice="alloy", input=SENTENCE)
            assert caught.value.code == "too_many_streams"

    await asyncio.to_thread(while_one_streams)
    await stores.usage.add(tenant, 10_000)  # the free tier's month is used up
    await asyncio.sleep(5.1)  # the server's cached usage is at most 5 s old
    with pytest.raises(openai.APIStatusError) as caught:
        await asyncio.to_thread(lambda: speech.create(model="tts-1", voice="alloy",
                                                      input=SENTENCE))
    assert (caught.value.status_code, caught.value.code) == (402, "quota_exceeded")
    assert caught.value.type == "insufficient_quota"


async def ready_profile(stores: Stores, tenant: TenantId) -> str:
    consent = await stores.consents.create(
        tenant, owner_name="Ada", statement="I agree to my voice being cloned.", accepted=True,
        purpose="tests", expires_at=None, uploaded_by="test")
    profile = await stores.voices.create(tenant, "mine", engine="piper",
                                         consent_id=consent.consent_id)
    await stores.voices.set_ready(tenant, profile.voice_id, {"engine": "piper", "voice": "joe"},
                                  None)
    return str(profile.voice_id)


async def test_a_profile_speaks_and_revoking_it_cuts_the_stream(
    server: RunningServer, stores: Stores,
) -> None:
    tenant, key = await new_tenant(stores, "openai-profile", "pro")
    voice = await ready_profile(stores, tenant)
    speech = client(server, key).audio.speech
    audio = await asyncio.to_thread(lambda: speech.create(
        model="tts-1", voice=voice, input=SENTENCE, response_format="pcm").content)
    assert understood(pcm16_to_float(audio), 24000) >= 0.5

    def revoked_mid_stream() -> None:
        with speech.with_streaming_response.create(
                model="tts-1", voice=voice, input=LONG_TEXT, response_format="pcm") as response:
            pieces = response.iter_bytes()
            next(pieces)
            revoke = httpx2.post(f"{server.url}/v1/voices/{voice}/revoke",
                                headers={"Authorization": f"Bearer {key}"})
            assert revoke.status_code == 200, revoke.text
            with pytest.raises(httpx2.RemoteProtocolError):  # truncated: no final chunk
                for _ in pieces:
                    pass

    await asyncio.to_thread(revoked_mid_stream)
    await asyncio.to_thread(wait_idle, server)
