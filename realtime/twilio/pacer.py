"""Cutting mu-law into 20 ms frames and sending them at real time, a little ahead.

Twilio plays what it receives in arrival order and buffers the rest, so sending everything at once
would work until a ``clear``: audio far ahead of playout is what a barge-in has to throw away, and
a burst of frames starves the event loop for the other calls. ``FramePacer`` lets a call run
``lead_s`` ahead of playout and no further.

Deadlines come from one origin (``origin + n * frame_s - lead_s``), never from the previous send,
so late wake-ups do not accumulate into drift. When the sender falls behind playout (the engine was
slow, or an utterance ended), Twilio's buffer has run dry: the origin restarts at the next frame and
the lead is built up again at once.
"""

from __future__ import annotations

from dataclasses import dataclass

from realtime.twilio.protocol import FRAME_BYTES

MULAW_SILENCE = b"\xff"
"""mu-law's zero level (pads the last frame of an utterance)."""


class FrameSplitter:
    """Bytes of mu-law in, whole ``frame_bytes`` frames out; the remainder waits for more."""

    def __init__(self, frame_bytes: int = FRAME_BYTES) -> None:
        self.frame_bytes = frame_bytes
        self._pending = bytearray()

    def push(self, data: bytes) -> list[bytes]:
        self._pending += data
        whole = len(self._pending) - len(self._pending) % self.frame_bytes
        frames = [bytes(self._pending[i:i + self.frame_bytes])
                  for i in range(0, whole, self.frame_bytes)]
        del self._pending[:whole]
        return frames

    def flush(self) -> list[bytes]:
        """The remainder as one frame padded with silence (none when nothing is left)."""
        if not self._pending:
            return []
        frame = bytes(self._pending) + MULAW_SILENCE * (self.frame_bytes - len(self._pending))
        self._pending.clear()
        return [frame]

    def drop(self) -> None:
        self._pending.clear()


@dataclass(frozen=True)
class PacingSettings:
    frame_s: float = 0.020
    lead_s: float = 0.120
    """How far ahead of playout frames may be sent (what a ``clear`` throws away at most)."""


class FramePacer:
    """When the next frame may go, on a monotonic clock the caller reads (no I/O, no sleeping).

    Per frame: ``delay_s(now)`` (sleep that long), then ``sent(now)`` once it is on the wire.
    ``reset()`` after a ``clear``: Twilio's buffer is empty again.
    """

    def __init__(self, settings: PacingSettings | None = None) -> None:
        self.settings = settings or PacingSettings()
        self._origin: float | None = None
        self._frames = 0

    def delay_s(self, now: float) -> float:
        """Seconds to wait before sending the next frame (0 when it may go now)."""
        if self._origin is None or now > self._playout_end():
            self._origin, self._frames = now, 0  # playout caught up: build the lead again
        return max(0.0, self.deadline() - now)

    def deadline(self) -> float:
        """The time the next frame is due (``delay_s`` first sets the origin)."""
        assert self._origin is not None, "call delay_s before deadline"
        return self._origin + self._frames * self.settings.frame_s - self.settings.lead_s

    def sent(self, now: float) -> float:
        """Count the frame sent at ``now``; returns how late it went, in seconds (>= 0 when the
        sender woke after its deadline; the lead frames of a burst count as on time)."""
        assert self._origin is not None, "call delay_s before sent"
        late = max(0.0, now - max(self._origin, self.deadline()))
        self._frames += 1
        return late

    def reset(self) -> None:
        self._origin, self._frames = None, 0

    def _playout_end(self) -> float:
        assert self._origin is not None
        return self._origin + self._frames * self.settings.frame_s
