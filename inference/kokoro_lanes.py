"""Decode lanes: several requests' windows decoding at once, a tick not waiting for all of them.

``KokoroEngine`` (PyTorch decoder, ``KokoroConfig.lanes`` > 1) hands each tick's planned decode
items to ``Lanes.run``. A planned request gets a worker thread of its own when a lane is free; the
tick then waits until some window finishes, or ``LANE_POLL_S`` at most, so the model thread takes
in new text and starts newcomers on free lanes meanwhile. A window outlives ticks: a request
still decoding gets empty output, and the tick after its window finished delivers its audio.

Because windows outlast ticks, a tick's decode time says little about the engine's throughput;
``Lanes.busy_s`` reports the seconds some lane (or the tick's prefill) was computing, overlaps
counted once and a window alone as the share of the lanes' speed it gets, which the scheduler
learns throughput from (``EngineResult.busy_s``).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from typing import Generic, TypeVar

import numpy as np

from inference.engine import DecodeItem, RequestFailure, RequestId, RequestOutput

LANE_POLL_S = 0.02
"""Longest a tick waits for a lane's window before it returns."""

Span = tuple[float, float]
"""A ``perf_counter`` interval (start, end)."""
R = TypeVar("R")
log = logging.getLogger(__name__)


class Lanes(Generic[R]):
    """Up to ``count`` windows decoding at once, one per request, each on its own thread.

    ``decode(item, request)`` runs on a lane; it may write only ``request``, which the engine does
    not touch while the window decodes. Calls to ``run`` and ``busy_s`` come from one thread.
    """

    def __init__(self, count: int, decode: Callable[[DecodeItem, R], RequestOutput],
                 thread_name_prefix: str = "decode-lane") -> None:
        if count < 1:
            raise ValueError("lanes need at least one thread")
        self.count = count
        self._decode = decode
        self._pool = ThreadPoolExecutor(count, thread_name_prefix=thread_name_prefix)
        self._running: dict[RequestId, tuple[float, Future[tuple[RequestOutput, float]]]] = {}
        """Windows decoding, by request: when each started, and its future output and finishing
        time."""
        self._reported_until = 0.0
        """``perf_counter`` time up to which ``busy_s`` has been reported."""
        self._lock = threading.Lock()
        self._decoding = 0
        self._others_s = 0.0
        self._counted_until = time.perf_counter()

    def run(self, items: Sequence[DecodeItem], request_for: Callable[[RequestId], R]
            ) -> tuple[tuple[RequestOutput, ...], tuple[RequestFailure, ...], list[Span]]:
        """Start planned windows on free lanes, wait until one finishes (or ``LANE_POLL_S``
        passes), and return every finished window's output, planned this tick or before, and an
        empty output for each planned request whose window is still decoding or waits for a
        lane; then the failures (a window that raised fails its request, the others keep their
        audio), and the time span of every window finished or running. ``request_for`` raises
        for an unknown id before anything starts on a lane."""
        for item in items:
            if item.request_id not in self._running and len(self._running) < self.count:
                request = request_for(item.request_id)
                self._running[item.request_id] = (time.perf_counter(),
                                                  self._pool.submit(self._timed, item, request))
        if self._running:
            wait([future for _, future in self._running.values()], LANE_POLL_S, FIRST_COMPLETED)
        now = time.perf_counter()
        outputs: list[RequestOutput] = []
        failures: list[RequestFailure] = []
        spans: list[Span] = []
        for request_id, (started, future) in list(self._running.items()):
            if not future.done():
                spans.append((started, now))
                continue
            del self._running[request_id]
            try:
                output, finished = future.result()
            except Exception:  # an engine bug: fail this request, keep the others' audio
                log.exception("a decode lane failed a window of request %d", request_id)
                failures.append(RequestFailure(request_id, "internal_error",
                                               "the engine failed on this request"))
                finished = now
            else:
                outputs.append(output)
            spans.append((started, finished))
        done = {out.request_id for out in outputs} | {f.request_id for f in failures}
        outputs += [RequestOutput(item.request_id, np.zeros(0, np.float32))
                    for item in items if item.request_id not in done]
        return tuple(outputs), tuple(failures), spans

    def decoding(self, request_id: RequestId) -> bool:
        """Whether a window of the request is on a lane."""
        return request_id in self._running

    def busy_s(self, spans: Sequence[Span], until: float, solo_share: float = 1.0) -> float:
        """Seconds since the last call, up to ``until``, inside at least one of ``spans``. A
        stretch with one window alone counts ``solo_share`` of its length: the share of what all
        lanes together decode that one window alone decodes in that time. Throughput learned
        from this is what the engine gives with every lane busy, which admission asks about,
        though it mostly runs one stream's window alone when a second stream asks to come in."""
        busy = covered(spans, self._reported_until, until, solo_share)
        self._reported_until = until
        return busy

    def others_s(self) -> float:
        """Seconds of windows decoding beside another, each counted once per other window,
        since the lanes began. Read on a lane at a window's start and end, the difference over
        the window's duration is the share of it that decoded beside another window."""
        with self._lock:
            return self._count(time.perf_counter())

    def _count(self, now: float, change: int = 0) -> float:
        self._others_s += (now - self._counted_until) * max(0, self._decoding - 1)
        self._counted_until = now
        self._decoding += change
        return self._others_s

    def _timed(self, item: DecodeItem, request: R) -> tuple[RequestOutput, float]:
        """``decode`` on a lane, and when it finished."""
        with self._lock:
            self._count(time.perf_counter(), +1)
        try:
            output = self._decode(item, request)
        finally:
            with self._lock:
                self._count(time.perf_counter(), -1)
        return output, time.perf_counter()


def covered(spans: Sequence[Span], since: float, until: float, solo_share: float = 1.0) -> float:
    """Seconds of [since, until] inside at least one of ``spans``, a stretch inside only one of
    them counted as ``solo_share`` of its length (``Lanes.busy_s``)."""
    edges: list[tuple[float, int]] = []
    for lo, hi in spans:
        lo, hi = max(lo, since), min(hi, until)
        if hi > lo:
            edges += [(lo, 1), (hi, -1)]
    total, depth, last = 0.0, 0, since
    for at, step in sorted(edges):
        if depth:
            total += (at - last) * (solo_share if depth == 1 else 1.0)
        depth, last = depth + step, at
    return total
