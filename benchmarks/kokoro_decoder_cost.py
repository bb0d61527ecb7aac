"""What Kokoro's decoder costs per second of audio, one stream at a time and two in parallel.

Serial: one engine decodes a 12 s utterance in one pass and streamed with several chunk / context
settings, with one and two intra-op threads; reported as process CPU-seconds per second of audio
(best of ``--repeats``). Parallel: two engines with one thread each decode the utterance at the
same time on two threads (ONNX Runtime releases the GIL): the real-time factor each stream
reaches is what two concurrent sessions could get on a 2-core node at best. Run it on a quiet
machine; figures in docs/benchmarks.md (cloning, "2 concurrent sessions").

    .venv/bin/python benchmarks/kokoro_decoder_cost.py
"""

from __future__ import annotations

import argparse
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from inference.engine import SynthesisUnit
from inference.kokoro import DEFAULT_CACHE_DIR, KokoroEngine
from inference.kokoro_config import KokoroConfig
from inference.kokoro_graph import SAMPLE_RATE_HZ, load_assets
from tests.inference.test_kokoro import stream

TEXT = ("The quick brown fox jumps over the lazy dog near the river bank, and then it runs far "
        "away into the deep green forest where nobody can find it again.")
SETTINGS = {"64+24": {"chunk_frames": 64}, "128+24 (shipped)": {},
            "128+12": {"chunk_frames": 128, "context_frames": 12},
            "192+16": {"chunk_frames": 192, "context_frames": 16}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--voice", default="jf_nezumi")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    assets = load_assets(DEFAULT_CACHE_DIR)
    unit = SynthesisUnit(TEXT, args.voice)
    for threads in (1, 2):
        for label, settings in {"one pass": {}, **SETTINGS}.items():
            engine = KokoroEngine(KokoroConfig(intra_op_threads=threads, **settings),
                                  assets=assets)
            best, seconds = float("inf"), 0.0
            for _ in range(args.repeats):
                start = time.process_time()
                audio = (engine.synthesize_one_pass(unit) if label == "one pass"
                         else stream(engine, unit)[0])
                best = min(best, time.process_time() - start)
                seconds = len(audio) / SAMPLE_RATE_HZ
            print(f"serial, {threads} thread(s), {label}: {best / seconds:.3f} CPU-s per audio-s",
                  flush=True)
    for label, settings in SETTINGS.items():
        engines = [KokoroEngine(KokoroConfig(intra_op_threads=1, **settings), assets=assets)
                   for _ in range(2)]
        for engine in engines:
            engine.synthesize_one_pass(SynthesisUnit("Warm up.", args.voice))
        factors: dict[int, float] = {}
        cpu = time.process_time()
        workers = [threading.Thread(target=_timed_stream, args=(engine, unit, i, factors))
                   for i, engine in enumerate(engines)]
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join()
        print(f"parallel, 2 streams x 1 thread, {label}: {factors[0]:.2f}x / {factors[1]:.2f}x "
              f"real time, {time.process_time() - cpu:.1f} CPU-s", flush=True)


def _timed_stream(engine: KokoroEngine, unit: SynthesisUnit, index: int,
                  factors: dict[int, float]) -> None:
    """Stream ``unit`` on ``engine``; ``factors[index]`` = audio seconds per wall second."""
    start = time.perf_counter()
    audio = stream(engine, unit, rid=index + 1)[0]
    factors[index] = len(audio) / SAMPLE_RATE_HZ / (time.perf_counter() - start)


if __name__ == "__main__":
    main()
