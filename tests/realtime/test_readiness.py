"""/readyz and ``wait_ready`` while an engine is still being built: not ready, and the engine
is named as not ready, even once every engine already built is warm."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web

from realtime.app import create_app, wait_ready
from realtime.config import AppConfig, ServerConfig
from tests.server import free_port


async def test_a_server_is_not_ready_while_an_engine_is_still_loading(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    release = threading.Event()

    def slow_kokoro(*args: object, **kwargs: object) -> None:
        """Kokoro's constructor, held until the test lets it go, then failing to load."""
        release.wait(60)
        raise RuntimeError("weights missing")

    monkeypatch.setattr("realtime.app.kokoro_installed", lambda: True)
    monkeypatch.setattr("realtime.app.KokoroEngine", slow_kokoro)
    port = free_port()
    app = create_app(AppConfig(server=ServerConfig(port=port, data_dir=tmp_path / "data")))
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        async with aiohttp.ClientSession() as http:
            async def readyz() -> tuple[int, dict[str, object]]:
                async with http.get(f"http://127.0.0.1:{port}/readyz") as r:
                    return r.status, await r.json()

            for _ in range(600):  # Piper builds and warms up; Kokoro is still held
                status, body = await readyz()
                if body["engines"] == {"kokoro": False, "piper": True}:
                    break
                await asyncio.sleep(0.1)
            assert status == 503 and body == {"ready": False,
                                              "engines": {"kokoro": False, "piper": True}}
            with pytest.raises(TimeoutError):
                await wait_ready(app, timeout_s=0.5)
            release.set()
            for _ in range(100):
                status, body = await readyz()
                if "failed" in body:
                    break
                await asyncio.sleep(0.1)
            assert status == 503 and "weights missing" in str(body["failed"])
            assert body["engines"] == {"piper": True}
    finally:
        release.set()
        await runner.cleanup()
