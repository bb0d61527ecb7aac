"""Client-side playout simulation: would a real player have run dry?

A voice client plays the audio of an utterance in real time from a jitter buffer. This module replays
the arrival timeline of one context's audio frames against such a player:

* playout starts ``buffer_s`` after the first frame arrives (the jitter buffer; the load test uses
  100 ms, a common choice for WebSocket voice clients);
* audio then plays back to back at real-time rate;
* when the playhead reaches the end of the audio received so far while more audio is still to come,
  that is an **underrun**: the player is starved until the next frame arrives and resumes playing at
  once (no re-buffering), so each underrun lasts exactly the time the frame was late.

Silence before the first frame is time to first audio, not an underrun. The simulation is pure: it
takes arrival times, so it can run after the fact and be tested with synthetic timelines.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

_EPSILON_S = 1e-6
"""Lateness below this is float rounding, not starvation."""


@dataclass(frozen=True)
class Chunk:
    """One audio frame: when it arrived (any monotonic clock, seconds) and how long it plays."""

    arrival_s: float
    duration_s: float


@dataclass(frozen=True)
class Underrun:
    """The player ran dry at ``at_s`` (same clock as the arrivals) for ``starved_s`` seconds."""

    at_s: float
    starved_s: float


@dataclass(frozen=True)
class Playout:
    """The simulated playout of one utterance.

    ``level`` is the buffer level as a piecewise-linear curve of ``(time_s, buffered_s)`` points:
    between two points the level changes linearly (it falls at 1 s/s while playing, stays put while
    pre-buffering or starved).
    """

    start_s: float
    end_s: float
    underruns: tuple[Underrun, ...]
    level: tuple[tuple[float, float], ...]

    @property
    def underrun_count(self) -> int:
        return len(self.underruns)

    @property
    def starved_s(self) -> float:
        return sum(u.starved_s for u in self.underruns)


def simulate_playout(chunks: Sequence[Chunk], buffer_s: float) -> Playout | None:
    """Play ``chunks`` (in arrival order) through a player with a ``buffer_s`` jitter buffer.

    Returns ``None`` when there is no audio at all. Raises ``ValueError`` for a negative buffer or
    arrivals out of order.
    """
    if buffer_s < 0:
        raise ValueError(f"jitter buffer must be >= 0 s, got {buffer_s}")
    if not chunks:
        return None
    start = chunks[0].arrival_s + buffer_s
    cursor = start  # when the audio received so far will have finished playing
    underruns: list[Underrun] = []
    level: list[tuple[float, float]] = []
    previous_arrival = chunks[0].arrival_s
    playing = False
    for chunk in chunks:
        t = chunk.arrival_s
        if t < previous_arrival:
            raise ValueError(f"chunk arrivals out of order: {t} after {previous_arrival}")
        previous_arrival = t
        if t > start and not playing:
            level.append((start, cursor - start))  # pre-buffering ends, playing begins
            playing = True
        if t > cursor + _EPSILON_S:
            underruns.append(Underrun(at_s=cursor, starved_s=t - cursor))
            level.append((cursor, 0.0))
            cursor = t
        queued = cursor - max(t, start)
        level.append((t, queued))
        level.append((t, queued + chunk.duration_s))
        cursor += chunk.duration_s
    if not playing:
        level.append((start, cursor - start))
    level.append((cursor, 0.0))
    return Playout(start_s=start, end_s=cursor, underruns=tuple(underruns), level=tuple(level))
