"""How many decoder frames per second Kokoro's decoder gives with one window at a time against
two at once (``[kokoro] lanes``), and how the threads split between them.

Each configuration decodes windows of 36, 60 and 180 frames in a loop for ``--seconds`` on one or
two Python threads, each with the given number of intra-op threads, and prints the frames per
second of each thread and their total. With the PyTorch decoder the threads share one model and
set their own torch thread count; with ONNX Runtime (``--decoder onnx``) each Python thread gets
its own session with that many threads, and the row marked "shared" runs two Python threads on
one 2-thread session. Compare rows within one run only: this machine's speed drifts within the
hour. Each row also gives the process's minor page faults per decoded window: freed memory
that the C library handed back and the next window faulted in again (``--retained-memory-mb``,
``[kokoro] retained_memory_mb``; 0: the C library's defaults). Figures in docs/benchmarks.md
("Two lanes that do not wait for each other", "A CPU without AMX", "Faster int8 windows").

    .venv/bin/python benchmarks/kokoro_lanes.py [--decoder auto] [--seconds 8] [--repeats 2] \
        [--retained-memory-mb 512]
"""

from __future__ import annotations

import argparse
import resource
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch

from inference.engine import SynthesisUnit
from inference.kokoro import DEFAULT_CACHE_DIR, KokoroEngine, _OnnxDecoder
from inference.kokoro_config import DECODERS, KokoroConfig
from inference.kokoro_graph import load_assets

TEXT = ("The quick brown fox jumps over the lazy dog near the river bank, and then it runs far "
        "away into the deep green forest where nobody can find it again.")
WINDOWS = (36, 60, 180)
SPLITS = ((2,), (2, 2), (1, 1), (2, 1))
"""Intra-op threads of each Python thread decoding at once."""
SHARED = (2, 2)
"""ONNX Runtime: two Python threads on one session with 2 threads (the "shared" row)."""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--decoder", choices=DECODERS, default="auto")
    parser.add_argument("--seconds", type=float, default=8.0)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--retained-memory-mb", type=int,
                        default=KokoroConfig.retained_memory_mb)
    args = parser.parse_args()
    assets = load_assets(DEFAULT_CACHE_DIR)
    engine = KokoroEngine(KokoroConfig(decoder=args.decoder,
                                       retained_memory_mb=args.retained_memory_mb), assets=assets)
    onnx = engine.decoder_kind == "onnx"
    print(f"decoder: {engine.decoder_kind}")
    request = engine._prepare(SynthesisUnit(TEXT, "jf_gongitsune"))

    def decode(decoder: Callable[..., object], frames: int) -> None:
        lo, hi = 20, 20 + frames
        decoder(request.asr[:, :, lo:hi], request.f0[:, 2 * lo:2 * hi], request.n[:, 2 * lo:2 * hi],
                request.phase[:, 2 * lo:2 * hi], request.style)

    windows: dict[int, int] = {}

    def loop(decoder: Callable[..., object], threads: int, rates: dict[int, float],
             index: int) -> None:
        if not onnx:
            torch.set_num_threads(threads)  # this thread's OpenMP team
        for size in WINDOWS:
            decode(decoder, size)  # build the kernels for each length first
        start, frames, count = time.perf_counter(), 0, len(WINDOWS)
        while time.perf_counter() - start < args.seconds:
            for size in WINDOWS:
                decode(decoder, size)
                frames += size
                count += 1
        rates[index] = frames / (time.perf_counter() - start)
        windows[index] = count

    rows: list[tuple[str, tuple[int, ...], bool]] = [("", split, False) for split in SPLITS]
    if onnx:
        rows.append((" shared", SHARED, True))
    for _ in range(args.repeats):
        for label, split, shared in rows:
            if not onnx:
                decoders: list[Callable[..., object]] = [engine._decoder] * len(split)
            elif shared:
                decoders = [_OnnxDecoder(assets, split[0], False)] * len(split)
            else:
                decoders = [_OnnxDecoder(assets, threads, False) for threads in split]
            rates: dict[int, float] = {}
            faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
            workers = [threading.Thread(target=loop, args=(decoders[i], threads, rates, i))
                       for i, threads in enumerate(split)]
            for worker in workers:
                worker.start()
            for worker in workers:
                worker.join()
            faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt - faults
            each = ", ".join(f"{rates[i]:.0f}" for i in range(len(split)))
            print(f"{len(split)} thread(s) x intra-op threads {split}{label}: {each} frames/s, "
                  f"total {sum(rates.values()):.0f}; page faults per window "
                  f"{faults / sum(windows[i] for i in range(len(split))):.0f}", flush=True)


if __name__ == "__main__":
    main()
