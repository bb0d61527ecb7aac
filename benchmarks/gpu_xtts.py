"""XTTS-v2 sizes with random weights under the real scheduler: how many real-time streams one GPU
carries, against the same engine serving one request at a time.

    python benchmarks/gpu_xtts.py            # one GPU, bf16, CUDA graphs; well under 8 minutes
    python benchmarks/gpu_xtts.py --tiny     # tiny model on the CPU, seconds (smoke test)

For each concurrency level N, N streams open with staggered arrivals, each speaks one sentence of a
fixed length (``--tokens`` audio codes, 46.4 ms each). Per level: time to first audio (submit ->
first audio chunk) p50/p95, streams whose client would underrun (playout from each chunk's arrival,
100 ms jitter buffer, ``loadtest.playout``), each stream's real-time factor (generation wall time /
audio duration), the decode-step time at the level's full batch and peak GPU memory.

Baseline, "one at a time" (how the XTTS streaming server works): one request is decoded to
completion before the next starts; its time to first audio at level N follows from FIFO queueing of
the measured lone-request timeline. Its stream count uses the same rule as the batched one (no
underrun and time to first audio p95 within the target); the throughput bound (audio seconds one
lone request makes per second, ignoring time to first audio) is printed too. The baseline uses this engine at batch 1 (CUDA
graphs, no re-decoding of the utterance), which is faster than coqui's own streaming loop, so the
ratio reported is conservative.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from inference.engine import (
    DecodeItem,
    EnginePlan,
    EngineResult,
    PrefillItem,
    RequestId,
    SynthesisUnit,
)
from inference.scheduler import (
    Scheduler,
    SchedulerConfig,
    StreamEvent,
    StreamFinished,
    UnitAudio,
)
from inference.xtts import XttsConfig, XttsEngine, XttsEngineConfig
from loadtest.playout import Chunk, simulate_playout

TEXT = ("The quick brown fox jumps over the lazy dog while the band plays on in the park "
        "near the river today.")
TINY_TEXT = "The quick brown fox jumps over the dog."
TTFA_TARGET_MS = 300.0
JITTER_BUFFER_S = 0.1


class RecordingEngine:
    """Delegates to the engine and keeps each tick's sizes and timings."""

    def __init__(self, engine: XttsEngine) -> None:
        self.inner = engine
        self.ticks: list[tuple[int, int, EngineResult]] = []

    @property
    def name(self) -> str:
        return self.inner.name

    @property
    def sample_rate_hz(self) -> int:
        return self.inner.sample_rate_hz

    def voices(self) -> list[str]:
        return list(self.inner.voices())

    def warmup(self) -> None:
        self.inner.warmup()

    def execute(self, plan: EnginePlan) -> EngineResult:
        result = self.inner.execute(plan)
        self.ticks.append((len(plan.prefills), len(plan.decodes), result))
        return result

    def release(self, request_id: RequestId) -> None:
        self.inner.release(request_id)


@dataclass
class StreamLog:
    submitted: float = 0.0
    chunks: list[Chunk] = field(default_factory=list)
    done: float = 0.0


@dataclass
class LevelResult:
    streams: int
    completed: int
    ttfa_ms: list[float]
    underrun_streams: int
    rtf: list[float]
    step_ms: float | None
    gpt_ms: float | None
    vocoder_ms: float | None
    tick_p95_ms: float
    first_underrun_chunk: float | None
    peak_gib: float
    wall_s: float
    refused: int = 0

    @property
    def real_time(self) -> bool:
        return (self.completed == self.streams and self.underrun_streams == 0
                and pct(self.ttfa_ms, 95) <= TTFA_TARGET_MS)


def pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))]


