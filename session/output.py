"""The bounded per-session output buffer between synthesis and a client's socket.

Synthesis runs ahead of playout, so a healthy client always has some audio queued. A client that stops
reading would make that queue grow without bound; instead, once ``max_bytes`` are waiting, ``put``
raises ``SlowConsumer`` and the transport closes the connection with that error's close code.
"""

from __future__ import annotations

import asyncio
from collections import deque

from session.errors import SlowConsumer

Frame = str | bytes


class OutputBuffer:
    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self._frames: deque[tuple[str | None, Frame]] = deque()
        self._bytes = 0
        self._ready = asyncio.Event()
        self._closed = False

    @property
    def queued_bytes(self) -> int:
        return self._bytes

    def put(self, frame: Frame, tag: str | None = None) -> None:
        """Queue a frame (``tag``: e.g. its context id, for ``drop``). Raises SlowConsumer when the
        client has fallen too far behind."""
        if self._closed:
            return
        size = len(frame)
        if self._bytes + size > self.max_bytes:
            raise SlowConsumer(
                f"client is not reading: {self._bytes} bytes already waiting "
                f"(limit {self.max_bytes})"
            )
        self._frames.append((tag, frame))
        self._bytes += size
        self._ready.set()

    async def get(self) -> Frame | None:
        """The next frame, or None once closed and drained."""
        while not self._frames:
            if self._closed:
                return None
            self._ready.clear()
            await self._ready.wait()
        _, frame = self._frames.popleft()
        self._bytes -= len(frame)
        return frame

    def drop(self, tag: str) -> int:
        """Discard the queued frames with this tag (a cancelled context's audio that has not left
        yet). Returns how many were dropped."""
        kept = deque(item for item in self._frames if item[0] != tag)
        dropped = len(self._frames) - len(kept)
        self._frames = kept
        self._bytes = sum(len(frame) for _, frame in kept)
        return dropped

    def close(self) -> None:
        """No more frames will be put; ``get`` returns what is queued, then None."""
        self._closed = True
        self._ready.set()
