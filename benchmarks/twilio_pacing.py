"""How evenly Timbre paces Twilio media frames with several calls speaking at once.

    .venv/bin/python benchmarks/twilio_pacing.py --calls 8

Starts `timbre serve` (embedded defaults), mints a token with the demo key, opens ``--calls`` fake
Twilio calls (WebSocket clients that send ``connected`` and ``start`` shaped like Twilio's), makes
each speak about ``--seconds`` of text with one ``POST /v1/calls/{sid}/speak``, and timestamps
every ``media`` frame as it arrives (``time.perf_counter``, one client event loop). All calls speak
at the same time; each call's utterance ends with its mark.

Definitions, per call, with ``t_i`` the arrival of media frame ``i`` (i = 0, 1, ...) and
``F`` = 20 ms:

* The server sends the first ``L`` = lead_s / frame_s frames (6: 120 ms) at once to fill Twilio's
  buffer, then one every ``F``; frame ``L`` is the first paced one.
* gap jitter: ``|(t_i - t_{i-1}) - F|`` for the paced frames, ``i > L``. Reported as p50/p95/p99
  over all calls' frames; "all gaps" is the same over every ``i >= 1`` (the lead burst included).
* schedule deviation: ``|t_i - (t_L + (i - L) * F)|`` for ``i >= L``: how far a frame is from
  the ideal 20 ms grid anchored at the first paced frame (drift accumulates here, not in gaps).
* underruns: gaps ``t_i - t_{i-1} > 2 F`` (40 ms); with 120 ms of lead Twilio's buffer still
  has audio, but the lead shrinks.
* server lateness: the server's own ``timbre_twilio_frame_lateness_seconds`` histogram (how late
  each frame left past its deadline), read from ``/metrics`` after the run, as bucket counts.

Not a unit test: timings depend on the machine; the client shares it with the server.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import statistics
import tempfile
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp

from benchmarks.local_server import free_port, start_server
from realtime.twilio.pacer import PacingSettings

FRAME_S = PacingSettings().frame_s
LEAD_FRAMES = round(PacingSettings().lead_s / FRAME_S)
SENTENCES = (
    "Thank you for calling the support line of the Timbre demonstration company.",
    "Your call is important to us, and an agent will be with you in a moment.",
    "In the meantime, you can check the status of an order on our website at any time.",
    "If you are calling about a delivery, please have your order number ready.",
    "Our opening hours are from eight in the morning until six in the evening.",
    "We are also open on Saturdays from nine until one, except on public holidays.",
    "Please stay on the line, and we will answer your call as soon as we can.",
)


@dataclass
class CallResult:
    call_sid: str
    arrivals: list[float] = field(default_factory=list)
    marks: list[str] = field(default_factory=list)
    clears: int = 0


def text_for(seconds: float) -> str:
    """About ``seconds`` of speech (piper speaks roughly 20 characters a second)."""
    words: list[str] = []
    i = 0
    while sum(len(w) + 1 for w in words) < seconds * 20:
        words.append(SENTENCES[i % len(SENTENCES)])
        i += 1
    return " ".join(words)


def twilio_start(call_sid: str) -> tuple[str, str]:
    stream_sid = "MZ" + call_sid[2:]
    connected = {"event": "connected", "protocol": "Call", "version": "1.0.0"}
    start = {"event": "start", "sequenceNumber": "1", "streamSid": stream_sid,
             "start": {"accountSid": "ACbench", "streamSid": stream_sid, "callSid": call_sid,
                       "tracks": ["inbound"], "customParameters": {},
                       "mediaFormat": {"encoding": "audio/x-mulaw", "sampleRate": 8000,
                                       "channels": 1}}}
    return json.dumps(connected), json.dumps(start)


async def run_call(base: str, token: str, key: str, call_sid: str, text: str,
                   go: asyncio.Event) -> CallResult:
    result = CallResult(call_sid)
    ws_url = base.replace("http://", "ws://") + f"/v1/telephony/twilio?token={token}"
    async with aiohttp.ClientSession() as http, http.ws_connect(ws_url) as ws:
        for message in twilio_start(call_sid):
            await ws.send_str(message)
        await go.wait()
        headers = {"Authorization": f"Bearer {key}"}
        for _ in range(200):  # until the server has registered the call
            async with http.post(f"{base}/v1/calls/{call_sid}/speak", json={"text": text},
                                 headers=headers) as resp:
                if resp.status == 202:
                    mark = (await resp.json())["mark"]
                    break
                if resp.status != 404:
                    raise RuntimeError(f"speak: {resp.status} {await resp.text()}")
            await asyncio.sleep(0.02)
        else:
            raise RuntimeError(f"call {call_sid} never went live")
        while True:
            msg = await ws.receive(timeout=120)
            now = time.perf_counter()
            if msg.type != aiohttp.WSMsgType.TEXT:
                raise RuntimeError(f"call {call_sid}: socket ended: {msg}")
            event = json.loads(msg.data)
            if event["event"] == "media":
                result.arrivals.append(now)
            elif event["event"] == "mark":
                result.marks.append(event["mark"]["name"])
                if event["mark"]["name"] == mark:
                    break
            elif event["event"] == "clear":
                result.clears += 1
        await ws.send_str(json.dumps({"event": "stop", "sequenceNumber": "9",
                                      "streamSid": "MZ" + call_sid[2:],
                                      "stop": {"accountSid": "ACbench", "callSid": call_sid}}))
    return result


def percentiles_ms(values: list[float]) -> str:
    if len(values) < 2:
        return "n/a"
    q = statistics.quantiles(values, n=100, method="inclusive")
    return f"p50 {q[49] * 1e3:.2f} ms, p95 {q[94] * 1e3:.2f} ms, p99 {q[98] * 1e3:.2f} ms, " \
           f"max {max(values) * 1e3:.2f} ms"


def analyse(results: list[CallResult]) -> None:
    all_gaps: list[float] = []
    paced_jitter: list[float] = []
    deviation: list[float] = []
    underruns = 0
    for r in results:
        t = r.arrivals
        gaps = [b - a for a, b in itertools.pairwise(t)]
        all_gaps += [abs(g - FRAME_S) for g in gaps]
        paced_jitter += [abs(g - FRAME_S) for g in gaps[LEAD_FRAMES:]]  # gap i is t[i+1]-t[i]
        deviation += [abs(t[i] - (t[LEAD_FRAMES] + (i - LEAD_FRAMES) * FRAME_S))
                      for i in range(LEAD_FRAMES, len(t))]
        underruns += sum(g > 2 * FRAME_S for g in gaps)
        print(f"  {r.call_sid}: {len(t)} frames ({len(t) * FRAME_S:.1f} s of audio) in "
              f"{t[-1] - t[0]:.2f} s, {sum(g > 2 * FRAME_S for g in gaps)} underruns, "
              f"clears {r.clears}")
    print(f"gap jitter, paced frames ({len(paced_jitter)}): {percentiles_ms(paced_jitter)}")
    print(f"gap jitter, all gaps ({len(all_gaps)}): {percentiles_ms(all_gaps)}")
    print(f"schedule deviation ({len(deviation)}): {percentiles_ms(deviation)}")
    print(f"underruns (gaps > {2 * FRAME_S * 1e3:.0f} ms): {underruns}")


def server_lateness(base: str) -> None:
    with urllib.request.urlopen(f"{base}/metrics", timeout=10) as resp:
        text = resp.read().decode()
    buckets = [line for line in text.splitlines()
               if line.startswith("timbre_twilio_frame_lateness_seconds_bucket")]
    total = float(buckets[-1].rsplit(" ", 1)[1]) if buckets else 0.0
    print(f"server lateness histogram ({total:.0f} frames):")
    for line in buckets:
        le = line.split('le="', 1)[1].split('"', 1)[0]
        count = float(line.rsplit(" ", 1)[1])
        print(f"  <= {le} s: {count:.0f} ({100 * count / max(total, 1):.2f} %)")


async def bench(base: str, key: str, calls: int, seconds: float) -> None:
    async with aiohttp.ClientSession() as http, http.post(
            f"{base}/v1/tokens", json={"ttl_s": 600},
            headers={"Authorization": f"Bearer {key}"}) as resp:
        token = (await resp.json())["token"]
    text = text_for(seconds)
    go = asyncio.Event()
    tasks = [asyncio.create_task(run_call(base, token, key, f"CA{i:032d}", text, go))
             for i in range(calls)]
    await asyncio.sleep(1.0)  # every stream connected and started
    go.set()
    results = await asyncio.gather(*tasks)
    print(f"{calls} calls, {len(text)} characters each")
    analyse(results)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--calls", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=20.0, help="speech per call, about")
    parser.add_argument("--config", type=Path, help="a TIMBRE_CONFIG TOML for the server")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        data_dir, port = Path(tmp), free_port()
        proc = start_server(data_dir, port, args.config)
        base = f"http://127.0.0.1:{port}"
        try:
            key = (data_dir / "demo-api-key").read_text().strip()
            asyncio.run(bench(base, key, args.calls, args.seconds))
            server_lateness(base)
        finally:
            proc.terminate()
            proc.wait(30)


if __name__ == "__main__":
    main()
