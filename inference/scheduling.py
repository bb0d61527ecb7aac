"""Deadline-aware continuous batching, the pure core: many live voices on one shared model.

The model thread that drives this core is ``inference.scheduler.Scheduler``.

The algorithm, in one place
---------------------------
A *stream* is one utterance stream of one client (a context): an ordered queue of text units, each of
which becomes one engine request when it reaches the head of the queue. Audio of a stream leaves in unit
order.

Every stream has a *playout clock*: ``playout_end``, the monotonic time at which its client will have
played all audio sent so far. Each piece of audio of ``d`` seconds moves it to
``max(playout_end, now) + d`` (a client that ran dry restarts playout when audio arrives). From it:

* deadline: when the client is playing (``playout_end > now``) the stream must get audio before
  ``playout_end - safety_margin_s``, and a next unit that has yet to speak is due the learned
  lead-in (prefill to first audio, ``SchedulerState.lead_in_s``) before that, so that its first
  audio and not just its start comes in time; when it is silent (a new utterance, or one that
  ran dry waiting for text) its head unit is due at once, so its deadline is the time the unit
  was submitted (first audio of new utterances first, oldest first among them), or
  ``first_audio_due_s`` later;
* lead: a stream already ``max_lead_s`` ahead of its playout is left alone, so spare compute goes to
  the streams that need it and output memory stays bounded; on an engine with lanes, one
  ``yield_lead_s`` ahead leaves a free lane to a planned stream with less buffered.

Each tick is three calls (see ``inference.engine``)::

    plan = schedule(state, now)        # earliest deadlines first, up to max_batch items that are
                                       # due within batch_horizon_s, within the step budget
                                       # (learned cost per prefill / decode item)
    result = engine.execute(plan)      # one batched model call per kind of work
    events = update(state, plan, result, now)   # playout clocks, finished units, events to sinks

New streams and units are admitted, and cancelled ones dropped, only between ticks (continuous
batching; a cancelled stream costs nothing after the tick in flight). Earliest-deadline-first cannot
starve a stream: a playing stream's deadline is fixed in time while newcomers' deadlines are their
(later) arrival times.

Admission: a stream that has work or is playing consumes about one second of audio per second. The
scheduler learns its engine's throughput (audio seconds per busy second) and refuses a new stream with
a typed ``Refusal`` when admitting it would push demand over ``admission_utilization`` of that
throughput (or past ``max_streams``), rather than accept work whose deadlines it cannot meet. The
estimate cannot see CPU spent outside the engine, so a missed deadline is the other signal: while a
playing stream has run dry with work still queued (and ``late_window_s`` after), newcomers are
refused too.
"""

from __future__ import annotations

import itertools
import logging
import math
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from inference.engine import (
    DecodeItem,
    EnginePlan,
    EngineResult,
    FloatAudio,
    PrefillItem,
    RequestFailure,
    RequestId,
    RequestOutput,
    SynthesisUnit,
    WordTiming,
)

log = logging.getLogger(__name__)

StreamId = int


