"""A real Timbre server on a loopback port, in a background thread with its own event loop.

Tests talk to it over real sockets, like any client would. One server per test module (engine start-up
costs seconds); each gets its own data directory.
"""

from __future__ import annotations

import asyncio
import dataclasses
import socket
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aiohttp import web

from realtime.app import create_app, wait_ready
from realtime.appkeys import DEMO_KEY, METRICS
from realtime.config import AppConfig, ServerConfig


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class RunningServer:
    url: str
    ws_url: str
    key: str
    data_dir: Path
    app: web.Application
    loop: asyncio.AbstractEventLoop

    @property
    def metrics_text(self) -> str:
        return self.app[METRICS].render().decode()

    @property
    def mongo_url(self) -> str:
        """The server's (embedded) MongoDB; open your own client on it from the test's loop."""
        return (self.data_dir / "mongo-url").read_text().strip()


class ServerThread:
    def __init__(self, data_dir: Path, **sections: Any) -> None:
        port = free_port()
        config = AppConfig(server=ServerConfig(host="127.0.0.1", port=port, data_dir=data_dir))
        # Kokoro costs 10-15 s of CPU to load, warm and calibrate: a test server runs it only when
        # the test asks (``kokoro={"enabled": True}``).
        # Nor does it embed the stock voices at start-up: a clone job does it when it needs to.
        config = dataclasses.replace(
            config, kokoro=dataclasses.replace(config.kokoro, enabled=False),
            cloning=dataclasses.replace(config.cloning, warm_base_voices=False))
        # Tests fire requests far faster than any client (the fuzzers: hundreds a second, bad keys
        # included): the limiter runs on every request but never bites unless a test sets
        # ``rate_limit={...}`` (tests/realtime/test_ratelimit.py).
        config = dataclasses.replace(config, rate_limit=dataclasses.replace(
            config.rate_limit, requests_per_s=1e6, burst=1_000_000, unauthenticated_per_s=1e6,
            unauthenticated_burst=1_000_000))
        for name, values in sections.items():
            config = dataclasses.replace(
                config, **{name: dataclasses.replace(getattr(config, name), **values)})
        self.config = config
        self._loop = asyncio.new_event_loop()
        self._started = threading.Event()
        self._stop: asyncio.Event | None = None
        self._error: BaseException | None = None
        self.server: RunningServer | None = None
        self._thread = threading.Thread(target=self._run, name="test-server", daemon=True)

    def start(self, timeout_s: float = 120.0) -> RunningServer:
        self._thread.start()
        if not self._started.wait(timeout_s):
            raise TimeoutError("server did not start")
        if self._error is not None:
            raise self._error
        assert self.server is not None
        return self.server

    def stop(self) -> None:
        if self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(30)

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        self._loop.run_until_complete(self._serve())

    async def _serve(self) -> None:
        self._stop = asyncio.Event()
        app = create_app(self.config)
        runner = web.AppRunner(app, access_log=None)
        try:
            await runner.setup()
            port = self.config.server.port
            await web.TCPSite(runner, "127.0.0.1", port).start()
            await wait_ready(app)
            self.server = RunningServer(f"http://127.0.0.1:{port}", f"ws://127.0.0.1:{port}",
                                        app[DEMO_KEY], self.config.server.data_dir, app,
                                        self._loop)
        except BaseException as exc:  # noqa: BLE001 - surfaced to the test by start()
            self._error = exc
            self._started.set()
            await runner.cleanup()
            return
        self._started.set()
        await self._stop.wait()
        await runner.cleanup()
