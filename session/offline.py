"""Speaking units on an offline scheduler stream, from the event loop: what synthesis jobs and the
clone job use when no real-time client listens (the scheduler runs such streams only in ticks no
live stream needs).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from types import TracebackType
from typing import Self

from inference.engine import SynthesisUnit
from inference.scheduler import (
    Refusal,
    Scheduler,
    SchedulerStopped,
    StreamEvent,
    StreamFinished,
    StreamId,
    UnitAudio,
    UnitFailed,
)
from session.errors import ServerBusy


class OfflineStream:
    """One offline scheduler stream driven from the event loop. Use as an async context manager;
    leaving it early (an exception, a cancelled task) cancels the stream's remaining work.

    Events reach the loop with ``call_soon_threadsafe``; ``speak`` yields them in unit order."""

    def __init__(self, scheduler: Scheduler, *, units_in_flight: int = 16) -> None:
        self._scheduler = scheduler
        self._window = units_in_flight
        self._events: asyncio.Queue[StreamEvent] = asyncio.Queue()
        self._stream_id: StreamId | None = None
        self._finished = False

    async def __aenter__(self) -> Self:
        loop = asyncio.get_running_loop()

        def sink(event: StreamEvent) -> None:  # the model thread
            try:
                loop.call_soon_threadsafe(self._events.put_nowait, event)
            except RuntimeError:  # the loop is closed: the job is gone already
                pass

        opened = self._scheduler.open_stream(sink, offline=True)
        if isinstance(opened, Refusal):
            raise ServerBusy(opened.message)
        self._stream_id = opened
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        if self._stream_id is not None and not self._finished:
            try:
                self._scheduler.cancel(self._stream_id)
            except SchedulerStopped:
                pass  # shutting down: the stream is gone with its scheduler

    async def speak(self, units: Sequence[SynthesisUnit],
                    on_event: Callable[[int, UnitAudio | UnitFailed], Awaitable[None]]) -> None:
        """Speak ``units`` in order, calling ``on_event(index, event)`` for each audio chunk and
        unit failure as it arrives; returns after the last unit. An exception from ``on_event``
        ends the stream (leaving the context manager cancels it)."""
        assert self._stream_id is not None, "use OfflineStream as an async context manager"
        stream_id = self._stream_id
        submitted = 0

        def top_up(done: int) -> None:
            nonlocal submitted
            while submitted < len(units) and submitted - done < self._window:
                self._scheduler.submit(stream_id, units[submitted])
                submitted += 1
                if submitted == len(units):
                    self._scheduler.end_stream(stream_id)

        if not units:
            self._scheduler.end_stream(stream_id)
        top_up(0)
        while True:
            event = await self._events.get()
            if isinstance(event, StreamFinished):
                self._finished = True
                return
            await on_event(event.unit_index, event)
            if isinstance(event, UnitFailed) or event.unit_finished:
                top_up(event.unit_index + 1)


async def wait_until_ready(scheduler: Scheduler, timeout_s: float) -> None:
    """Until the scheduler's engine is loaded; ServerBusy when it failed or takes too long."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while not scheduler.ready.is_set():
        if scheduler.failed is not None or loop.time() >= deadline:
            raise ServerBusy(f"the {scheduler.engine.name} engine is not available")
        await asyncio.sleep(0.1)


