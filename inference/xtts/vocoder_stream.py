"""Window-by-window HiFi-GAN decoding that reproduces the one-pass waveform.

The decoder is a chain of linear interpolations (latents -> vocoder frames) followed by a
convolutional generator. Both are local, so an utterance can be decoded in windows:

* vocoder frames are indexed globally. :class:`LinearStage` computes frame ``j`` of
  ``F.interpolate(x, scale_factor=s, mode="linear")`` from the same two inputs and weights PyTorch
  uses, so a window's frames are the one-pass frames (:func:`window_frames`). A frame whose right
  neighbour has not been generated yet is not *known*; the end of the utterance (where PyTorch
  clamps) is only used once the request has finished.
* the generator's output over frames ``[e0, e1)`` depends only on frames within ``context`` of them
  (:meth:`HifiganGenerator.context_frames`). A window decodes ``[e0 - left, e1 + right)`` and keeps
  ``[e0, e1)``: zero padding at a window edge that is not the utterance's edge never reaches the
  kept samples. The last ``right`` known frames are held back until more latents arrive or the
  request finishes.

Window sizes grow (``window_frames``, e.g. 16, 32, 64 frames of 10.7 ms): a small first window
for fast first audio, larger later ones to spend less on context.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch


@dataclass(frozen=True)
class LinearStage:
    """``F.interpolate(..., scale_factor=scale, mode="linear", align_corners=False)`` by index."""

    scale: float

    def out_len(self, n: int) -> int:
        return math.floor(n * self.scale)

    def source(self, j: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Left input index and right weight of outputs ``j`` (float32 like PyTorch's kernel)."""
        inv = np.float32(1.0 / self.scale)
        src = np.maximum(inv * (j.astype(np.float32) + np.float32(0.5)) - np.float32(0.5),
                         np.float32(0.0))
        i0 = src.astype(np.int64)
        lam = np.clip(src - i0.astype(np.float32), 0.0, 1.0).astype(np.float32)
        return i0, lam

    def known(self, n: int) -> int:
        """Leading outputs whose both inputs lie among the first ``n`` (end of input unknown)."""
        if n < 2:
            return 0
        guess = max(0, int((n - 0.5) * self.scale) - 3)
        j = np.arange(guess, guess + 8)
        i0, _ = self.source(j)
        return int(guess + np.count_nonzero(i0 <= n - 2))

    def needed(self, a: int, b: int, n_total: int | None) -> tuple[int, int]:
        """Input range ``[lo, hi)`` that outputs ``[a, b)`` read."""
        i0, _ = self.source(np.array([a, b - 1]))
        hi = int(i0[1]) + 2
        if n_total is not None:
            hi = min(hi, n_total)
        return int(i0[0]), hi

    def apply(self, x: torch.Tensor, lo: int, a: int, b: int, n_total: int | None) -> torch.Tensor:
        """Outputs ``[a, b)`` from ``x`` [C, m] holding inputs ``[lo, lo + m)``."""
        i0, lam = self.source(np.arange(a, b))
        i1 = i0 + 1
        if n_total is not None:
            i1 = np.minimum(i1, n_total - 1)
        idx0 = torch.from_numpy(i0 - lo).to(x.device)
        idx1 = torch.from_numpy(i1 - lo).to(x.device)
        w1 = torch.from_numpy(lam).to(x.device, x.dtype)
        return x[:, idx0] * (1 - w1) + x[:, idx1] * w1


class FrameChain:
    """Latents -> vocoder frames through a chain of linear stages."""

    def __init__(self, scales: tuple[float, ...]) -> None:
        self.stages = tuple(LinearStage(s) for s in scales)

    def total(self, n_latents: int) -> int:
        for stage in self.stages:
            n_latents = stage.out_len(n_latents)
        return n_latents

    def known(self, n_latents: int, finished: bool) -> int:
        """Frames computable exactly from ``n_latents`` latents."""
        if finished:
            return self.total(n_latents)
        n = n_latents
        for stage in self.stages:
            n = stage.known(n)
        return n

    def frames(self, latents: torch.Tensor, a: int, b: int, n_total: int | None) -> torch.Tensor:
        """Frames ``[a, b)`` [C, b - a] of the utterance whose latents so far are ``latents``
        [N, C]; ``n_total`` is N once the request has finished, else None."""
        totals = [n_total]
        for stage in self.stages[:-1]:
            totals.append(None if totals[-1] is None else stage.out_len(totals[-1]))
        ranges = [(a, b)]
        for stage, total in zip(reversed(self.stages), reversed(totals)):
            ranges.append(stage.needed(*ranges[-1], total))
        ranges.reverse()
        lo, hi = ranges[0]
        x = latents[lo:hi].transpose(0, 1).float()
        for stage, total, (out_a, out_b) in zip(self.stages, totals, ranges[1:]):
            x = stage.apply(x, lo, out_a, out_b, total)
            lo = out_a
        return x


@dataclass(frozen=True)
class Window:
    """Decode frames ``[start, stop)`` and keep the samples of ``[emit_start, emit_stop)``."""

    start: int
    emit_start: int
    emit_stop: int
    stop: int
    final: bool

    @property
    def length(self) -> int:
        return self.stop - self.start


@dataclass
class WindowPlanner:
    """Per-request cursor over vocoder frames: when is the next window ready, and what is it."""

    schedule: tuple[int, ...]
    context: int
    emitted: int = 0
    windows: int = 0

    def next_window(self, known: int, finished: bool) -> Window | None:
        size = self.schedule[min(self.windows, len(self.schedule) - 1)]
        if finished:
            emit_stop, stop = known, known
        elif known - self.context >= self.emitted + size:
            emit_stop = self.emitted + size
            stop = emit_stop + self.context
        else:
            return None
        window = Window(max(0, self.emitted - self.context), self.emitted, emit_stop, stop, finished)
        self.emitted = emit_stop
        self.windows += 1
        return window
