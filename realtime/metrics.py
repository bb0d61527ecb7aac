"""Prometheus metrics of one app instance (its own registry: no import-time globals)."""

from __future__ import annotations

from collections.abc import Callable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

_LATENCY_BUCKETS_S = (0.05, 0.1, 0.15, 0.2, 0.25, 0.3, 0.4, 0.5, 0.75, 1.0, 1.5, 2.5, 5.0)
_STEP_BUCKETS_S = (0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.15, 0.2, 0.3, 0.5, 1.0)
_BATCH_BUCKETS = (1, 2, 3, 4, 6, 8, 12, 16, 32, 64, 128)


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.active_sessions = Gauge("timbre_active_sessions", "Open client sessions",
                                     registry=r)
        self.active_contexts = Gauge("timbre_active_contexts", "Contexts being spoken",
                                     registry=r)
        self.queue_depth = Gauge("timbre_queue_depth",
                                 "Text units waiting for the engine, per engine", ["engine"],
                                 registry=r)
        self.busy_streams = Gauge("timbre_busy_streams",
                                  "Streams with work or audio playing, per engine", ["engine"],
                                  registry=r)
        self.capacity_streams = Gauge("timbre_capacity_streams",
                                      "Streams the measured throughput can carry, per engine",
                                      ["engine"], registry=r)
        self.ttfa = Histogram("timbre_time_to_first_audio_seconds",
                              "First speakable unit submitted -> first audio frame queued",
                              buckets=_LATENCY_BUCKETS_S, registry=r)
        self.step = Histogram("timbre_step_duration_seconds", "Wall time of one engine tick",
                              buckets=_STEP_BUCKETS_S, registry=r)
        self.batch = Histogram("timbre_batch_size", "Requests in one engine tick",
                               buckets=_BATCH_BUCKETS, registry=r)
        self.underruns = Counter("timbre_client_underruns",
                                 "Playout underruns reported by clients", registry=r)
        self.errors = Counter("timbre_errors", "Errors sent to clients, by code", ["code"],
                              registry=r)
        self.audio_seconds = Counter("timbre_audio_seconds", "Audio seconds sent to clients",
                                     registry=r)
        self.characters = Counter("timbre_characters", "Characters synthesised", registry=r)
        self.dropped_frames = Counter(
            "timbre_dropped_frames",
            "Audio frames discarded because their context was cancelled or the client left",
            registry=r,
        )
        self._collectors: list[Callable[[], None]] = []

    def on_collect(self, fn: Callable[[], None]) -> None:
        """Register a callback that refreshes gauges right before each scrape."""
        self._collectors.append(fn)

    def render(self) -> bytes:
        for fn in self._collectors:
            fn()
        return generate_latest(self.registry)


class StepObserver:
    """Adapter the scheduler calls on its model thread (prometheus_client is thread-safe)."""

    def __init__(self, metrics: Metrics) -> None:
        self._metrics = metrics

    def tick(self, plan_size: int, duration_s: float) -> None:
        self._metrics.step.observe(duration_s)
        self._metrics.batch.observe(plan_size)
