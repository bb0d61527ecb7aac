"""How Kokoro's streamed windows are sized and when a new one may start: the engine's window policy.

``KokoroEngine`` decodes a request chunk by chunk, each chunk inside a window with context
(``inference.onnx_graphs.chunk_window``). This module holds the decisions that read the client's
buffer and the decoder's measured speed: how long the next chunk is (``next_chunk``), which window
lengths the PyTorch decoder uses and warms up (``bucketed``, ``common_windows``), and whether a
window decoding beside a newcomer's would run its client dry (``runs_dry_if_shared``, for
``KokoroConfig.hold_first_windows``) or leave it too little to go on sharing the cores
(``short_to_share``, for ``KokoroConfig.ramp_hold_s``), and which of a unit's edge silence is
decoded but not sent (``quiet_edges``, ``decoded_span``). Everything here is arithmetic on numbers
the engine passes in; the engine owns the state.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, NamedTuple

import numpy as np
import numpy.typing as npt

from inference.engine import DecodeItem
from inference.kokoro_graph import SAMPLE_RATE_HZ, SAMPLES_PER_FRAME

if TYPE_CHECKING:
    from inference.kokoro_config import KokoroConfig

GROWTH_SHARE = 0.8
"""A growing chunk's window must decode in this share of the audio its client has buffered
(``KokoroConfig.grow_chunks``)."""
WINDOW_BUCKET_FRAMES = 12
"""The PyTorch decoder's windows are a multiple of this many frames long (``bucketed``)."""
SPEECH_ENERGY = -3.0
"""The frontend's predicted energy (``n``, two values a frame) above which a frame holds
speech. Kokoro's silence at a unit's edges sits at -10 to -4 (the audio 70 dB or more below its
peak), and speech rises through it within a frame or two."""
EDGE_FRAMES = WINDOW_BUCKET_FRAMES
"""Frames of a unit's edge silence decoded but not sent (``KokoroConfig.quiet_edges``): one
bucket, so windows keep their bucketed lengths."""
EDGE_KEEP_LEAD = 1
EDGE_KEEP_TAIL = 10
"""Frames of silence a unit keeps before its first and after its last speech, at least."""
SHARED_SLOWDOWN = 1.8
"""How much longer a window takes while another decodes beside it on 2 cores (one window 157-183
frames/s, each of two 96-103: ``benchmarks/kokoro_lanes.py``)."""
HANDOFF_S = 0.1
"""Of a first chunk's audio, what the client plays before its second window can start: the
tick that delivers it and the one that plans the next (``_gaining_start``)."""
FIRST_WINDOW_HOLD_S = 1.0
"""Longest a silent stream's first window waits for a lane (``KokoroConfig.hold_first_windows``)."""


class Window(NamedTuple):
    """A window decoding on a lane, or about to."""

    began: float
    """When it began (``perf_counter``)."""
    frames: int
    """Its length, context included."""
    chunk: int
    """The frames of its chunk: the audio it adds."""
    buffered_s: float | None
    """What its client held when it began (None: nothing plays it in real time)."""


