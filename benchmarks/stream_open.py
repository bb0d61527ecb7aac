"""What a voice profile costs when a stream opens, against a stock voice.

    .venv/bin/python benchmarks/stream_open.py --opens 300

Starts `timbre serve` (embedded SecantusDB), gives the demo tenant a ready voice profile directly in
MongoDB, then opens streams one after another, alternating stock voice and profile, and times each
from the WebSocket upgrade request to the server's `ready` message (auth, voice resolution, quota
and stream-slot checks included). Prints p50/p95 for both and the difference of the medians.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from pathlib import Path

import aiohttp

from benchmarks.local_server import free_port, start_server
from session.auth import DEMO_TENANT
from session.db import Stores, open_database


async def make_profile(data_dir: Path) -> str:
    db = open_database((data_dir / "mongo-url").read_text().strip())
    stores = Stores.over(db)
    consent = await stores.consents.create(
        DEMO_TENANT, owner_name="Bench", statement="I agree.", accepted=True,
        purpose="benchmark", expires_at=None, uploaded_by="benchmark")
    profile = await stores.voices.create(DEMO_TENANT, "bench", engine="piper",
                                         consent_id=consent.consent_id)
    await stores.voices.set_ready(DEMO_TENANT, profile.voice_id,
                                  {"engine": "piper", "voice": "joe"}, None)
    db.client.close()
    return str(profile.voice_id)


async def open_once(http: aiohttp.ClientSession, url: str, key: str) -> float:
    start = time.perf_counter()
    async with http.ws_connect(url, headers={"Authorization": f"Bearer {key}"}) as ws:
        msg = await ws.receive(timeout=10)
        elapsed = time.perf_counter() - start
        assert '"ready"' in msg.data, msg.data
    return elapsed * 1000


async def measure(port: int, key: str, profile: str, opens: int) -> dict[str, list[float]]:
    base = f"ws://127.0.0.1:{port}/v1/stream"
    times: dict[str, list[float]] = {"stock": [], "profile": []}
    async with aiohttp.ClientSession() as http:
        for warm in range(5):
            await open_once(http, f"{base}?voice=piper:joe", key)
            await open_once(http, f"{base}?voice={profile}", key)
        for _ in range(opens):
            times["stock"].append(await open_once(http, f"{base}?voice=piper:joe", key))
            times["profile"].append(await open_once(http, f"{base}?voice={profile}", key))
    return times


def pct(values: list[float], q: float) -> float:
    return statistics.quantiles(values, n=100)[int(q) - 1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--opens", type=int, default=300)
    args = parser.parse_args()
    port = free_port()
    with tempfile.TemporaryDirectory() as data:
        # opens go back to back (about a thousand a second), far over the default per-tenant
        # rate limit, which this does not measure; the limiter still runs on every open
        config = Path(data) / "timbre.toml"
        config.write_text("[rate_limit]\nrequests_per_s = 1e6\nburst = 1000000\n")
        server = start_server(Path(data), port, config)
        try:
            key = (Path(data) / "demo-api-key").read_text().strip()
            profile = asyncio.run(make_profile(Path(data)))
            times = asyncio.run(measure(port, key, profile, args.opens))
        finally:
            server.terminate()
            server.wait(30)
    for name, values in times.items():
        print(f"{name:>8}: p50 {statistics.median(values):.2f} ms  p95 {pct(values, 95):.2f} ms  "
              f"({len(values)} opens)")
    extra = statistics.median(times["profile"]) - statistics.median(times["stock"])
    print(f"profile voice costs {extra:+.2f} ms at p50 over a stock voice (bar: <= 5 ms)")


if __name__ == "__main__":
    main()
