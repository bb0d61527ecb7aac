"""How Kokoro's streamed windows are sized and when a new one may start: the engine's window policy.

``KokoroEngine`` decodes a request chunk by chunk, each chunk inside a window with context
(``inference.onnx_graphs.chunk_window``). This module holds the decisions that read the client's
buffer and the decoder's measured speed: how long the next chunk is (``next_chunk``), which window
lengths the PyTorch decoder uses and warms up (``bucketed``, ``common_windows``), and whether a
window decoding beside a newcomer's would run its client dry (``runs_dry_if_shared``, for
``KokoroConfig.hold_first_windows``). Everything here is arithmetic on numbers the engine passes
in; the engine owns the state.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from inference.engine import DecodeItem

if TYPE_CHECKING:
    from inference.kokoro import KokoroConfig

GROWTH_SHARE = 0.8
"""A growing chunk's window must decode in this share of the audio its client has buffered
(``KokoroConfig.grow_chunks``)."""
WINDOW_BUCKET_FRAMES = 12
"""The PyTorch decoder's windows are a multiple of this many frames long (``bucketed``)."""
SHARED_SLOWDOWN = 1.8
"""How much longer a window takes while another decodes beside it on 2 cores (one window 157-183
frames/s, each of two 96-103: ``benchmarks/kokoro_lanes.py``)."""
FIRST_WINDOW_HOLD_S = 1.0
"""Longest a silent stream's first window waits for a lane (``KokoroConfig.hold_first_windows``)."""

Window = tuple[float, int, float | None]
"""A window on a lane: when it began (``perf_counter``), its frames, and when its client's
buffered audio runs out (None: its client holds none, or nothing plays it in real time)."""


def next_chunk(cfg: KokoroConfig, next_frame: int, last_chunk: int, item: DecodeItem,
               s_per_frame: float) -> int:
    """The next chunk's length (``KokoroConfig.grow_chunks``) for a request at ``next_frame``
    whose last chunk was ``last_chunk`` frames (0 before the first), with the decoder at
    ``s_per_frame`` seconds per window frame. A request's first chunk is the
    largest whose window decodes in half of ``item.buffered_s`` (the other half is for other
    streams and for noise in the speed), within [least, chunk_frames], where ``least`` is
    first_chunk_frames plus first_chunk_per_competitor_frames for each competing stream;
    each later one doubles the last, up to chunk_frames, or grows only as far as a window
    that decodes in ``GROWTH_SHARE`` of ``item.buffered_s`` where that is still longer than
    the last. It never shrinks with the buffer: a stream that fell behind needs long,
    efficient windows to catch up. With 24 frames of context each side, a chunk gains on the
    playhead only when it is long enough to outweigh its context (over 29 frames at 105
    window frames a second): on a CPU that slow the first dry spell remains, and growing by
    the buffer avoids the later ones that doubling into windows too long to decode in time
    caused (docs/benchmarks.md, "8-bit integer convolutions")."""
    if not cfg.grow_chunks or item.buffered_s is None:
        return cfg.first_chunk_frames if next_frame == 0 else cfg.chunk_frames
    if last_chunk:
        grown = min(cfg.chunk_frames, 2 * last_chunk)
        frames = int(GROWTH_SHARE * item.buffered_s / s_per_frame)
        window = frames // WINDOW_BUCKET_FRAMES * WINDOW_BUCKET_FRAMES
        fits = window - min(next_frame, cfg.context_frames) - cfg.context_frames
        return min(grown, fits) if fits > last_chunk else grown
    least = min(cfg.chunk_frames, cfg.first_chunk_frames
                + item.competing * cfg.first_chunk_per_competitor_frames)
    fits = int(0.5 * item.buffered_s / s_per_frame) - cfg.first_context_frames
    return max(least, min(cfg.chunk_frames, fits))


def runs_dry_if_shared(window: Window, now: float, s_per_frame: float) -> bool:
    """Whether ``window``, still decoding at ``now`` and from then on ``SHARED_SLOWDOWN``
    slower than ``s_per_frame`` because another window shares the cores, would finish after its
    client's buffered audio runs out."""
    began, frames, runs_dry = window
    left_s = began + frames * s_per_frame - now
    return runs_dry is not None and left_s > 0 and now + SHARED_SLOWDOWN * left_s > runs_dry


def bucketed(lo: int, hi: int, frames: int) -> tuple[int, int]:
    """The window ``lo:hi`` widened to a multiple of ``WINDOW_BUCKET_FRAMES`` frames where the
    utterance has them, to the right first. oneDNN builds a convolution's kernels the first time
    it meets an input length (0.1-0.7 s on 2 cores, as long as the window itself), and without
    buckets nearly every utterance's last window has a new length; with them the lengths are
    few, and ``warmup`` builds the common ones (``common_windows``). The extra frames are
    context: they cost a little time and bring the window's statistics nearer the whole
    utterance's."""
    want = -(-(hi - lo) // WINDOW_BUCKET_FRAMES) * WINDOW_BUCKET_FRAMES
    hi = min(frames, lo + want)
    return max(0, hi - want), hi


def common_windows(cfg: KokoroConfig) -> list[int]:
    """The bucketed window lengths streams decode (``warmup`` builds their kernels): every
    bucket from a lone first chunk's window to a full chunk's with context on both sides, since
    growing chunks (``KokoroConfig.grow_chunks``) may take any of them. An utterance's last
    window may be shorter; its kernels are built the first time (0.1-0.3 s, once)."""
    step = WINDOW_BUCKET_FRAMES
    smallest = -(-(cfg.first_chunk_frames + cfg.first_context_frames) // step) * step
    largest = -(-(cfg.chunk_frames + 2 * cfg.context_frames) // step) * step
    return list(range(smallest, largest + 1, step))
