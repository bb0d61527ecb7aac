"""The XTTS engine wired into a running server from an operator-style checkpoint directory (tiny
random weights on the CPU): a client picks ``xtts:<voice>`` and gets streamed audio back."""

from __future__ import annotations

import asyncio
import json
import string
from dataclasses import asdict
from pathlib import Path

import numpy as np
import pytest
import soundfile

torch = pytest.importorskip("torch")
tokenizers = pytest.importorskip("tokenizers")

from inference.xtts import XttsConfig, XttsModel
from realtime.client import StreamClient
from tests.server import RunningServer, ServerThread

TINY = XttsConfig.tiny()


def write_vocab(path: Path) -> None:
    """A character-level BPE vocabulary in the HuggingFace format coqui's vocab.json uses."""
    symbols = ["[UNK]", "[STOP]", "[START]", "[SPACE]", "[en]"]
    symbols += list(string.ascii_lowercase + string.digits + ".,!?'-")
    vocab = {s: i for i, s in enumerate(symbols)}
    assert len(vocab) < TINY.gpt_number_text_tokens
    tokenizer = tokenizers.Tokenizer(tokenizers.models.BPE(vocab=vocab, merges=[],
                                                           unk_token="[UNK]"))
    tokenizer.add_special_tokens(["[SPACE]", "[en]", "[STOP]", "[START]"])
    tokenizer.save(str(path))


def write_checkpoint(directory: Path) -> None:
    torch.manual_seed(3)
    model = XttsModel(TINY).eval()
    args = {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(TINY).items()}
    (directory / "config.json").write_text(json.dumps({"model": "xtts", "model_args": args}))
    torch.save({"model": model.state_dict()}, directory / "model.pth")
    write_vocab(directory / "vocab.json")


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory):
    root = tmp_path_factory.mktemp("xtts")
    checkpoint = root / "checkpoint"
    checkpoint.mkdir()
    write_checkpoint(checkpoint)
    t = np.arange(3 * 16000) / 16000
    reference = (0.3 * np.sin(2 * np.pi * 140 * t) * (1 + np.sin(2 * np.pi * 3 * t))).astype(
        np.float32)
    soundfile.write(root / "ref.wav", reference, 16000)
    thread = ServerThread(root / "data", xtts={
        "checkpoint_dir": checkpoint, "device": "cpu", "dtype": "float32", "max_active": 4,
        "cuda_graphs": False, "voices": {"ref": str(root / "ref.wav")},
    })
    yield thread.start()
    thread.stop()


async def test_xtts_voice_streams_audio_over_the_native_protocol(server: RunningServer) -> None:
    async with await StreamClient.connect(server.ws_url, server.key, voice="xtts:ref",
                                          sample_rate_hz=24000) as client:
        assert client.ready.voice == "xtts:ref"
        await client.stream_words("x", "hello there, this is a test.", 20)
        await client.close_context("x")
        record = await client.wait_done("x", timeout_s=120)
    assert record.done is not None and record.done.reason == "completed"
    assert record.audio_s > 0.1
    assert [f.sequence for f in record.frames] == list(range(len(record.frames)))
    pcm = np.frombuffer(bytes(record.audio), dtype="<i2")
    assert np.abs(pcm).max() > 0


async def test_a_profile_cloned_by_xtts_speaks_with_its_own_conditioning(
    server: RunningServer, tmp_path_factory: pytest.TempPathFactory,
) -> None:
    """With a cloning engine running, the clone job stores XTTS conditioning in the profile, and
    a stream naming the profile id is served by XTTS with that conditioning."""
    import asyncio

    import aiohttp

    from realtime.appkeys import VOICE_REGISTRY
    from tests.realtime.test_rest import CONSENT
    from tests.session.test_voice_service import reference_speech

    speech = reference_speech(tmp_path_factory.mktemp("piper"))
    headers = {"Authorization": f"Bearer {server.key}"}
    form = aiohttp.FormData()
    form.add_field("name", "Cloned")
    for key, value in CONSENT.items():
        form.add_field(key, value)
    form.add_field("file", speech, filename="take.wav", content_type="audio/wav")
    async with aiohttp.ClientSession(headers=headers) as http:
        async with http.post(server.url + "/v1/voices", data=form) as r:
            assert r.status == 202, await r.text()
            body = await r.json()
        voice_id, job_id = body["voice"]["voice_id"], body["job"]["job_id"]
        for _ in range(600):
            async with http.get(server.url + f"/v1/jobs/{job_id}") as r:
                job = await r.json()
            if job["status"] in ("succeeded", "failed"):
                break
            await asyncio.sleep(0.1)
    assert job["status"] == "succeeded", job
    assert job["result"]["engine"] == "xtts"
    async with await StreamClient.connect(server.ws_url, server.key, voice=voice_id) as client:
        assert client.ready.voice == voice_id
        await client.send_text("c", "my own cloned voice.")
        await client.close_context("c")
        record = await client.wait_done("c", timeout_s=120)
    assert record.done is not None and record.done.reason == "completed", record.errors
    assert record.audio_s > 0.1
    assert server.app[VOICE_REGISTRY].get(voice_id) is not None


async def test_an_engine_that_cannot_load_makes_the_server_unready(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    """A broken XTTS checkpoint: Piper still serves, /readyz answers 503 and says why."""
    import aiohttp

    from realtime.app import create_app
    from realtime.config import AppConfig, ServerConfig, XttsSettings
    from tests.server import free_port

    root = tmp_path_factory.mktemp("broken")
    (root / "checkpoint").mkdir()
    port = free_port()
    config = AppConfig(
        server=ServerConfig(port=port, data_dir=root / "data"),
        xtts=XttsSettings(checkpoint_dir=root / "checkpoint", device="cpu", dtype="float32",
                          cuda_graphs=False, voices={"x": str(root / "missing.wav")}))
    app = create_app(config)
    runner = aiohttp.web.AppRunner(app)
    await runner.setup()
    await aiohttp.web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        async with aiohttp.ClientSession() as http:
            for _ in range(600):
                async with http.get(f"http://127.0.0.1:{port}/readyz") as r:
                    body = await r.json()
                if "failed" in body and body["engines"].get("piper"):
                    break
                await asyncio.sleep(0.1)
        assert r.status == 503
        assert "xtts" in body["failed"] and body["engines"]["piper"] is True
    finally:
        await runner.cleanup()
