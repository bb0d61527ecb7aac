"""How many decoder frames per second Kokoro's PyTorch decoder gives with one window at a time
against two at once (``[kokoro] lanes``), and how the torch threads split between them.

Each configuration decodes windows of 36, 60 and 180 frames in a loop for ``--seconds`` on one or
two Python threads, each with the given number of torch intra-op threads, and prints the frames
per second of each thread and their total. Compare rows within one run only: this machine's
speed drifts within the hour. Figures in docs/benchmarks.md ("Two lanes that do not wait for
each other").

    .venv/bin/python benchmarks/kokoro_lanes.py [--seconds 8] [--repeats 2]
"""

from __future__ import annotations

import argparse
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch

from inference.engine import SynthesisUnit
from inference.kokoro import DEFAULT_CACHE_DIR, KokoroConfig, KokoroEngine
from inference.kokoro_graph import load_assets

TEXT = ("The quick brown fox jumps over the lazy dog near the river bank, and then it runs far "
        "away into the deep green forest where nobody can find it again.")
WINDOWS = (36, 60, 180)
SPLITS = ((2,), (2, 2), (1, 1), (2, 1))
"""Torch threads of each Python thread decoding at once."""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=8.0)
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    engine = KokoroEngine(KokoroConfig(), assets=load_assets(DEFAULT_CACHE_DIR))
    print(f"decoder: {engine.decoder_kind}")
    request = engine._prepare(SynthesisUnit(TEXT, "jf_gongitsune"))

    def decode(frames: int) -> None:
        engine._run_decoder(request, 20, 20 + frames)

    for frames in WINDOWS:
        decode(frames)  # build the kernels for each length first

    def loop(threads: int, rates: dict[int, float], index: int) -> None:
        torch.set_num_threads(threads)  # this thread's OpenMP team
        start, frames = time.perf_counter(), 0
        while time.perf_counter() - start < args.seconds:
            for size in WINDOWS:
                decode(size)
                frames += size
        rates[index] = frames / (time.perf_counter() - start)

    for _ in range(args.repeats):
        for split in SPLITS:
            rates: dict[int, float] = {}
            workers = [threading.Thread(target=loop, args=(threads, rates, i))
                       for i, threads in enumerate(split)]
            for worker in workers:
                worker.start()
            for worker in workers:
                worker.join()
            each = ", ".join(f"{rates[i]:.0f}" for i in range(len(split)))
            print(f"{len(split)} thread(s) x torch threads {split}: {each} frames/s, total "
                  f"{sum(rates.values()):.0f}", flush=True)


if __name__ == "__main__":
    main()