def next_chunk(cfg: KokoroConfig, next_frame: int, last_chunk: int, item: DecodeItem,
               s_per_frame: float) -> int:
    """The next chunk's length (``KokoroConfig.grow_chunks``) for a request at ``next_frame``
    whose last chunk was ``last_chunk`` frames (0 before the first), with the decoder at
    ``s_per_frame`` seconds per window frame.

    A request's first chunk is the largest whose window decodes in half of ``item.buffered_s``
    (the other half is for other streams and for noise in the speed), within [least,
    chunk_frames]. ``least`` is first_chunk_frames plus first_chunk_per_competitor_frames for
    each competing stream, or where it is longer the first chunk that leaves a gaining second
    one (``gaining_chunk``) time to decode (``_gaining_start``): on a decoder too slow for the
    short start to gain, the stream starts later rather than running dry at its second window.
    A playing stream's next unit caps ``least`` (not below first_chunk_frames) at a window that
    decodes in ``GROWTH_SHARE`` of what its client holds: a longer one would run it dry at once.

    Each later one doubles the last, up to chunk_frames, or grows only as far as a window that
    decodes in ``GROWTH_SHARE`` of ``item.buffered_s`` where that is still longer than the
    last. Where no growth fits, it is the longest chunk that fits if that still gains, and
    otherwise the doubled one: a stream that fell too far behind for any gaining window needs
    long, efficient windows to catch up. With 24 frames of context each side, a chunk gains on
    the playhead only when it is long enough to outweigh its context (over 29 frames at 105
    window frames a second); growing by the buffer avoids the dry spells that doubling into
    windows too long to decode in time caused (docs/benchmarks.md, "8-bit integer
    convolutions", "Starts that gain")."""
    if not cfg.grow_chunks or item.buffered_s is None:
        return cfg.first_chunk_frames if next_frame == 0 else cfg.chunk_frames
    gaining = min(cfg.chunk_frames, gaining_chunk(cfg, s_per_frame))
    if last_chunk:
        grown = min(cfg.chunk_frames, 2 * last_chunk)
        fits = (_covered(item.buffered_s, s_per_frame) - min(next_frame, cfg.context_frames)
                - cfg.context_frames)
        if fits > last_chunk:
            return min(grown, fits)
        return fits if gaining and fits >= gaining else grown
    least = min(cfg.chunk_frames, cfg.first_chunk_frames
                + item.competing * cfg.first_chunk_per_competitor_frames)
    if gaining:
        least = max(least, _gaining_start(cfg, gaining, s_per_frame))
    if item.buffered_s:  # a playing stream's next unit: no longer than its buffer covers
        covered = _covered(item.buffered_s, s_per_frame) - cfg.first_context_frames
        least = max(cfg.first_chunk_frames, min(least, covered))
    fits = int(0.5 * item.buffered_s / s_per_frame) - cfg.first_context_frames
    return max(least, min(cfg.chunk_frames, fits))


def _gaining_start(cfg: KokoroConfig, gaining: int, s_per_frame: float) -> int:
    """The shortest first chunk whose audio, less ``HANDOFF_S``, covers the window of a
    ``gaining``-frame second chunk at ``GROWTH_SHARE``, filled to its own window's bucket (which
    decodes no slower for it)."""
    frame_s = SAMPLES_PER_FRAME / SAMPLE_RATE_HZ
    second = _bucket(gaining + 2 * cfg.context_frames)
    frames = math.ceil((second * s_per_frame / GROWTH_SHARE + HANDOFF_S) / frame_s - 1e-9)
    return min(cfg.chunk_frames,
               _bucket(frames + cfg.first_context_frames) - cfg.first_context_frames)


def _covered(buffered_s: float, s_per_frame: float) -> int:
    """The longest window of whole buckets that decodes in ``GROWTH_SHARE`` of ``buffered_s``."""
    frames = int(GROWTH_SHARE * buffered_s / s_per_frame)
    return frames // WINDOW_BUCKET_FRAMES * WINDOW_BUCKET_FRAMES


