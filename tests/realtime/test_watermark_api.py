"""``POST /v1/watermark/detect`` and ``timbre watermark detect`` against a real server over sockets.

The server synthesises speech through its OpenAI-compatible endpoint (the stream is watermarked on
the way out and its provenance recorded for the demo tenant); the file it returned is uploaded back.
"""

from __future__ import annotations

import asyncio
import io
import json
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import aiohttp
import numpy as np
import pytest
import soundfile

from realtime import watermark_api
from realtime.cli import main as cli_main
from session.auth import DEMO_TENANT
from session.db import Stores, open_database
from tests.server import RunningServer, ServerThread

TEXT = ("Please remember to bring your passport and two forms of identification to the "
        "appointment on Friday. The office opens at nine and closes at five thirty.")


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    # no admission control: a loaded test machine must not turn the synthesis away
    thread = ServerThread(tmp_path_factory.mktemp("watermark"),
                          scheduler={"admission_utilization": None})
    yield thread.start(timeout_s=300)
    thread.stop()


@pytest.fixture(scope="module")
def speech(server: RunningServer) -> bytes:
    """An MP3 the server synthesised for the demo tenant."""

    async def fetch() -> bytes:
        async with aiohttp.ClientSession() as http:
            for _ in range(10):  # server_busy (503) says retry: a loaded test machine can refuse
                async with http.post(
                        server.url + "/v1/audio/speech",
                        headers={"Authorization": f"Bearer {server.key}"},
                        json={"model": "tts-1", "voice": "alloy", "input": TEXT,
                              "response_format": "mp3"}) as response:
                    if response.status != 503:
                        assert response.status == 200
                        return await response.read()
                await asyncio.sleep(2.0)
        raise AssertionError("the server stayed busy")

    return asyncio.run(fetch())


@pytest.fixture
async def stores(server: RunningServer) -> AsyncIterator[Stores]:
    db = open_database(server.mongo_url)
    yield Stores.over(db)
    db.client.close()


async def upload(server: RunningServer, key: str | None, data: bytes | None,
                 field: str = "file") -> tuple[int, dict[str, object]]:
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    form = aiohttp.FormData()
    if data is not None:
        form.add_field(field, data, filename="clip", content_type="application/octet-stream")
    else:
        form.add_field("note", "no audio here")
    async with aiohttp.ClientSession() as http, http.post(
            server.url + watermark_api.PATH, data=form, headers=headers) as response:
        return response.status, await response.json()


async def test_the_owner_gets_detection_and_provenance(server: RunningServer,
                                                       speech: bytes) -> None:
    status, body = await upload(server, server.key, speech)
    assert status == 200, body
    assert body["detected"] is True and float(body["confidence"]) > 0.999  # type: ignore[arg-type]
    provenance = body["provenance"]
    assert isinstance(provenance, dict)
    assert provenance["tenant"] == DEMO_TENANT
    assert provenance["voice_id"] == "piper:joe"
    assert provenance["api_version"] == "v1"
    assert str(provenance["generated_at"]).endswith("Z")


async def test_another_tenant_learns_only_that_it_is_watermarked(
        server: RunningServer, speech: bytes, stores: Stores) -> None:
    tenant = await stores.tenants.create("watermark-other", "pro")
    key, _ = await stores.api_keys.create(tenant.tenant_id)
    status, body = await upload(server, key, speech)
    assert status == 200 and body["detected"] is True
    assert "provenance" not in body


async def test_unmarked_audio_is_not_detected(server: RunningServer) -> None:
    rng = np.random.default_rng(0)
    noise = 0.1 * rng.normal(size=16000 * 4)
    wav = io.BytesIO()
    soundfile.write(wav, noise, 16000, format="WAV")
    status, body = await upload(server, server.key, wav.getvalue())
    assert status == 200 and body["detected"] is False and "provenance" not in body


async def test_bad_uploads_get_clear_errors(server: RunningServer,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    status, body = await upload(server, server.key, None)
    assert status == 400 and body["error"]["code"] == "bad_request"  # type: ignore[index]
    status, body = await upload(server, server.key, b"this is not audio at all" * 10)
    assert status == 415 and body["error"]["code"] == "unsupported_audio"  # type: ignore[index]
    monkeypatch.setattr(watermark_api, "MAX_UPLOAD_BYTES", 10_000)
    status, body = await upload(server, server.key, b"RIFF" + bytes(50_000))
    assert status == 413 and body["error"]["code"] == "file_too_large"  # type: ignore[index]
    status, _ = await upload(server, None, b"RIFF")
    assert status == 401


def test_the_cli_detects_locally_and_through_the_server(
        server: RunningServer, speech: bytes, tmp_path: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    clip = tmp_path / "speech.mp3"
    clip.write_bytes(speech)
    assert cli_main(["watermark", "detect", str(clip)]) == 0
    local = json.loads(capsys.readouterr().out)
    assert local["detected"] is True and "provenance" not in local
    assert cli_main(["watermark", "detect", str(clip), "--url", server.url,
                     "--api-key", server.key]) == 0
    remote = json.loads(capsys.readouterr().out)
    assert remote["provenance"]["tenant"] == DEMO_TENANT
    wav = tmp_path / "silence.wav"
    soundfile.write(wav, np.zeros(16000), 16000)
    assert cli_main(["watermark", "detect", str(wav)]) == 1


async def test_a_route_that_authenticates_itself_records_its_tenant(server: RunningServer) -> None:
    """ElevenLabs' routes read their key themselves (xi-api-key), after the auth middleware: the
    provenance of what they speak still names the caller's tenant."""
    async with aiohttp.ClientSession() as http:
        for _ in range(10):  # server_busy (503) says retry, as above
            async with http.post(server.url + "/v1/text-to-speech/joe",
                                 headers={"xi-api-key": server.key},
                                 json={"text": TEXT}) as response:
                if response.status != 503:
                    assert response.status == 200
                    mp3 = await response.read()
                    break
            await asyncio.sleep(2.0)
        else:
            raise AssertionError("the server stayed busy")
    status, body = await upload(server, server.key, mp3)
    assert status == 200 and body["detected"] is True
    provenance = body["provenance"]
    assert isinstance(provenance, dict) and provenance["tenant"] == DEMO_TENANT


async def test_offline_synthesis_jobs_are_watermarked_and_recorded(server: RunningServer) -> None:
    """``POST /v1/synthesize`` speaks on offline scheduler streams, without a live context: its
    file must carry the mark and resolve to the tenant's provenance record all the same."""
    headers = {"Authorization": f"Bearer {server.key}"}
    async with aiohttp.ClientSession() as http:
        async with http.post(server.url + "/v1/synthesize", headers=headers,
                             json={"text": TEXT, "voice": "piper:joe"}) as response:
            assert response.status == 202
            job_id = (await response.json())["job"]["job_id"]
        for _ in range(600):
            async with http.get(f"{server.url}/v1/jobs/{job_id}", headers=headers) as response:
                job = await response.json()
            if job["status"] not in ("queued", "running"):
                break
            await asyncio.sleep(0.1)
        assert job["status"] == "succeeded", job
        async with http.get(server.url + job["result"]["audio_url"], headers=headers) as response:
            assert response.status == 200
            wav = await response.read()
    status, body = await upload(server, server.key, wav)
    assert status == 200 and body["detected"] is True, body
    provenance = body["provenance"]
    assert isinstance(provenance, dict)
    assert (provenance["tenant"], provenance["voice_id"]) == (DEMO_TENANT, "piper:joe")