@dataclass(frozen=True)
class SchedulerConfig:
    max_batch: int = 8
    """Most requests in one tick."""
    step_budget_ms: float = 120.0
    """Target wall time of one tick; bounds how long a new utterance waits for the next tick. On
    an engine with lanes, a window still decoding (``_Unit.pending``) costs a tick nothing and
    does not count against this or ``batch_horizon_s``: the tick does not wait for it. Counted,
    it kept a newcomer's prefill (180 ms on 2 cores, over the budget alone) out of every tick
    until the window was done, 1.25 s in one trace (docs/benchmarks.md, "A prefill waited")."""
    batch_horizon_s: float | None = 0.25
    """Beyond the most urgent item, a tick only takes items due within this horizon: work that is
    not due yet waits for a later tick instead of delaying a newcomer's first audio (on a CPU a batch
    costs the sum of its items). None batches every runnable stream (on a GPU a batch costs about
    as much as one item)."""
    max_lead_s: float = 8.0
    """A stream this far ahead of its client's playout gets no more compute until it plays down."""
    yield_lead_s: float | None = 4.0
    """On an engine with lanes (``SchedulerState.lanes`` > 1), a stream this far ahead does not
    take a free lane while a live stream with less buffered is planned, and does not count as
    competing with it (``DecodeItem.competing``): a new turn's early windows, which must arrive
    before their first short chunks play out, then decode alone instead of sharing the cores
    with a window nobody waits for, and its first chunk is a lone stream's. The deep stream
    takes lanes again once it has played down to this lead, still ahead by more than its next
    window takes to decode on a shared lane. None (in TOML, a lead no stream gets, such as
    1e9): every runnable stream fills a free lane and counts as competing."""
    safety_margin_s: float = 0.5
    """A playing stream is due this long before its client would run dry."""
    first_audio_due_s: float = 0.5
    """A silent stream's head unit is due this long after its text arrived, so a playing stream
    whose client is about to run dry (due before that) goes first, at the newcomer's expense. 0:
    a newcomer is due at once. With two Kokoro sessions on 2 cores, 0.5 halved the underruns of
    0 (docs/benchmarks.md); on a fast engine nobody waits either way. Above ``batch_horizon_s``
    a newcomer is not due within the horizon, so it joins a tick only as its most urgent item
    (on a CPU, where a batch costs the sum of its items, that loses nothing)."""
    max_streams: int = 64
    """Hard cap on streams with work at once (memory bound), whatever the throughput."""
    admission_utilization: float | None = 0.9
    """Admit while demand stays under this fraction of the measured throughput. None turns the
    throughput rule off (engines whose throughput grows with batch size, e.g. on a GPU), leaving
    ``max_streams`` as the only bound."""
    late_window_s: float = 2.0
    """After a playing stream ran dry with work still queued for it (a missed deadline), new
    streams are refused for this long, so the streams already admitted can catch up."""
    inbox_size: int = 4096
    """Bound of the queue that carries submissions from the event loop to the model thread."""


# --- events the scheduler hands to a stream's sink (called on the model thread) -------------------


@dataclass(frozen=True)
class UnitAudio:
    stream_id: StreamId
    unit_index: int
    audio: FloatAudio
    words: tuple[WordTiming, ...]
    unit_finished: bool


@dataclass(frozen=True)
class UnitFailed:
    stream_id: StreamId
    unit_index: int
    code: str
    message: str


@dataclass(frozen=True)
class StreamFinished:
    stream_id: StreamId


StreamEvent = UnitAudio | UnitFailed | StreamFinished
Sink = Callable[[StreamEvent], None]


@dataclass(frozen=True)
class Refusal:
    """Capacity said no. ``code`` is the client-visible error code."""

    code: str
    message: str


class SchedulerObserver(Protocol):
    def tick(self, plan_size: int, duration_s: float) -> None: ...


# --- state -----------------------------------------------------------------------------------------


@dataclass
class _Unit:
    index: int
    unit: SynthesisUnit
    submitted_at: float
    request_id: RequestId | None = None
    prefilled: bool = False
    started_at: float | None = None
    """When its prefill was planned (live streams only); None again once its first audio came
    (the time between is learned as ``SchedulerState.lead_in_s``)."""
    spoke: bool = False
    """Some of its audio has been delivered."""
    pending: bool = False
    """Its last decode returned no audio and did not finish: on an engine with lanes, a window
    still decoding (or a first window held back), which a tick does not run again."""


@dataclass
class _Stream:
    id: StreamId
    sink: Sink
    units: deque[_Unit] = field(default_factory=deque)
    ended: bool = False
    playout_end: float = 0.0
    next_unit_index: int = 0
    offline: bool = False
    """No client plays it in real time (a long-text job): it has no deadline and no lead limit,
    runs only when no live stream has work, and does not count toward real-time capacity."""

    def busy(self, now: float) -> bool:
        return not self.offline and (bool(self.units) or self.playout_end > now)


