"""Would a stateful Kokoro decoder keep the voice? A what-if, measured in one pass.

The engine decodes each chunk as a window with 24 frames of context on each side and throws the
context away (``[kokoro] context_frames``): a 400-frame turn decodes about 590 window frames.
A stateful decoder would keep each convolution's input tail between chunks and decode every
frame once. What stops it is the instance normalisation inside the decoder's 46 AdaIN blocks
(and 2 more written out as plain steps): each normalises over the whole time axis, and a
stateful decoder can only use the statistics of what it has seen so far.

This script decodes an utterance three ways and compares each with the one-pass decode (the
whole utterance in one window):

* ``windowed``: the engine's own streaming (``tests.inference.test_kokoro.stream``): a 24-frame
  chunk, then 128-frame ones, each with 24 frames of context and a 2-frame crossfade;
* ``cumulative +L``: one pass in which every normalisation uses, at each position, the
  statistics of everything from the start up to the end of that position's chunk plus ``L``
  frames (what a stateful decoder would have, with ``L`` frames decoded ahead);
* ``sliding W``: every position normalised by the statistics of the ``W`` frames before it.

and prints the magnitude-STFT SNR against one pass, the speaker-encoder cosine to one pass and
Whisper's word error rate. Figures in docs/benchmarks.md ("A stateful decoder, measured before
building it").

    .venv/bin/python benchmarks/kokoro_streaming_norms.py [--voice mean]
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np
import torch

from inference.engine import SynthesisUnit
from inference.graph_rewrites import affine_norm
from inference.kokoro import KokoroEngine, _TorchDecoder
from inference.kokoro_config import KokoroConfig
from inference.kokoro_graph import SAMPLE_RATE_HZ, SAMPLES_PER_FRAME
from inference.speaker import SpeakerEncoder, cosine
from tests.inference.test_kokoro import magnitude_snr_db, stream
from tests.whisper_asr import transcribe, word_error_rate

TEXTS = (
    "The quick brown fox jumps over the lazy dog near the river bank.",
    ("When the sunlight strikes raindrops in the air, they act as a prism and form a rainbow, "
     "which is a division of white light into many beautiful colors."),
    ("Please call Stella and ask her to bring these things with her from the store: six spoons "
     "of fresh snow peas, five thick slabs of blue cheese, and maybe a snack for her brother "
     "Bob."),
)
Stats = Callable[[torch.Tensor], torch.Tensor]
"""x [1, channels, time] -> the mean over time each position is normalised with, same shape."""


def cumulative(ends: Sequence[int], frames: int, ahead: int) -> Stats:
    def stats(x: torch.Tensor) -> torch.Tensor:
        steps = x.shape[-1]
        total = torch.cumsum(x.double(), dim=-1)
        out, lo = torch.empty_like(x), 0
        for end in ends:
            hi = min(steps, max(1, round(end * steps / frames)))
            seen = min(steps, max(1, round(min(frames, end + ahead) * steps / frames)))
            if hi > lo:
                out[..., lo:hi] = (total[..., seen - 1:seen] / seen).float()
            lo = hi
        return out
    return stats


def sliding(frames: int, width: int) -> Stats:
    def stats(x: torch.Tensor) -> torch.Tensor:
        steps = x.shape[-1]
        span = max(1, round(width * steps / frames))
        total = torch.nn.functional.pad(torch.cumsum(x.double(), dim=-1), (1, 0))
        hi = torch.arange(1, steps + 1)
        lo = torch.clamp(hi - span, min=0)
        return ((total[..., hi] - total[..., lo]) / (hi - lo)).float()
    return stats


def with_stats(decoder: _TorchDecoder, stats: Stats) -> list[Any]:
    """The body's steps with every normalisation over time using ``stats``; returns the
    original steps, to put back."""
    body = decoder._body
    original = list(body._steps)

    def norm(a: Any, n: Any, x: torch.Tensor, gain: torch.Tensor,
             shift: torch.Tensor) -> torch.Tensor:
        centred = x - stats(x)
        return centred * gain * torch.rsqrt(stats(centred * centred) + a["eps"]) + shift

    def make_mean(op: Any) -> Any:
        def mean(a: Any, n: Any, x: torch.Tensor, axes: torch.Tensor | None = None) -> Any:
            if axes is not None and [int(v) for v in axes] in ([2], [-1]) and x.dim() == 3:
                return stats(x)
            return op(a, n, x, axes)
        return mean

    body._steps = [
        (norm if op is affine_norm else
         make_mean(op) if getattr(op, "__name__", "") == "_op_ReduceMean" else op,
         names, outs, attrs)
        for op, names, outs, attrs in original]
    return original


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--voice", default="mean")
    args = parser.parse_args()
    engine = KokoroEngine(KokoroConfig())
    decoder = engine._decoder
    if not isinstance(decoder, _TorchDecoder):
        raise SystemExit("this CPU runs Kokoro's decoder in ONNX Runtime; the what-if needs the "
                         "PyTorch decoder")
    encoder = SpeakerEncoder()
    rate = SAMPLE_RATE_HZ
    for text in TEXTS:
        unit = SynthesisUnit(text, args.voice)
        streamed, chunks, _ = stream(engine, unit)
        ends = [int(end) for end in np.cumsum([len(c) // SAMPLES_PER_FRAME for c in chunks])]
        frames = ends[-1]
        one_pass = engine.synthesize_one_pass(unit)
        reference = encoder.embed(one_pass, rate)
        ways: dict[str, np.ndarray] = {"windowed": streamed}
        variants: dict[str, Stats] = {
            **{f"cumulative +{ahead}": cumulative(ends, frames, ahead) for ahead in (0, 24, 48)},
            **{f"sliding {width}": sliding(frames, width) for width in (96, 200)}}
        for name, stats in variants.items():
            original = with_stats(decoder, stats)
            try:
                ways[name] = engine.synthesize_one_pass(unit)
            finally:
                decoder._body._steps = original
        print(f"{frames} frames, chunks ending at {ends}; one pass: WER "
              f"{word_error_rate(text, transcribe(one_pass, rate, 'en')):.2f}")
        for name, audio in ways.items():
            print(f"  {name:14s} magnitude-STFT SNR {magnitude_snr_db(one_pass, audio):5.1f} dB"
                  f"  voice cosine {cosine(encoder.embed(audio, rate), reference):.3f}"
                  f"  WER {word_error_rate(text, transcribe(audio, rate, 'en')):.2f}")


if __name__ == "__main__":
    main()
