"""The model thread: runs one engine and the scheduling core (``inference.scheduling``, where the
algorithm note is) for many streams, off the event loop.
"""

from __future__ import annotations

import itertools
import logging
import math
import queue
import threading
import time
from collections.abc import Callable

from inference.engine import (
    DecodeItem,
    Engine,
    EnginePlan,
    EngineResult,
    PrefillItem,
    RequestFailure,
    RequestId,
    SynthesisUnit,
    decode_lanes,
)
from inference.scheduling import (
    Refusal,
    SchedulerConfig,
    SchedulerObserver,
    SchedulerState,
    Sink,
    StreamEvent,
    StreamFinished,
    StreamId,
    Throughput,
    UnitAudio,
    UnitFailed,
    _Cancel,
    _Control,
    _End,
    _Open,
    _Submit,
    apply_control,
    schedule,
    update,
)

__all__ = [
    "Refusal", "Scheduler", "SchedulerConfig", "SchedulerObserver", "SchedulerStopped", "Sink",
    "StreamEvent", "StreamFinished", "StreamId", "UnitAudio", "UnitFailed",
]

log = logging.getLogger(__name__)


# --- the model thread ------------------------------------------------------------------------------


class SchedulerStopped(RuntimeError):
    pass


class Scheduler:
    """Runs one engine on its own thread and serves many streams.

    ``open_stream``, ``submit``, ``end_stream`` and ``cancel`` are thread-safe and never block: they
    post to a bounded inbox that the model thread drains between ticks. Sinks are called on the model
    thread and must not block (the asyncio side hands events to its loop with
    ``call_soon_threadsafe``).
    """

    def __init__(
        self,
        engine: Engine,
        config: SchedulerConfig | None = None,
        observer: SchedulerObserver | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.engine = engine
        self.config = config or SchedulerConfig()
        self._observer = observer
        self._clock = clock
        self._state = SchedulerState(self.config, engine.sample_rate_hz,
                                     lanes=decode_lanes(engine))
        self._inbox: queue.Queue[_Control] = queue.Queue(self.config.inbox_size)
        self._stream_ids = itertools.count(1)
        self._lock = threading.Lock()
        self._open_streams = 0  # streams opened and not yet finished/cancelled (any thread)
        self._thread: threading.Thread | None = None
        self._stopping = threading.Event()
        self.ready = threading.Event()
        self.failed: BaseException | None = None
        # Published by the model thread for readers on other threads (plain ints/floats: atomic).
        self.busy_streams = 0
        self.queue_depth = 0
        self.late_at = -math.inf
        """When a playing stream was last seen behind its deadline (monotonic seconds)."""

    # lifecycle

    def start(self) -> None:
        """Start the model thread; it warms the engine up, then sets ``ready``."""
        if self._thread is not None:
            raise RuntimeError("scheduler already started")
        self._thread = threading.Thread(target=self._run, name=f"model-{self.engine.name}",
                                        daemon=True)
        self._thread.start()

    def stop(self, timeout_s: float = 10.0) -> None:
        self._stopping.set()
        if self._thread is not None:
            self._thread.join(timeout_s)

    # control (any thread)

    @property
    def throughput_audio_s_per_s(self) -> float:
        return self._state.throughput.audio_s_per_s

    def capacity_streams(self) -> float:
        """How many concurrently playing streams the measured throughput can carry."""
        rate = self._state.throughput.audio_s_per_s
        if rate == 0.0 or self.config.admission_utilization is None:
            return float(self.config.max_streams)
        return min(float(self.config.max_streams), rate * self.config.admission_utilization)

    def open_stream(self, sink: Sink, offline: bool = False) -> StreamId | Refusal:
        """Admit a new stream, or refuse it when its deadlines could not be met. An ``offline``
        stream (no real-time client) is always admitted while the engine runs: it only uses
        ticks that no live stream needs."""
        if self._stopping.is_set() or not self.ready.is_set():
            return Refusal("server_busy", "the synthesis engine is not ready")
        if offline:
            with self._lock:
                self._open_streams += 1
                stream_id = next(self._stream_ids)
            self._post(_Open(stream_id, sink, offline=True))
            return stream_id
        with self._lock:
            demand = max(self.busy_streams, 0) + 1
            # an idle engine always takes one stream: refusing it when the estimate dips under
            # one real-time stream (Kokoro on 2 cores) would leave the engine unusable
            if self._open_streams >= self.config.max_streams or demand > max(
                    1.0, self.capacity_streams()):
                return Refusal(
                    "server_busy",
                    f"at capacity: {self.busy_streams} streams active, and the measured "
                    f"throughput carries about {self.capacity_streams():.1f} in real time",
                )
            if self._clock() - self.late_at < self.config.late_window_s:
                return Refusal("server_busy", "behind on streams already playing; retry shortly")
            self._open_streams += 1
            stream_id = next(self._stream_ids)
        self._post(_Open(stream_id, sink))
        return stream_id

    def submit(self, stream_id: StreamId, unit: SynthesisUnit) -> None:
        self._post(_Submit(stream_id, unit, self._clock()))

    def end_stream(self, stream_id: StreamId) -> None:
        """No more units will come; ``StreamFinished`` follows the last unit's audio."""
        self._post(_End(stream_id))

    def cancel(self, stream_id: StreamId) -> None:
        """Drop the stream's queued and in-flight work at the next tick boundary. No event follows;
        output of the tick in flight may still reach the sink and must be ignored by the caller."""
        self._post(_Cancel(stream_id))

    def _post(self, op: _Control) -> None:
        if self._stopping.is_set():
            raise SchedulerStopped("scheduler is stopped")
        self._inbox.put_nowait(op)  # queue.Full is a bug: the inbox bound is far above any load

    # the model thread

    def _run(self) -> None:
        try:
            self.engine.warmup()
            self._calibrate()  # the first pass still pays one-off costs; learn from the second
            self._state.throughput = Throughput()
            self._calibrate()
        except BaseException as exc:
            log.exception("engine %s failed to warm up", self.engine.name)
            self.failed = exc
            return
        self.ready.set()
        while not self._stopping.is_set():
            self._drain_inbox(self._idle_wait_s())
            self._tick()

    def _calibrate(self) -> None:
        """Learn cost and throughput from real requests so admission starts informed: one per
        decode lane, decoded together, so the figure includes what parallel items cost each
        other."""
        lanes = self._state.lanes
        rids = [RequestId(0 if i == 0 else -100 - i) for i in range(lanes)]
        unit = SynthesisUnit(text=_CALIBRATION_TEXT, voice=self.engine.voices()[0])
        prefill = EnginePlan(prefills=tuple(PrefillItem(rid, unit) for rid in rids))
        t0 = time.perf_counter()
        result = self.engine.execute(prefill)
        audio_s = 0.0
        busy_s = result.prefill_s
        running = [rid for rid in rids
                   if rid not in {failure.request_id for failure in result.failures}]
        for _ in range(10_000):
            if not running or time.perf_counter() - t0 > 30:
                break
            plan = EnginePlan(decodes=tuple(DecodeItem(rid) for rid in running))
            step = self.engine.execute(plan)
            self._state.cost.learn(plan, step, lanes)
            busy_s += step.decode_s
            for out in step.outputs:
                audio_s += len(out.audio) / self.engine.sample_rate_hz
                if out.finished:
                    running.remove(out.request_id)
            for failure in step.failures:
                running.remove(failure.request_id)
        self._state.cost.learn(prefill, result, lanes)
        self._state.throughput.learn(audio_s, busy_s)
        for rid in rids:
            self.engine.release(rid)

    def _idle_wait_s(self) -> float:
        """How long the thread may block on the inbox: 0 with work to do, else until the first
        stream that is too far ahead comes back within ``max_lead_s`` (at most 50 ms)."""
        now = self._clock()
        state = self._state
        waits = [
            s.playout_end - now - self.config.max_lead_s
            for s in state.streams.values() if s.units
        ]
        if not waits:
            return 0.05
        return max(0.0, min(0.05, min(waits)))

    def _drain_inbox(self, wait_s: float) -> None:
        try:
            op = self._inbox.get(timeout=wait_s) if wait_s > 0 else self._inbox.get_nowait()
        except queue.Empty:
            return
        while True:
            self._apply(op)
            try:
                op = self._inbox.get_nowait()
            except queue.Empty:
                return

    def _apply(self, op: _Control) -> None:
        if isinstance(op, _Cancel) and op.stream_id in self._state.streams:
            self._stream_closed()
        events, released = apply_control(self._state, op)
        self._deliver(events)
        self._release(released)

    def _tick(self) -> None:
        now = self._clock()
        plan = schedule(self._state, now)
        self._publish(now)
        if plan.size == 0:
            return
        t0 = time.perf_counter()
        try:
            result = self.engine.execute(plan)
        except Exception:  # a bug in the engine: fail this tick's requests, keep serving the rest
            log.exception("engine %s failed a tick of %d items", self.engine.name, plan.size)
            result = _failed_result(plan)
        duration_s = time.perf_counter() - t0
        if self._observer is not None:
            self._observer.tick(plan.size, duration_s)
        events, released = update(self._state, plan, result, self._clock())
        self._deliver(events)
        self._release(released)

    def _deliver(self, events: list[tuple[Sink, StreamEvent]]) -> None:
        for sink, event in events:
            if isinstance(event, StreamFinished):
                self._stream_closed()
            try:
                sink(event)
            except Exception:  # a sink bug must not stop other streams' audio
                log.exception("stream sink failed on %s", type(event).__name__)

    def _release(self, request_ids: list[RequestId]) -> None:
        for request_id in request_ids:
            self.engine.release(request_id)

    def _stream_closed(self) -> None:
        with self._lock:
            self._open_streams -= 1

    def _publish(self, now: float) -> None:
        self.busy_streams = self._state.busy_streams(now)
        self.queue_depth = self._state.queued_units()
        if self._state.late_streams(now):
            self.late_at = now


_CALIBRATION_TEXT = (
    "This sentence measures how fast the engine speaks, so that admission starts with a fair "
    "idea of how many voices it can carry at once in real time."
)


def _failed_result(plan: EnginePlan) -> EngineResult:
    ids = [p.request_id for p in plan.prefills] + [d.request_id for d in plan.decodes]
    return EngineResult(failures=tuple(
        RequestFailure(rid, "internal_error", "the engine failed on this request") for rid in ids
    ))