@dataclass
class CostModel:
    """Exponentially weighted wall time per prefill item and per decode item, learned from results."""

    prefill_s: float = 0.0
    decode_s: float = 0.0
    alpha: float = 0.2

    def learn(self, plan: EnginePlan, result: EngineResult, lanes: int = 1) -> None:
        """``lanes``: decode items the engine runs at once; ``decode_s`` is then the wall time of
        one round of them."""
        if plan.prefills:
            self.prefill_s = self._mix(self.prefill_s, result.prefill_s / len(plan.prefills))
        if plan.decodes:
            rounds = -(-len(plan.decodes) // lanes)
            self.decode_s = self._mix(self.decode_s, result.decode_s / rounds)

    def _mix(self, old: float, new: float) -> float:
        return new if old == 0.0 else (1 - self.alpha) * old + self.alpha * new


@dataclass
class Throughput:
    """Audio seconds produced per second of engine time: sums of both that forget at the rate the
    engine computes, with a time constant of ``horizon_s`` busy seconds, so prefill-only ticks
    count as the cost they are and the figure does not swing with how the audio lands. (Kokoro's
    lanes deliver a window of up to a second of compute in one tick; weighting every tick alike
    swung its estimate between 0.9 and 5.8 audio-s per busy-s within one 40 s run.)"""

    audio_s: float = 0.0
    busy_s: float = 0.0
    horizon_s: float = 20.0

    @property
    def audio_s_per_s(self) -> float:
        return self.audio_s / self.busy_s if self.busy_s > 0 and self.audio_s > 0 else 0.0

    def learn(self, audio_s: float, busy_s: float) -> None:
        if busy_s <= 0:
            return
        keep = math.exp(-busy_s / self.horizon_s)
        self.audio_s = keep * self.audio_s + audio_s
        self.busy_s = keep * self.busy_s + busy_s


@dataclass
class SchedulerState:
    """Everything the scheduling decisions read and write. Owned by the model thread."""

    config: SchedulerConfig
    sample_rate_hz: int
    streams: dict[StreamId, _Stream] = field(default_factory=dict)
    by_request: dict[RequestId, StreamId] = field(default_factory=dict)
    cost: CostModel = field(default_factory=CostModel)
    throughput: Throughput = field(default_factory=Throughput)
    lanes: int = 1
    """Decode items the engine runs at once (``inference.engine.decode_lanes``)."""
    lead_in_s: float = 0.0
    """Seconds from planning a unit's prefill to its first audio, a moving average (``deadline``).
    It includes any wait for a lane: under contention a next unit needs that long too."""
    _request_ids: itertools.count[int] = field(default_factory=lambda: itertools.count(1))

    def learn_lead_in(self, seconds: float) -> None:
        self.lead_in_s = seconds if self.lead_in_s == 0.0 else 0.7 * self.lead_in_s + 0.3 * seconds

    def new_request_id(self) -> RequestId:
        return RequestId(next(self._request_ids))

    def busy_streams(self, now: float) -> int:
        return sum(1 for s in self.streams.values() if s.busy(now))

    def late_streams(self, now: float) -> int:
        """Playing streams whose client has run dry while work for them is still queued."""
        return sum(1 for s in self.streams.values()
                   if not s.offline and s.units and 0 < s.playout_end < now)

    def queued_units(self) -> int:
        return sum(sum(1 for u in s.units if not u.prefilled) for s in self.streams.values())


# --- the three calls of a tick ------------------------------------------------------------------


def deadline(stream: _Stream, now: float, config: SchedulerConfig,
             lead_in_s: float = 0.0) -> float:
    """When the stream's head unit must next make progress (see the module note). A playing
    stream's next unit, which has yet to speak, is due ``lead_in_s`` earlier: its prefill and
    first window must be done before the client runs dry, not just begun."""
    if stream.offline:
        return math.inf
    if stream.playout_end > now:
        lead_in = 0.0 if stream.units[0].spoke else lead_in_s
        return stream.playout_end - config.safety_margin_s - lead_in
    return stream.units[0].submitted_at + config.first_audio_due_s


def schedule(state: SchedulerState, now: float) -> EnginePlan:
    """Pick the most urgent work for one tick. Pure with respect to the engine; assigns request ids
    to head units reaching the engine for the first time."""
    config = state.config
    runnable = [
        s for s in state.streams.values()
        if s.units and (s.offline or s.playout_end - now < config.max_lead_s)
    ]
    runnable.sort(key=lambda s: deadline(s, now, config, state.lead_in_s))
    if runnable and not runnable[0].offline:
        runnable = [s for s in runnable if not s.offline]  # offline work only fills idle ticks
    prefills: list[PrefillItem] = []
    decodes: list[DecodeItem] = []
    budget_s = config.step_budget_ms / 1000.0
    spent_s = 0.0
    working = False  # whether the tick holds work it waits for: a pending window is not
    horizon = None if config.batch_horizon_s is None else now + config.batch_horizon_s
    for stream in runnable[: config.max_batch]:
        head = stream.units[0]
        pending = head.prefilled and head.pending and state.lanes > 1
        if head.prefilled and len(decodes) % state.lanes:
            if _gives_way(stream, [*prefills, *decodes], state, now):
                continue
            cost = 0.0  # a lane of a round already paid for: the tick takes no longer
        elif pending:
            cost = 0.0  # its window decodes on a lane whatever this tick does
        else:
            cost = state.cost.decode_s if head.prefilled else state.cost.prefill_s
        if working:
            if cost and horizon is not None and deadline(stream, now, config,
                                                         state.lead_in_s) > horizon:
                break  # sorted by deadline: nothing after this is due either
            if spent_s + cost > budget_s:
                continue
        spent_s += cost
        working = working or not pending
        if head.prefilled:
            assert head.request_id is not None
            buffered = None if stream.offline else max(0.0, stream.playout_end - now)
            competing = sum(1 for other in state.streams.values()
                            if other is not stream and other.units and not other.offline
                            and not _deep(other, now, state))
            decodes.append(DecodeItem(head.request_id, buffered, competing))
        else:
            if head.request_id is None:
                head.request_id = state.new_request_id()
                state.by_request[head.request_id] = stream.id
            if not stream.offline:  # an offline unit may wait any time for idle ticks
                head.started_at = now
            prefills.append(PrefillItem(head.request_id, head.unit))
    return EnginePlan(prefills=tuple(prefills), decodes=tuple(decodes))


def _deep(stream: _Stream, now: float, state: SchedulerState) -> bool:
    """Whether a live stream is far enough ahead to give way (``yield_lead_s``, lanes only)."""
    lead = state.config.yield_lead_s
    return (lead is not None and state.lanes > 1 and not stream.offline
            and stream.playout_end - now >= lead)


def _gives_way(stream: _Stream, planned: Sequence[PrefillItem | DecodeItem],
               state: SchedulerState, now: float) -> bool:
    """Whether a deep stream leaves a free lane alone because a live stream with less buffered
    is planned this tick (``yield_lead_s``)."""
    if not _deep(stream, now, state):
        return False
    for item in planned:
        other = state.streams[state.by_request[item.request_id]]
        if not other.offline and not _deep(other, now, state):
            return True
    return False


def update(
    state: SchedulerState, plan: EnginePlan, result: EngineResult, now: float
) -> tuple[list[tuple[Sink, StreamEvent]], list[RequestId]]:
    """Apply a tick's result. Returns the events to deliver (with their sinks) and the request ids
    whose engine state can be released."""
    state.cost.learn(plan, result, state.lanes)
    for item in plan.prefills:
        stream = _stream_of(state, item.request_id)
        if stream is not None and stream.units and stream.units[0].request_id == item.request_id:
            stream.units[0].prefilled = True
    events: list[tuple[Sink, StreamEvent]] = []
    released: list[RequestId] = []
    audio_s = 0.0
    for out in result.outputs:
        audio_s += _apply_output(state, out, now, events, released)
    for failure in result.failures:
        _apply_failure(state, failure, events, released)
    if result.busy_s is not None:  # its lanes' overlap is measured: nothing to scale
        state.throughput.learn(audio_s, result.busy_s)
        return events, released
    # Throughput is what the engine could give with every lane busy: a tick that used fewer lanes
    # counts as the full round it could have been.
    used = min(len(plan.decodes), state.lanes)
    scale = state.lanes / used if used else 1.0
    state.throughput.learn(audio_s * scale, result.prefill_s + result.decode_s)
    return events, released


def _stream_of(state: SchedulerState, request_id: RequestId) -> _Stream | None:
    stream_id = state.by_request.get(request_id)
    return None if stream_id is None else state.streams.get(stream_id)


def _apply_output(
    state: SchedulerState,
    out: RequestOutput,
    now: float,
    events: list[tuple[Sink, StreamEvent]],
    released: list[RequestId],
) -> float:
    stream = _stream_of(state, out.request_id)
    if stream is None or not stream.units or stream.units[0].request_id != out.request_id:
        released.append(out.request_id)  # cancelled while in flight: drop silently, free state
        return 0.0
    duration_s = len(out.audio) / state.sample_rate_hz
    if duration_s > 0:
        stream.playout_end = max(stream.playout_end, now) + duration_s
    head = stream.units[0]
    head.pending = duration_s == 0 and not out.finished
    if duration_s > 0:
        head.spoke = True
        if head.started_at is not None:
            state.learn_lead_in(now - head.started_at)
            head.started_at = None
    if duration_s > 0 or out.words or out.finished:
        events.append((stream.sink, UnitAudio(stream.id, head.index, out.audio, out.words,
                                              out.finished)))
    if out.finished:
        _pop_head(state, stream, events, released)
    return duration_s


def _apply_failure(
    state: SchedulerState,
    failure: RequestFailure,
    events: list[tuple[Sink, StreamEvent]],
    released: list[RequestId],
) -> None:
    stream = _stream_of(state, failure.request_id)
    if stream is None or not stream.units or stream.units[0].request_id != failure.request_id:
        released.append(failure.request_id)
        return
    events.append((stream.sink, UnitFailed(stream.id, stream.units[0].index, failure.code,
                                           failure.message)))
    _pop_head(state, stream, events, released)


def _pop_head(
    state: SchedulerState,
    stream: _Stream,
    events: list[tuple[Sink, StreamEvent]],
    released: list[RequestId],
) -> None:
    head = stream.units.popleft()
    if head.request_id is not None:
        state.by_request.pop(head.request_id, None)
        released.append(head.request_id)
    _finish_if_done(state, stream, events)


def _finish_if_done(
    state: SchedulerState, stream: _Stream, events: list[tuple[Sink, StreamEvent]]
) -> None:
    if stream.ended and not stream.units:
        events.append((stream.sink, StreamFinished(stream.id)))
        del state.streams[stream.id]


# --- control operations, applied between ticks ------------------------------------------------------


@dataclass(frozen=True)
class _Open:
    stream_id: StreamId
    sink: Sink
    offline: bool = False


@dataclass(frozen=True)
class _Submit:
    stream_id: StreamId
    unit: SynthesisUnit
    submitted_at: float


@dataclass(frozen=True)
class _End:
    stream_id: StreamId


@dataclass(frozen=True)
class _Cancel:
    stream_id: StreamId


_Control = _Open | _Submit | _End | _Cancel


def apply_control(
    state: SchedulerState, op: _Control
) -> tuple[list[tuple[Sink, StreamEvent]], list[RequestId]]:
    """Apply one control operation. Returns events to deliver and request ids to release."""
    events: list[tuple[Sink, StreamEvent]] = []
    released: list[RequestId] = []
    if isinstance(op, _Open):
        state.streams[op.stream_id] = _Stream(op.stream_id, op.sink, offline=op.offline)
        return events, released
    stream = state.streams.get(op.stream_id)
    if stream is None:
        return events, released  # already finished or cancelled: nothing to do
    if isinstance(op, _Submit):
        stream.units.append(_Unit(stream.next_unit_index, op.unit, op.submitted_at))
        stream.next_unit_index += 1
    elif isinstance(op, _End):
        stream.ended = True
        _finish_if_done(state, stream, events)
    elif isinstance(op, _Cancel):
        for unit in stream.units:
            if unit.request_id is not None:
                state.by_request.pop(unit.request_id, None)
                released.append(unit.request_id)
        del state.streams[op.stream_id]
    return events, released
