"""``POST /v1/voices/mix`` against a real server: a cloned profile blended with a stock voice speaks,
a Kokoro blend of stock styles speaks, bad mixes are refused clearly, and revoking a source ends
the mix. Also: offline synthesis applies the ``pitch`` option like streams do."""

from __future__ import annotations

import io
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import requests
import soundfile

from inference.conversion.model import mean_f0
from tests.server import RunningServer, ServerThread
from tests.session.test_cloning import REFERENCE, espeak

pytestmark = pytest.mark.skipif(shutil.which("espeak-ng") is None,
                                reason="espeak-ng (apt) makes the cloned speaker")


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    # clones start from joe here (quick to say the transcript); Kokoro runs for its blends
    thread = ServerThread(tmp_path_factory.mktemp("mix"), kokoro={"enabled": True},
                          scheduler={"admission_utilization": None},
                          cloning={"base_voices": ("piper:joe",)})
    running = thread.start(timeout_s=300)
    yield running
    thread.stop()


def call(server: RunningServer, method: str, path: str, **kwargs: Any) -> requests.Response:
    headers = {"Authorization": f"Bearer {server.key}"}
    return requests.request(method, server.url + path, headers=headers, timeout=300, **kwargs)


def clone(server: RunningServer, name: str) -> str:
    audio, rate = espeak(REFERENCE)
    wav = io.BytesIO()
    soundfile.write(wav, audio, rate, format="WAV", subtype="PCM_16")
    made = call(server, "POST", "/v1/voices", data={
        "name": name, "transcript": REFERENCE, "consent_owner_name": "Ada Lovelace",
        "consent_statement": "I agree.", "consent_accepted": "true",
        "consent_purpose": "tests"}, files={"file": ("ref.wav", wav.getvalue(), "audio/wav")})
    assert made.status_code == 202, made.text
    wait_job(server, made.json()["job"]["job_id"])
    return str(made.json()["voice"]["voice_id"])


def wait_job(server: RunningServer, job: str) -> None:
    """Poll ``GET /v1/jobs/{job}`` until it ends; it must have succeeded."""
    for _ in range(1000):
        state = call(server, "GET", f"/v1/jobs/{job}").json()
        if state["status"] in ("succeeded", "failed"):
            break
        time.sleep(0.3)
    assert state["status"] == "succeeded", state


def speak(server: RunningServer, voice: str) -> np.ndarray:
    answer = call(server, "POST", "/v1/audio/speech", json={
        "model": "tts-1", "voice": voice, "input": "The salt breeze came across from the sea.",
        "response_format": "wav"})
    assert answer.status_code == 200, answer.text
    audio, _ = soundfile.read(io.BytesIO(answer.content), dtype="float32")
    return np.asarray(audio)


def test_a_clone_mixed_with_a_stock_voice_speaks_and_ends_with_its_consent(
        server: RunningServer, tmp_path: Path) -> None:
    voice = clone(server, "Target")
    made = call(server, "POST", "/v1/voices/mix", json={"name": "Half", "voices": [
        {"voice_id": voice, "weight": 1}, {"voice_id": "piper:joe", "weight": 1}]})
    assert made.status_code == 201, made.text
    mixed = made.json()
    assert mixed["status"] == "ready" and mixed["converted"] is True
    assert [m["voice_id"] for m in mixed["mix"]] == [voice, "piper:joe"]
    assert mixed["mix"][0]["weight"] == pytest.approx(0.5)
    audio = speak(server, mixed["voice_id"])
    assert len(audio) > 8000 and float(np.abs(audio).max()) > 0.05

    assert call(server, "POST", f"/v1/voices/{voice}/revoke").status_code == 200
    after = call(server, "GET", f"/v1/voices/{mixed['voice_id']}").json()
    assert after["status"] == "revoked"
    refused = call(server, "POST", "/v1/audio/speech", json={
        "model": "tts-1", "voice": mixed["voice_id"], "input": "Hello."})
    assert refused.status_code == 409, refused.text


def test_kokoro_stock_styles_blend_into_a_voice(server: RunningServer) -> None:
    made = call(server, "POST", "/v1/voices/mix", json={"name": "Kokoro blend", "voices": [
        {"voice_id": "kokoro:jf_gongitsune", "weight": 0.7},
        {"voice_id": "kokoro:jm_kumo", "weight": 0.3}]})
    assert made.status_code == 201, made.text
    assert made.json()["converted"] is False
    audio = speak(server, made.json()["voice_id"])
    assert len(audio) > 8000 and float(np.abs(audio).max()) > 0.05
    listed = call(server, "GET", "/v1/voices").json()["voices"]
    assert made.json()["voice_id"] in [v["voice_id"] for v in listed]


@pytest.mark.parametrize(("body", "status", "code"), [
    ({"name": "x", "voices": [{"voice_id": "piper:joe", "weight": 1}]}, 400, "bad_request"),
    ({"name": "x", "voices": [{"voice_id": "piper:joe", "weight": 1},
                              {"voice_id": "kokoro:jm_kumo", "weight": 1}]}, 400, "bad_request"),
    ({"name": "x", "voices": [{"voice_id": "kokoro:jm_kumo", "weight": -1},
                              {"voice_id": "kokoro:jf_nezumi", "weight": 1}]}, 400, "bad_request"),
    ({"name": "x", "voices": [{"voice_id": "kokoro:nobody", "weight": 1},
                              {"voice_id": "kokoro:jf_nezumi", "weight": 1}]}, 404,
     "unknown_voice"),
    ({"name": "x", "voices": [{"voice_id": "v_0123456789abcdef", "weight": 1},
                              {"voice_id": "kokoro:jf_nezumi", "weight": 1}]}, 404,
     "unknown_voice"),
    ({"name": "x", "voices": [{"voice_id": "joe", "weight": 1},
                              {"voice_id": "piper:joe", "weight": 1}]}, 400, "bad_request"),
    ({"voices": []}, 400, "bad_request"),
    ([1, 2], 400, "bad_request"),
])
def test_bad_mixes_are_refused_clearly(server: RunningServer, body: Any, status: int,
                                       code: str) -> None:
    answer = call(server, "POST", "/v1/voices/mix", json=body)
    assert answer.status_code == status, answer.text
    assert answer.json()["error"]["code"] == code


def synthesize(server: RunningServer, body: dict[str, Any]) -> np.ndarray:
    made = call(server, "POST", "/v1/synthesize", json={"format": "wav", **body})
    assert made.status_code == 202, made.text
    job = made.json()["job"]["job_id"]
    wait_job(server, job)
    audio, _ = soundfile.read(io.BytesIO(call(server, "GET", f"/v1/jobs/{job}/audio").content),
                              dtype="float32")
    return np.asarray(audio)


def test_offline_synthesis_applies_pitch(server: RunningServer) -> None:
    text = "The birch canoe slid on the smooth planks. Glue the sheet to the dark blue background."
    plain = synthesize(server, {"text": text, "voice": "piper:joe"})
    higher = synthesize(server, {"text": text, "voice": "piper:joe", "pitch": 4})
    ratio = mean_f0(higher, 22050) / mean_f0(plain, 22050)
    assert ratio == pytest.approx(2 ** (4 / 12), rel=0.08)
    assert len(higher) / len(plain) == pytest.approx(1.0, abs=0.15)