def _bucket(frames: int) -> int:
    """``frames`` rounded up to a whole number of buckets (``WINDOW_BUCKET_FRAMES``)."""
    return -(-frames // WINDOW_BUCKET_FRAMES) * WINDOW_BUCKET_FRAMES


def gaining_chunk(cfg: KokoroConfig, s_per_frame: float) -> int:
    """The shortest chunk whose window, with ``context_frames`` on both sides, decodes in
    ``GROWTH_SHARE`` of the chunk's own audio at ``s_per_frame`` seconds per window frame: each
    such chunk leaves the client more buffered than the one before (``KokoroConfig.
    gaining_chunks``; 0 when that is off). On a decoder too slow for any, a number past every
    chunk length."""
    return _gaining(cfg, s_per_frame) if cfg.gaining_chunks else 0


def _gaining(cfg: KokoroConfig, s_per_frame: float) -> int:
    """``gaining_chunk`` whether or not ``KokoroConfig.gaining_chunks`` is on."""
    spare = GROWTH_SHARE * SAMPLES_PER_FRAME / SAMPLE_RATE_HZ - s_per_frame
    if spare <= 0:
        return 1 << 30
    return math.ceil(2 * cfg.context_frames * s_per_frame / spare - 1e-9)


def runs_dry_if_shared(window: Window, now: float, s_per_frame: float) -> bool:
    """Whether ``window``, still decoding at ``now`` and from then on ``SHARED_SLOWDOWN``
    slower than ``s_per_frame`` because another window shares the cores, would finish after its
    client's buffered audio runs out (a client that held none cannot)."""
    if not window.buffered_s:
        return False
    left_s = window.began + window.frames * s_per_frame - now
    return left_s > 0 and now + SHARED_SLOWDOWN * left_s > window.began + window.buffered_s


def short_to_share(cfg: KokoroConfig, window: Window, now: float, s_per_frame: float,
                   shared_s_per_frame: float) -> bool:
    """Whether ``window``'s client would hold too little audio, once the window ends decoding
    beside another from ``now`` on (at ``shared_s_per_frame``), for its next window to decode
    beside another too (``shared_start_s``): a stream still ramping up, which a newcomer's
    first window and the windows after it would slow into running dry. A stream's first window
    counts: its client then holds only that chunk."""
    if window.buffered_s is None:
        return False
    left = max(0.0, window.began + window.frames * s_per_frame - now) / s_per_frame
    ends = now + left * shared_s_per_frame
    held_s = (max(0.0, window.began + window.buffered_s - ends)
              + window.chunk * SAMPLES_PER_FRAME / SAMPLE_RATE_HZ)
    return held_s < shared_start_s(cfg, shared_s_per_frame)


def shared_start_s(cfg: KokoroConfig, shared_s_per_frame: float) -> float:
    """The audio a stream needs buffered for its next window to gain on the playhead while
    another decodes beside it: a gaining chunk's window at ``shared_s_per_frame`` (a full
    chunk's where none gains), decoded in ``GROWTH_SHARE`` of it."""
    chunk = min(cfg.chunk_frames, _gaining(cfg, shared_s_per_frame))
    return _bucket(chunk + 2 * cfg.context_frames) * shared_s_per_frame / GROWTH_SHARE


def bucketed(lo: int, hi: int, frames: int) -> tuple[int, int]:
    """The window ``lo:hi`` widened to a multiple of ``WINDOW_BUCKET_FRAMES`` frames where the
    utterance has them, to the right first. oneDNN builds a convolution's kernels the first time
    it meets an input length (0.1-0.7 s on 2 cores, as long as the window itself), and without
    buckets nearly every utterance's last window has a new length; with them the lengths are
    few, and ``warmup`` builds the common ones (``common_windows``). The extra frames are
    context: they cost a little time and bring the window's statistics nearer the whole
    utterance's."""
    want = _bucket(hi - lo)
    hi = min(frames, lo + want)
    return max(0, hi - want), hi


def common_windows(cfg: KokoroConfig) -> list[int]:
    """The bucketed window lengths streams decode (``warmup`` builds their kernels): every
    bucket from a lone first chunk's window to a full chunk's with context on both sides, since
    growing chunks (``KokoroConfig.grow_chunks``) may take any of them. An utterance's last
    window may be shorter; its kernels are built the first time (0.1-0.3 s, once)."""
    smallest = _bucket(cfg.first_chunk_frames + cfg.first_context_frames)
    largest = _bucket(cfg.chunk_frames + 2 * cfg.context_frames)
    return list(range(smallest, largest + 1, WINDOW_BUCKET_FRAMES))


def quiet_edges(n: npt.NDArray[np.float32]) -> tuple[int, int]:
    """Frames of a unit's leading and trailing silence to decode as context but not send:
    ``EDGE_FRAMES`` at an edge where the frontend's predicted energy (``n`` [1, 2 * frames], a
    frame's mean) stays under ``SPEECH_ENERGY`` for that many frames more than the unit keeps
    (``EDGE_KEEP_LEAD``, ``EDGE_KEEP_TAIL``), else none."""
    energy = n.reshape(-1, 2).mean(axis=1)
    loud = np.flatnonzero(energy > SPEECH_ENERGY)
    if loud.size == 0:
        return 0, 0
    quiet_after = len(energy) - 1 - int(loud[-1])
    return (EDGE_FRAMES if int(loud[0]) >= EDGE_FRAMES + EDGE_KEEP_LEAD else 0,
            EDGE_FRAMES if quiet_after >= EDGE_FRAMES + EDGE_KEEP_TAIL else 0)


def decoded_span(lead: int, trail: int, frames: int, lo: int, hi: int) -> tuple[int, int]:
    """The frames a window of sent frames ``lo:hi`` decodes, of a unit that sends ``frames``
    between ``lead`` and ``trail`` unsent ones: those, and the unsent edge silence where the
    window reaches an edge."""
    first = 0 if lo == 0 else lead + lo
    last = lead + hi + (trail if hi == frames else 0)
    return first, last