def run_level(scheduler: Scheduler, recorder: RecordingEngine, n: int, stagger_s: float,
              timeout_s: float, device: torch.device, text: str) -> LevelResult:
    logs: dict[int, StreamLog] = {}
    lock = threading.Lock()
    finished = threading.Event()
    rate = recorder.sample_rate_hz

    def sink(event: StreamEvent) -> None:
        now = time.perf_counter()
        with lock:
            log = logs[event.stream_id]
            if isinstance(event, UnitAudio) and len(event.audio):
                log.chunks.append(Chunk(now, len(event.audio) / rate))
            if isinstance(event, StreamFinished):
                log.done = now
                if all(entry.done for entry in logs.values()) and len(logs) + refused == n:
                    finished.set()

    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    first_tick = len(recorder.ticks)
    t0 = time.perf_counter()
    refused = 0
    for i in range(n):
        delay = t0 + i * stagger_s - time.perf_counter()
        if delay > 0:
            time.sleep(delay)
        with lock:
            sid = scheduler.open_stream(sink)
            if not isinstance(sid, int):  # a refusal: counted, and the level is not real time
                refused += 1
                continue
            logs[sid] = StreamLog(submitted=time.perf_counter())
        scheduler.submit(sid, SynthesisUnit(text, recorder.voices()[0]))
        scheduler.end_stream(sid)
    if refused == n:
        finished.set()
    finished.wait(timeout_s)
    wall = time.perf_counter() - t0
    with lock:
        done = [log for log in logs.values() if log.done and log.chunks]
        for sid, log in logs.items():
            if not log.done:
                scheduler.cancel(sid)
    ttfa = [(log.chunks[0].arrival_s - log.submitted) * 1000 for log in done]
    underruns, first_bad = 0, []
    rtf = []
    for log in done:
        playout = simulate_playout(log.chunks, JITTER_BUFFER_S)
        if playout and playout.underrun_count:
            underruns += 1
            at = playout.underruns[0].at_s
            first_bad.append(next(i for i, c in enumerate(log.chunks) if c.arrival_s > at))
        rtf.append((log.done - log.submitted) / sum(c.duration_s for c in log.chunks))
    ticks = recorder.ticks[first_tick:]
    step, gpt, vocoder = step_times(ticks, n)
    tick_p95 = pct([(r.prefill_s + r.decode_s) * 1000 for _, _, r in ticks], 95)
    peak = torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else 0.0
    return LevelResult(n, len(done), ttfa, underruns, rtf, step, gpt, vocoder, tick_p95,
                       statistics.median(first_bad) if first_bad else None, peak, wall, refused)


def step_times(ticks: list[tuple[int, int, EngineResult]], batch: int
               ) -> tuple[float | None, float | None, float | None]:
    """Median decode time (GPT step + vocoder windows), GPT-only and vocoder-only time of
    decode-only ticks at the largest batch seen (close to ``batch``)."""
    decodes = [(d, r) for p, d, r in ticks if d and not p]
    if not decodes:
        return None, None, None
    top = max(d for d, _ in decodes)
    near = [r for d, r in decodes if d >= 0.9 * top]
    return (statistics.median(r.decode_s for r in near) * 1000,
            statistics.median(r.extras.get("gpt_s", 0.0) for r in near) * 1000,
            statistics.median(r.extras.get("vocoder_s", 0.0) for r in near) * 1000)


@dataclass
class Baseline:
    ttfa_s: float
    gen_s: float
    audio_s: float

    @property
    def speed(self) -> float:
        return self.audio_s / self.gen_s

    def ttfa_ms_at(self, n: int, stagger_s: float) -> list[float]:
        """FIFO, one request at a time: request k starts when k-1 is done."""
        free_at, out = 0.0, []
        for k in range(n):
            start = max(k * stagger_s, free_at)
            free_at = start + self.gen_s
            out.append((start - k * stagger_s + self.ttfa_s) * 1000)
        return out


