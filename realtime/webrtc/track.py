"""The outbound audio track of a WebRTC call: the session's speech at real time, silence between.

aiortc's sender pulls one frame per ``recv()`` and encodes it to Opus at once, so the track itself
sets the pace: ``recv`` waits for each 20 ms frame's deadline and then hands over whatever speech
is queued, or silence. Deadlines come from one origin (``origin + n * frame_s - lead_s``), never
from the previous frame, so late wake-ups do not accumulate into drift. After a stall the frames
that fell due go out at once: as long as the receiver's buffer had them covered they still play
on time, and restarting the origin instead would make the buffer's loss permanent (with a 0.1 s
limit, a busy server's run of 60-150 ms stalls left the track 1.7 s behind its start after
10 s, each stall a concealment at the receiver). Only after a stall longer than ``max_late_s``
(1 s: the receiver has long concealed it) does the origin restart.

``lead_s`` runs the track that far ahead of real time: its first frames go out at once. The
browser's jitter buffer starts playing at the first packet with almost nothing buffered and only
grows towards its target by stretching audio, a few per cent at a time (Chromium, measured:
10-20 ms at the first packet, 30-40 ms half a second later with an 80 ms target), so without a
lead a call's first utterance plays on a thin buffer and any hiccup of the server's send loop is
a gap in it, while later utterances have the full target. With the lead the buffer holds
``lead_s`` from the first packet on (110-130 ms measured with 0.1 s). The price: a cancel still
plays up to ``lead_s`` already sent.

``SpeechQueue`` (no I/O) holds the samples by context, so a cancel drops exactly that context's
speech, and carries markers: callbacks that run when playout reaches them (``context_done`` goes out
when the context's last sample is played, not when the engine finished it).
"""

from __future__ import annotations

import asyncio
import fractions
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

import av
import numpy as np
import numpy.typing as npt
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack

SAMPLE_RATE_HZ = 48_000
FRAME_SAMPLES = 960
"""20 ms at 48 kHz: one Opus frame."""

Pcm16 = npt.NDArray[np.int16]


@dataclass
class _Chunk:
    tag: str
    samples: Pcm16 | None  # None: a marker
    on_played: Callable[[], None] | None = None


class SpeechQueue:
    """Mono s16 samples at 48 kHz waiting for playout, each chunk tagged with its context id."""

    def __init__(self) -> None:
        self._chunks: deque[_Chunk] = deque()
        self._samples = 0

    @property
    def queued_samples(self) -> int:
        return self._samples

    def push(self, tag: str, pcm: bytes) -> None:
        """Queue little-endian s16 mono samples (an even number of bytes)."""
        samples = np.frombuffer(pcm, dtype="<i2").astype(np.int16)
        if len(samples):
            self._chunks.append(_Chunk(tag, samples))
            self._samples += len(samples)

    def mark(self, tag: str, on_played: Callable[[], None]) -> None:
        """Run ``on_played`` once every sample queued before it has been taken (also when they
        were dropped)."""
        self._chunks.append(_Chunk(tag, None, on_played))

    def drop(self, tag: str) -> int:
        """Discard the samples with this tag that have not been taken; returns how many.
        Markers stay (they fire when playout reaches them)."""
        dropped = sum(len(c.samples) for c in self._chunks if c.tag == tag and c.samples is not None)
        self._chunks = deque(c for c in self._chunks if c.tag != tag or c.samples is None)
        self._samples -= dropped
        return dropped

    def take(self, count: int) -> tuple[Pcm16, bool]:
        """The next ``count`` samples, padded with silence; True when any of them is speech.
        Markers reached on the way run (those right after the last taken sample too)."""
        out = np.zeros(count, dtype=np.int16)
        filled = 0
        while self._chunks:
            chunk = self._chunks[0]
            if chunk.samples is None:
                self._chunks.popleft()
                assert chunk.on_played is not None
                chunk.on_played()
                continue
            if filled == count:
                break
            n = min(count - filled, len(chunk.samples))
            out[filled:filled + n] = chunk.samples[:n]
            filled += n
            self._samples -= n
            if n == len(chunk.samples):
                self._chunks.popleft()
            else:
                chunk.samples = chunk.samples[n:]
        return out, filled > 0


class SpeechTrack(MediaStreamTrack):
    """An audio track that plays a ``SpeechQueue`` at real time in 20 ms mono 48 kHz frames."""

    kind = "audio"

    def __init__(self, queue: SpeechQueue | None = None, *, max_late_s: float = 1.0,
                 lead_s: float = 0.0) -> None:
        super().__init__()
        self.queue = queue or SpeechQueue()
        self.max_late_s = max_late_s
        self.lead_s = lead_s
        self.frame_s = FRAME_SAMPLES / SAMPLE_RATE_HZ
        self._origin: float | None = None
        self._frames = 0  # frames since the origin
        self._pts = 0  # samples since the track started (never reset: RTP timestamps)
        self._time_base = fractions.Fraction(1, SAMPLE_RATE_HZ)

    async def recv(self) -> av.AudioFrame:
        """The next frame, at its deadline. Raises MediaStreamError once the track is stopped."""
        if self.readyState != "live":
            raise MediaStreamError
        await self._wait_for_deadline()
        if self.readyState != "live":
            raise MediaStreamError
        samples, _ = self.queue.take(FRAME_SAMPLES)
        frame = av.AudioFrame.from_ndarray(samples.reshape(1, -1), format="s16", layout="mono")
        frame.sample_rate = SAMPLE_RATE_HZ
        frame.pts = self._pts
        frame.time_base = self._time_base
        self._pts += FRAME_SAMPLES
        self._frames += 1
        return frame

    async def _wait_for_deadline(self) -> None:
        loop = asyncio.get_running_loop()
        now = loop.time()
        if self._origin is None or now - self._playout() > self.max_late_s:
            self._origin, self._frames = now, 0
        delay = self._playout() - self.lead_s - now  # the lead's frames are due at once
        if delay > 0:
            await asyncio.sleep(delay)

    def _playout(self) -> float:
        """When the next frame plays at the receiver's pace (its deadline is ``lead_s`` earlier)."""
        assert self._origin is not None
        return self._origin + self._frames * self.frame_s