def measure_lone_request(engine: XttsEngine, text: str, repeats: int = 3) -> Baseline:
    runs = []
    for i in range(repeats):
        rid = RequestId(10_000_000 + i)
        t0 = time.perf_counter()
        first, samples = None, 0
        plan = EnginePlan(prefills=(PrefillItem(rid, SynthesisUnit(text, engine.voices()[0])),))
        while True:
            out = engine.execute(plan).outputs[0]
            samples += len(out.audio)
            if first is None and len(out.audio):
                first = time.perf_counter() - t0
            if out.finished:
                break
            plan = EnginePlan(decodes=(DecodeItem(rid),))
        engine.release(rid)
        runs.append(Baseline(first or 0.0, time.perf_counter() - t0,
                             samples / engine.sample_rate_hz))
    return sorted(runs, key=lambda b: b.gen_s)[len(runs) // 2]


def prepare_graphs(engine: XttsEngine, levels: list[int], tokens: int, text: str) -> str:
    """Capture the decode graphs this run needs, after checking one against the eager step."""
    try:
        diff = engine.check_graphs(8, 128)
        if not diff < 0.5:  # bf16 logits of random weights: equal up to rounding
            engine.disable_graphs()
            return f"off (graph and eager logits differ by {diff:.3g})"
        from inference.xtts.cuda_graphs import batch_buckets

        prompt = engine.model_config.perceiver_latents + len(text) + 3
        bucket = engine.config.context_bucket
        longest = min(engine.cache.max_len, prompt + tokens + 1)
        contexts = list(range(bucket * (prompt // bucket + 1), longest + bucket, bucket))
        contexts = [min(c, engine.cache.max_len) for c in contexts]
        sizes = [b for b in batch_buckets(engine.config.max_active) if b <= max(levels)]
        t0 = time.perf_counter()
        widths = range(32, 160, 32)
        count = engine.capture_graphs(sizes, sorted(set(contexts)), widths)
        return f"on ({count} graphs, {time.perf_counter() - t0:.1f} s to capture, check {diff:.2g})"
    except Exception as exc:  # noqa: BLE001 - a benchmark reports and carries on eagerly
        engine.disable_graphs()
        return f"off (capture failed: {type(exc).__name__}: {exc})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tiny", action="store_true", help="tiny model on the CPU (smoke test)")
    parser.add_argument("--levels", default=None, help="comma-separated stream counts")
    parser.add_argument("--tokens", type=int, default=None, help="audio codes per stream")
    parser.add_argument("--stagger-ms", type=float, default=None)
    parser.add_argument("--no-graphs", action="store_true")
    parser.add_argument("--first-audio-due-s", type=float,
                        default=SchedulerConfig.first_audio_due_s,
                        help="[scheduler] first_audio_due_s (default: the server's)")
    parser.add_argument("--budget-s", type=float, default=330.0,
                        help="skip remaining levels once this much time has gone")
    args = parser.parse_args()
    started = time.perf_counter()

    if args.tiny:
        model_config, device, dtype = XttsConfig.tiny(), "cpu", "float32"
        levels, tokens, stagger_ms, graphs = [1, 2, 4], 40, 30.0, False
        text = TINY_TEXT
        torch.set_num_threads(1)
    else:
        if not torch.cuda.is_available():
            sys.exit("no CUDA device: run with --tiny on a CPU")
        model_config, device, dtype = XttsConfig.xtts_v2(), "cuda", "bfloat16"
        levels, tokens, stagger_ms, graphs = [1, 8, 16, 32, 64, 96, 128, 192, 256], 172, 20.0, True
        text = TEXT
        torch.backends.cuda.matmul.allow_tf32 = True
    levels = [int(x) for x in args.levels.split(",")] if args.levels else levels
    tokens = args.tokens or tokens
    stagger_s = (args.stagger_ms if args.stagger_ms is not None else stagger_ms) / 1000
    graphs = graphs and not args.no_graphs

    config = XttsEngineConfig(device=device, dtype=dtype, max_active=max(levels),
                              fixed_tokens=tokens, cuda_graphs=graphs,
                              context_bucket=128 if device == "cuda" else 64,
                              vocoder_bucket=32)
    engine = XttsEngine.random(model_config, config, seed=0)
    dev = torch.device(device)
    card = torch.cuda.get_device_name(dev) if device == "cuda" else "cpu"
    gpt_params = sum(p.numel() for p in engine.model.gpt.gpt.parameters()) / 1e6
    print(f"# {card}; torch {torch.__version__}; {dtype}; GPT {gpt_params:.0f}M params; "
          f"KV cache {engine.cache.bytes / 2**30:.1f} GiB for {config.max_active} slots; "
          f"{tokens} codes = {tokens * model_config.gpt_code_stride_len / model_config.input_sample_rate:.2f} s "
          f"audio per stream; built in {time.perf_counter() - started:.0f} s", flush=True)
    graph_note = prepare_graphs(engine, levels, tokens, text) if graphs else "off"
    print(f"# CUDA graphs: {graph_note}", flush=True)

    engine.warmup()
    baseline = measure_lone_request(engine, text)
    print(f"# lone request: first audio {baseline.ttfa_s * 1000:.0f} ms, {baseline.audio_s:.2f} s "
          f"audio in {baseline.gen_s:.2f} s ({baseline.speed:.1f}x real time)", flush=True)

    recorder = RecordingEngine(engine)
    scheduler = Scheduler(recorder, SchedulerConfig(
        # the sweep measures what the engine carries, so admission refuses nothing (no
        # capacity estimate, no pause after a late stream); on a GPU a batch costs about one item
        max_batch=max(levels), max_streams=max(levels), admission_utilization=None,
        late_window_s=0.0, step_budget_ms=1000.0, batch_horizon_s=None,
        first_audio_due_s=args.first_audio_due_s))
    scheduler.start()
    if not scheduler.ready.wait(300):
        sys.exit(f"scheduler did not start: {scheduler.failed!r}")
    results: list[LevelResult] = []
    try:
        for n in levels:
            if time.perf_counter() - started > args.budget_s:
                print(f"# budget spent: level {n} and above skipped", flush=True)
                break
            result = run_level(scheduler, recorder, n, stagger_s, timeout_s=60.0, device=dev,
                               text=text)
            results.append(result)
            print(f"# level {n}: {result.completed}/{n} done in {result.wall_s:.1f} s, TTFA p95 "
                  f"{pct(result.ttfa_ms, 95):.0f} ms, underrun streams {result.underrun_streams}"
                  f"{f', refused {result.refused}' if result.refused else ''}", flush=True)
    finally:
        scheduler.stop()
    print_table(results, baseline, stagger_s, card, dtype, graph_note, started)


def print_table(results: list[LevelResult], baseline: Baseline, stagger_s: float, card: str,
                dtype: str, graph_note: str, started: float) -> None:
    print()
    print(f"XTTS ({'tiny' if card == 'cpu' else 'v2 sizes'}), random weights, {card}, {dtype}, CUDA graphs {graph_note.split(' ')[0]}, "
          f"arrivals every {stagger_s * 1000:.0f} ms")
    header = (f"{'streams':>7} {'done':>5} {'TTFA p50':>9} {'TTFA p95':>9} {'underrun':>8} "
              f"{'RTF p50':>8} {'RTF max':>8} {'step ms':>8} {'gpt ms':>7} {'voc ms':>7} "
              f"{'tick p95':>9} {'GiB':>5} {'serial TTFA p95':>15}")
    print(header)
    for r in results:
        serial = pct(baseline.ttfa_ms_at(r.streams, stagger_s), 95)
        bad = "" if r.first_underrun_chunk is None else f" (chunk {r.first_underrun_chunk:.0f})"
        print(f"{r.streams:>7} {r.completed:>5} {pct(r.ttfa_ms, 50):>7.0f}ms {pct(r.ttfa_ms, 95):>7.0f}ms "
              f"{r.underrun_streams:>8} {pct(r.rtf, 50):>8.3f} {max(r.rtf, default=float('nan')):>8.3f} "
              f"{_fmt(r.step_ms):>8} {_fmt(r.gpt_ms):>7} {_fmt(r.vocoder_ms):>7} "
              f"{r.tick_p95_ms:>7.1f}ms {r.peak_gib:>5.1f} {serial:>13.0f}ms{bad}")
    carried = max((r.streams for r in results if r.real_time), default=0)
    serial_streams = serial_capacity(baseline, stagger_s)
    ratio = carried / serial_streams if serial_streams else float("inf")
    bound = int(baseline.speed)
    print(f"real-time streams (no underrun, TTFA p95 <= {TTFA_TARGET_MS:.0f} ms): batched {carried}; "
          f"one at a time {serial_streams} by the same rule; ratio {ratio:.1f}x")
    print(f"one at a time, throughput bound ignoring TTFA: {bound} streams "
          f"({baseline.speed:.1f}x real time per lone request), ratio "
          f"{carried / bound if bound else float('inf'):.1f}x; total "
          f"{time.perf_counter() - started:.0f} s")


def serial_capacity(baseline: Baseline, stagger_s: float, limit: int = 1024) -> int:
    """Most streams the one-at-a-time server carries under the same rule as the batched one:
    time to first audio p95 within the target (once started, a lone request never runs dry)."""
    carried = 0
    for n in range(1, limit + 1):
        if pct(baseline.ttfa_ms_at(n, stagger_s), 95) > TTFA_TARGET_MS:
            break
        carried = n
    return carried


def _fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}"


if __name__ == "__main__":
    main()
