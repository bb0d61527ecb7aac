"""The scheduler against a fake engine: deadline order, admission, cancel, no starvation."""

from __future__ import annotations

import re
import threading
import time
from dataclasses import dataclass, field, replace

import numpy as np
import pytest

from inference.engine import (
    EnginePlan,
    EngineResult,
    RequestId,
    RequestOutput,
    SynthesisUnit,
    decode_lanes,
)
from inference.scheduler import Scheduler
from inference.scheduling import (
    Refusal,
    SchedulerConfig,
    SchedulerState,
    StreamEvent,
    StreamFinished,
    Throughput,
    UnitAudio,
    UnitFailed,
    _Cancel,
    _End,
    _Open,
    _Submit,
    apply_control,
    schedule,
    update,
)
from tests.inference.fake_engine import FakeEngine, LanedFakeEngine


def unit(text: str) -> SynthesisUnit:
    return SynthesisUnit(text=text, voice="v")


@dataclass
class Harness:
    """Drives the scheduler's pure core with a manual clock, the way the model thread does."""

    config: SchedulerConfig = field(default_factory=SchedulerConfig)
    engine: FakeEngine = field(default_factory=FakeEngine)
    now: float = 0.0
    events: dict[int, list[StreamEvent]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.state = SchedulerState(self.config, self.engine.sample_rate_hz,
                                    lanes=decode_lanes(self.engine))

    def open(self, stream_id: int) -> None:
        self.events[stream_id] = []
        self._control(_Open(stream_id, self.events[stream_id].append))

    def submit(self, stream_id: int, text: str) -> None:
        self._control(_Submit(stream_id, unit(text), self.now))

    def end(self, stream_id: int) -> None:
        self._control(_End(stream_id))

    def cancel(self, stream_id: int) -> None:
        self._control(_Cancel(stream_id))

    def _control(self, op: object) -> None:
        events, released = apply_control(self.state, op)  # type: ignore[arg-type]
        self._deliver(events, released)

    def tick(self, advance_s: float = 0.0):
        plan = schedule(self.state, self.now)
        if plan.size == 0:
            self.now += advance_s
            return plan
        result = self.engine.execute(plan)
        self.now += advance_s
        events, released = update(self.state, plan, result, self.now)
        self._deliver(events, released)
        return plan

    def _deliver(self, events, released) -> None:
        for sink, event in events:
            sink(event)
        for rid in released:
            self.engine.release(rid)

    def audio_events(self, stream_id: int) -> list[UnitAudio]:
        return [e for e in self.events[stream_id] if isinstance(e, UnitAudio)]


def stream_of(h: Harness, request_id: int) -> int:
    return h.state.by_request[request_id]


def test_new_utterances_come_first_oldest_first() -> None:
    """Newcomers due at once go ahead of a playing stream with audio left, oldest first."""
    h = Harness(SchedulerConfig(max_batch=1, safety_margin_s=0.05, first_audio_due_s=0.0))
    h.open(1)
    h.submit(1, "a b c d e f g h")
    for _ in range(4):  # prefill + 3 words: stream 1 is now playing with 0.3 s buffered
        h.tick()
    h.now += 0.01
    h.open(2)
    h.submit(2, "x y")
    h.now += 0.01
    h.open(3)
    h.submit(3, "z")
    plan = h.tick()
    assert [stream_of(h, p.request_id) for p in plan.prefills] == [2]
    plan = h.tick()  # stream 2's first audio before stream 3's prefill: FIFO among newcomers
    assert [stream_of(h, d.request_id) for d in plan.decodes] == [2]
    plan = h.tick()
    assert [stream_of(h, p.request_id) for p in plan.prefills] == [3]


def test_playing_stream_that_is_about_to_run_dry_beats_a_newcomer() -> None:
    h = Harness(SchedulerConfig(max_batch=1, safety_margin_s=0.5))
    h.open(1)
    h.submit(1, "a b c d e f")
    h.tick()  # prefill
    h.tick()  # 0.1 s of audio: playout_end = 0.1, due at -0.4 (already late)
    h.open(2)
    h.submit(2, "x")
    plan = h.tick()
    assert [d.request_id for d in plan.decodes] and stream_of(h, plan.decodes[0].request_id) == 1


@pytest.mark.parametrize(("due_s", "first"), [(0.0, 2), (0.5, 1)])
def test_first_audio_due_lets_a_stream_near_its_end_go_before_a_newcomer(
        due_s: float, first: int) -> None:
    """A newcomer's unit is due ``first_audio_due_s`` after its text arrived: at once (0) it goes
    ahead of a stream with 0.6 s left to play (due in 0.1 s); due in 0.5 s, it goes after."""
    h = Harness(SchedulerConfig(max_batch=1, safety_margin_s=0.5, first_audio_due_s=due_s))
    h.open(1)
    h.submit(1, "a b c d e f g h i j")
    for _ in range(7):  # prefill + 6 words: 0.6 s buffered
        h.tick()
    h.open(2)
    h.submit(2, "x")
    plan = h.tick()
    assert stream_of(h, (plan.prefills or plan.decodes)[0].request_id) == first


def test_streams_far_ahead_of_playout_get_no_compute() -> None:
    h = Harness(SchedulerConfig(max_batch=4, max_lead_s=0.25))
    h.open(1)
    h.submit(1, "a b c d e f g h")
    for _ in range(4):
        h.tick()
    assert len(h.audio_events(1)) == 3  # 0.3 s ahead: over the 0.25 s lead
    assert schedule(h.state, h.now).size == 0
    h.now += 0.1  # the client played 0.1 s
    assert schedule(h.state, h.now).size == 1


def test_batch_is_capped_and_covers_most_urgent_first() -> None:
    h = Harness(SchedulerConfig(max_batch=3))
    for s in range(1, 6):
        h.open(s)
        h.now += 0.01
        h.submit(s, "a b")
    plan = h.tick()
    assert [stream_of(h, p.request_id) for p in plan.prefills] == [1, 2, 3]


def test_step_budget_limits_the_tick_but_always_runs_one_item() -> None:
    # newcomers due at once: all within the batch horizon, so only the budget bounds the tick
    h = Harness(SchedulerConfig(max_batch=8, step_budget_ms=25, first_audio_due_s=0.0),
                FakeEngine(prefill_cost_s=0.02))
    for s in range(1, 4):
        h.open(s)
        h.submit(s, "a b")
    assert h.tick().size == 3  # costs unknown yet: the batch cap is the only bound
    for s in range(4, 7):
        h.open(s)
        h.submit(s, "a b")
    plan = h.tick()
    # learned: prefill 20 ms, decode 0 so far; budget 25 ms => one prefill plus the decodes
    assert len(plan.prefills) == 1
    h2 = Harness(SchedulerConfig(max_batch=8, step_budget_ms=1), FakeEngine(prefill_cost_s=0.02))
    h2.open(1)
    h2.submit(1, "a")
    h2.tick()
    h2.open(2)
    h2.submit(2, "b")
    assert h2.tick().size >= 1


def test_units_of_a_stream_play_in_order_and_stream_finishes_after_last() -> None:
    h = Harness()
    h.open(1)
    h.submit(1, "one two")
    h.submit(1, "three")
    h.end(1)
    for _ in range(10):
        h.tick()
    events = h.events[1]
    assert isinstance(events[-1], StreamFinished)
    words = [w.word for e in events if isinstance(e, UnitAudio) for w in e.words]
    assert words == ["one", "two", "three"]
    assert [e.unit_index for e in events if isinstance(e, UnitAudio)] == [0, 0, 1]
    assert 1 not in h.state.streams
    assert sorted(h.engine.released) == sorted(set(h.engine.released))  # each freed once
    assert len(h.engine.released) == 2


def test_cancel_drops_queued_and_in_flight_work_between_ticks() -> None:
    h = Harness(SchedulerConfig(max_batch=4))
    h.open(1)
    h.submit(1, "a b c d e f g h i j")
    h.submit(1, "k l m")
    h.open(2)
    h.submit(2, "x y z")
    h.tick()
    h.tick()
    in_flight = [rid for rid, sid in h.state.by_request.items() if sid == 1]
    before = len(h.events[1])
    h.cancel(1)
    assert set(in_flight) <= set(h.engine.released)
    for _ in range(6):
        plan = h.tick()
        assert all(h.state.by_request.get(d.request_id) != 1 for d in plan.decodes)
    assert len(h.events[1]) == before  # nothing more for the cancelled stream
    assert [w.word for e in h.audio_events(2) for w in e.words] == ["x", "y", "z"]


def test_output_of_a_tick_in_flight_during_cancel_is_dropped() -> None:
    h = Harness()
    h.open(1)
    h.submit(1, "a b c")
    h.tick()
    plan = schedule(h.state, h.now)
    result = h.engine.execute(plan)
    h.cancel(1)  # arrives while the tick runs
    events, released = update(h.state, plan, result, h.now)
    assert events == []
    assert released == [plan.decodes[0].request_id]


def test_no_starvation_under_a_stream_of_newcomers() -> None:
    h = Harness(SchedulerConfig(max_batch=1, safety_margin_s=0.3, max_lead_s=5))
    h.open(1)
    h.submit(1, " ".join(["w"] * 30))
    h.end(1)
    for i in range(2, 200):
        h.open(i)
        h.submit(i, "n")
        h.end(i)
        h.tick(advance_s=0.02)
        if not any(isinstance(e, StreamFinished) for e in h.events[1]):
            continue
        break
    assert any(isinstance(e, StreamFinished) for e in h.events[1]), "long stream starved"


def test_a_failed_unit_is_reported_and_the_stream_goes_on() -> None:
    h = Harness()
    h.open(1)
    h.submit(1, "FAIL")
    h.submit(1, "ok")
    h.end(1)
    for _ in range(5):
        h.tick()
    kinds = [type(e).__name__ for e in h.events[1]]
    assert kinds == ["UnitFailed", "UnitAudio", "StreamFinished"]
    failed = h.events[1][0]
    assert isinstance(failed, UnitFailed) and failed.code == "synthesis_failed"


# --- the threaded scheduler -----------------------------------------------------------------------


class Collector:
    def __init__(self) -> None:
        self.events: list[StreamEvent] = []
        self.done = threading.Event()

    def __call__(self, event: StreamEvent) -> None:
        self.events.append(event)
        if isinstance(event, StreamFinished):
            self.done.set()


@pytest.fixture
def running():
    schedulers: list[Scheduler] = []

    def start(engine: FakeEngine | None = None, **config) -> Scheduler:
        s = Scheduler(engine or FakeEngine(prefill_cost_s=0, decode_cost_s=0),
                      SchedulerConfig(**config))
        s.start()
        assert s.ready.wait(5)
        schedulers.append(s)
        return s

    yield start
    for s in schedulers:
        s.stop()


def test_threaded_scheduler_serves_concurrent_streams(running) -> None:
    scheduler = running(max_lead_s=100)
    collectors = []
    for i in range(6):
        c = Collector()
        sid = scheduler.open_stream(c)
        assert not isinstance(sid, Refusal)
        scheduler.submit(sid, unit(f"hello number {i}"))
        scheduler.submit(sid, unit("and more"))
        scheduler.end_stream(sid)
        collectors.append(c)
    for c in collectors:
        assert c.done.wait(5)
        words = [w.word for e in c.events if isinstance(e, UnitAudio) for w in e.words]
        assert words[-2:] == ["and", "more"] and len(words) == 5


def test_engine_bug_fails_only_that_tick(running) -> None:
    scheduler = running(max_lead_s=100, max_batch=1)
    bad, good = Collector(), Collector()
    sid_bad = scheduler.open_stream(bad)
    scheduler.submit(sid_bad, unit("CRASH"))
    scheduler.end_stream(sid_bad)
    sid_good = scheduler.open_stream(good)
    scheduler.submit(sid_good, unit("fine words"))
    scheduler.end_stream(sid_good)
    assert bad.done.wait(5) and good.done.wait(5)
    assert isinstance(bad.events[0], UnitFailed) and bad.events[0].code == "internal_error"
    assert any(isinstance(e, UnitAudio) for e in good.events)


def test_admission_refuses_beyond_max_streams_and_frees_slots(running) -> None:
    scheduler = running(max_streams=2, admission_utilization=None)
    a, b = Collector(), Collector()
    sid_a = scheduler.open_stream(a)
    scheduler.open_stream(b)
    refused = scheduler.open_stream(Collector())
    assert isinstance(refused, Refusal) and refused.code == "server_busy"
    assert not isinstance(sid_a, Refusal)
    scheduler.cancel(sid_a)
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        again = scheduler.open_stream(Collector())
        if not isinstance(again, Refusal):
            break
        time.sleep(0.01)
    assert not isinstance(again, Refusal)


def test_admission_follows_measured_throughput(running) -> None:
    # 0.1 s of audio per 0.05 s decode => 2 s of audio per second => about 1.8 streams at 0.9
    engine = FakeEngine(prefill_cost_s=0.0, decode_cost_s=0.05)
    scheduler = running(engine, max_streams=50, admission_utilization=0.9, max_lead_s=100)
    assert scheduler.capacity_streams() == pytest.approx(1.8, rel=0.2)
    c = Collector()
    sid = scheduler.open_stream(c)
    assert not isinstance(sid, Refusal)
    scheduler.submit(sid, unit(" ".join(["w"] * 40)))
    deadline = time.monotonic() + 5
    while scheduler.busy_streams < 1 and time.monotonic() < deadline:
        time.sleep(0.01)
    second = scheduler.open_stream(Collector())
    assert isinstance(second, Refusal), "demand 2 exceeds a capacity of ~1.8 streams"
    # one decimal: "about 2" while refusing a second stream read as a contradiction
    assert re.search(r"1 streams active, .* about 1\.\d in real time", second.message), \
        second.message


def test_an_idle_engine_takes_one_stream_even_below_one_real_time_stream(running) -> None:
    # 0.1 s of audio per 0.12 s decode => about 0.75 streams at 0.9: still one at a time
    engine = FakeEngine(prefill_cost_s=0.0, decode_cost_s=0.12)
    scheduler = running(engine, max_streams=50, admission_utilization=0.9, max_lead_s=100)
    assert scheduler.capacity_streams() < 1.0
    first = scheduler.open_stream(Collector())
    assert not isinstance(first, Refusal)
    scheduler.submit(first, unit(" ".join(["w"] * 40)))
    deadline = time.monotonic() + 5
    while scheduler.busy_streams < 1 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert isinstance(scheduler.open_stream(Collector()), Refusal)


def test_work_that_is_not_due_does_not_delay_a_newcomer() -> None:
    for horizon, expected in ((0.25, 1), (None, 2)):
        h = Harness(SchedulerConfig(max_batch=8, batch_horizon_s=horizon, safety_margin_s=0.1))
        h.open(1)
        h.submit(1, " ".join(["w"] * 40))
        for _ in range(11):  # prefill + 10 words: 1 s buffered, due in 0.9 s
            h.tick()
        h.open(2)
        h.submit(2, "newcomer")
        plan = h.tick()
        assert plan.size == expected
        assert stream_of(h, plan.prefills[0].request_id) == 2


@pytest.mark.parametrize(("lead_in_s", "planned"), [(0.0, 1), (0.8, 2)])
def test_a_next_unit_is_due_its_learned_lead_in_early(lead_in_s: float, planned: int) -> None:
    """A playing stream's next unit must speak before its client runs dry, so it is due the
    time units take from prefill to first audio (here the first unit's) before the usual
    deadline: with 1 s buffered and a 0.8 s lead-in it is due within the horizon and joins a
    newcomer's tick; with no lead-in it waits."""
    h = Harness(SchedulerConfig(max_batch=8, batch_horizon_s=0.25, safety_margin_s=0.1,
                                first_audio_due_s=0.0))
    h.open(1)
    h.submit(1, " ".join(["w"] * 10))
    h.submit(1, "next unit")
    h.tick(advance_s=lead_in_s)  # the first unit's prefill takes the lead-in
    for _ in range(10):  # its 10 words at once: 1 s buffered, the next unit is the head
        h.tick()
    assert h.state.lead_in_s == pytest.approx(lead_in_s)
    h.open(2)
    h.submit(2, "newcomer")
    plan = h.tick()
    assert plan.size == planned
    assert stream_of(h, plan.prefills[0].request_id) == 2
    if planned == 2:
        assert stream_of(h, plan.prefills[1].request_id) == 1


def test_offline_streams_only_use_ticks_no_live_stream_needs() -> None:
    h = Harness(SchedulerConfig(max_batch=4, max_lead_s=0.25))
    h.open(1)
    h.state.streams[1].offline = True
    h.submit(1, " ".join(["book"] * 20))
    h.open(2)
    h.submit(2, "live words here")
    plan = h.tick()
    assert [stream_of(h, p.request_id) for p in plan.prefills] == [2]  # live first, alone
    live = plan.prefills[0].request_id
    assert h.state.busy_streams(h.now) == 1  # the offline stream is not real-time demand
    for _ in range(2):
        plan = h.tick()
        assert plan.prefills == () and [d.request_id for d in plan.decodes] == [live]
    for _ in range(25):  # the live stream is done: the book runs on, with no lead limit
        h.tick(advance_s=0.5)
    assert len(h.audio_events(1)) == 20
    assert h.state.lead_in_s == 0.0  # only live units' waits are a next unit's lead-in


def test_decode_items_carry_what_the_client_has_buffered() -> None:
    """A live stream's decode item says how much audio its client holds unplayed (the engine
    may size its step to it); an offline stream's says nothing."""
    h = Harness(SchedulerConfig(max_batch=1))
    h.open(1)
    h.submit(1, "a b c d")
    h.tick()  # prefill
    plan = h.tick()
    assert plan.decodes[0].buffered_s == 0.0  # nothing played yet: silence
    h.tick()
    h.tick()  # 0.3 s of audio sent
    h.now += 0.05
    plan = h.tick()
    assert plan.decodes[0].buffered_s == pytest.approx(0.25)
    offline = Harness(SchedulerConfig(max_batch=1))
    offline.open(1)
    offline.state.streams[1].offline = True
    offline.submit(1, "a long book")
    offline.tick()  # prefill
    assert offline.tick().decodes[0].buffered_s is None


def test_decode_items_count_the_other_streams_with_work() -> None:
    """``competing`` counts the other live streams with units queued: not the item's own, not
    an offline one, not one whose work is all sent."""
    h = Harness(SchedulerConfig(max_batch=1))
    h.open(1)
    h.submit(1, " ".join(["word"] * 40))
    h.tick()  # prefill
    assert h.tick().decodes[0].competing == 0
    h.open(3)
    h.state.streams[3].offline = True
    h.submit(3, "a long book")
    assert h.tick().decodes[0].competing == 0
    h.open(2)
    h.submit(2, "e f")
    seen = {}
    while h.state.streams[2].units:
        for item in h.tick().decodes:
            seen.setdefault(item.request_id, set()).add(item.competing)
    assert list(seen.values()) == [{1}, {1}]  # stream 1 and stream 2, each beside the other
    assert h.tick().decodes[0].competing == 0


def test_a_missed_deadline_refuses_newcomers_for_a_while() -> None:
    clock = [100.0]
    scheduler = Scheduler(FakeEngine(prefill_cost_s=0, decode_cost_s=0),
                          SchedulerConfig(late_window_s=2.0, admission_utilization=None),
                          clock=lambda: clock[0])
    scheduler.ready.set()  # driven by hand: no model thread
    state = scheduler._state
    apply_control(state, _Open(1, lambda e: None))
    apply_control(state, _Submit(1, unit("a b c"), clock[0]))
    state.streams[1].playout_end = 99.5  # its client ran dry half a second ago; work is queued
    scheduler._publish(clock[0])
    refused = scheduler.open_stream(Collector())
    assert isinstance(refused, Refusal) and "behind" in refused.message
    clock[0] += 2.5
    state.streams[1].units.clear()
    scheduler._publish(clock[0])
    assert not isinstance(scheduler.open_stream(Collector()), Refusal)


def _two_buffered_streams(h: Harness) -> None:
    """Two streams with about 1 s of audio buffered each: neither is due within the horizon."""
    for sid in (1, 2):
        h.open(sid)
        h.submit(sid, " ".join(["w"] * 40))
    for _ in range(40):
        h.tick()
        if all(len(h.audio_events(sid)) >= 10 for sid in (1, 2)):
            break


def test_a_laned_engine_decodes_one_item_per_lane_in_a_tick() -> None:
    config = SchedulerConfig(max_batch=8, step_budget_ms=60, batch_horizon_s=0.25)
    serial = Harness(config, FakeEngine(prefill_cost_s=0.0, decode_cost_s=0.05))
    laned = Harness(config, LanedFakeEngine(prefill_cost_s=0.0, decode_cost_s=0.05, lanes=2))
    for h in (serial, laned):
        _two_buffered_streams(h)
    # One item fills a serial engine's budget; a second lane costs no extra wall time.
    assert serial.tick().size == 1
    plan = laned.tick()
    assert len(plan.decodes) == 2 and {stream_of(laned, d.request_id) for d in plan.decodes} \
        == {1, 2}


@pytest.mark.parametrize("yield_lead_s", [4.0, None])
def test_a_stream_far_ahead_leaves_a_free_lane_to_a_new_turn(yield_lead_s) -> None:
    """A stream 6 s ahead neither takes the second lane while a new turn is planned nor counts
    as competing with it (``yield_lead_s``); once played down below that lead, or with the
    rule off, it fills the lane and competes."""
    config = SchedulerConfig(max_batch=8, step_budget_ms=1000, yield_lead_s=yield_lead_s,
                             admission_utilization=None)
    h = Harness(config, LanedFakeEngine(prefill_cost_s=0.0, decode_cost_s=0.05, lanes=2))
    for sid in (1, 2):
        h.open(sid)
        h.submit(sid, " ".join(["w"] * 40))
    h.tick()  # both prefills
    h.state.streams[1].playout_end = h.now + 6.0
    plan = h.tick()
    streams = [stream_of(h, item.request_id) for item in plan.decodes]
    competing = {stream_of(h, item.request_id): item.competing for item in plan.decodes}
    if yield_lead_s is None:
        assert sorted(streams) == [1, 2] and competing == {1: 1, 2: 1}
        return
    assert streams == [2] and competing == {2: 0}
    h.state.streams[1].playout_end = h.now + 3.0
    plan = h.tick()
    assert sorted(stream_of(h, item.request_id) for item in plan.decodes) == [1, 2]
    assert all(item.competing == 1 for item in plan.decodes)


def test_a_stream_far_ahead_still_competes_on_an_engine_without_lanes() -> None:
    """Without lanes there is no free lane to leave: a stream far ahead counts as competing."""
    h = Harness(SchedulerConfig(max_batch=1, admission_utilization=None))
    for sid in (1, 2):
        h.open(sid)
        h.submit(sid, " ".join(["w"] * 40))
    while not all(h.state.streams[sid].units[0].prefilled for sid in (1, 2)):
        h.tick()
    h.state.streams[1].playout_end = h.now + 6.0
    plan = h.tick()
    assert [stream_of(h, item.request_id) for item in plan.decodes] == [2]
    assert plan.decodes[0].competing == 1


@dataclass
class WindowsOutliveTicks(LanedFakeEngine):
    """A laned engine whose windows take ``ticks`` ticks each, as Kokoro's lanes do: until its
    window is done a planned request gets no audio and is not finished."""

    ticks: int = 20
    waited: dict[RequestId, int] = field(default_factory=dict)

    def execute(self, plan: EnginePlan) -> EngineResult:
        done, decoding = [], []
        for item in plan.decodes:
            self.waited[item.request_id] = self.waited.get(item.request_id, 0) + 1
            (done if self.waited[item.request_id] == self.ticks else decoding).append(item)
        for item in done:
            self.waited[item.request_id] = 0
        result = super().execute(replace(plan, decodes=tuple(done)))
        empty = tuple(RequestOutput(item.request_id, np.zeros(0, np.float32))
                      for item in decoding)
        return EngineResult(result.outputs + empty, result.failures,
                            prefill_s=result.prefill_s, decode_s=self.decode_cost_s)


def test_a_window_decoding_on_a_lane_does_not_hold_back_a_prefill() -> None:
    """A tick that starts a window takes a newcomer's prefill only once it is due (the batch
    horizon) and within the step budget, as on one lane. But a window still decoding on its
    lane costs the next ticks nothing: they take a newcomer's prefill at once. Before, the
    window's stream kept coming first, and a 180 ms prefill waited for its whole window."""
    config = SchedulerConfig(max_batch=8, step_budget_ms=120, batch_horizon_s=0.25,
                             admission_utilization=None)
    h = Harness(config, WindowsOutliveTicks(prefill_cost_s=0.18, decode_cost_s=0.02, lanes=2))
    h.open(1)
    h.submit(1, "a b c")
    h.tick()  # its prefill
    h.open(2)
    h.submit(2, "x y")
    plan = h.tick()  # stream 1's window starts: stream 2's first audio is not due yet
    assert plan.prefills == () and [stream_of(h, d.request_id) for d in plan.decodes] == [1]
    plan = h.tick()
    assert [stream_of(h, p.request_id) for p in plan.prefills] == [2]
    assert [stream_of(h, d.request_id) for d in plan.decodes] == [1]


def test_a_laned_engine_learns_the_cost_of_a_round_and_its_full_throughput() -> None:
    h = Harness(SchedulerConfig(max_batch=8, batch_horizon_s=None, step_budget_ms=1000),
                LanedFakeEngine(prefill_cost_s=0.0, decode_cost_s=0.05, lanes=2))
    h.open(1)
    h.submit(1, " ".join(["w"] * 5))
    h.tick()  # prefill
    h.tick()  # one decode, one lane idle
    assert h.state.cost.decode_s == pytest.approx(0.05)
    # 0.1 s of audio in 0.05 s on one lane: 4 audio-s per s with both lanes busy
    assert h.state.throughput.audio_s_per_s == pytest.approx(4.0)
    h.open(2)
    h.submit(2, " ".join(["w"] * 5))
    h.tick()  # prefill of 2 (and 1's decode)
    plan = h.tick()
    assert len(plan.decodes) == 2
    assert h.state.cost.decode_s == pytest.approx(0.05)  # a round of two costs one item's time


def test_throughput_holds_steady_when_audio_lands_in_lumps() -> None:
    """Kokoro's lanes deliver a second's window of audio in one tick after fifty empty ones: the
    estimate must stay near the true rate (3 audio-s per s) at every tick, not swing with them."""
    throughput = Throughput()
    seen = []
    for _ in range(60):  # a minute of engine time
        for _ in range(49):
            throughput.learn(0.0, 0.02)
            seen.append(throughput.audio_s_per_s)
        throughput.learn(3.0, 0.02)
        seen.append(throughput.audio_s_per_s)
    assert min(seen[-1000:]) > 2.7 and max(seen[-1000:]) < 3.3


@dataclass
class MeasuredLanesEngine(LanedFakeEngine):
    """A laned engine that reports the time it computed (``EngineResult.busy_s``), as one whose
    windows outlast the tick does (Kokoro's lanes)."""

    def execute(self, plan: EnginePlan) -> EngineResult:
        result = super().execute(plan)
        return replace(result, busy_s=result.prefill_s + result.decode_s)


def test_an_engine_that_measures_its_busy_time_is_taken_at_its_word() -> None:
    """A lone item on two lanes counts for a full round when the engine reports only the tick's
    time; an engine that measures its busy time (its lanes may overlap any way) is not
    scaled."""
    learned = {}
    for engine in (LanedFakeEngine(prefill_cost_s=0.0, decode_cost_s=0.05, lanes=2),
                   MeasuredLanesEngine(prefill_cost_s=0.0, decode_cost_s=0.05, lanes=2)):
        h = Harness(SchedulerConfig(batch_horizon_s=None, step_budget_ms=1000), engine)
        h.open(1)
        h.submit(1, " ".join(["w"] * 5))
        h.tick()  # prefill
        h.tick()  # one decode: 0.1 s of audio in 0.05 s
        learned[type(engine)] = h.state.throughput.audio_s_per_s
    assert learned[LanedFakeEngine] == pytest.approx(4.0)
    assert learned[MeasuredLanesEngine] == pytest.approx(2.0)


def test_admission_counts_every_lane(running) -> None:
    # 0.1 s of audio per 0.08 s round: 1.25 streams per lane, about 2.25 on two at 0.9
    engine = LanedFakeEngine(prefill_cost_s=0.0, decode_cost_s=0.08, lanes=2)
    scheduler = running(engine, max_streams=50, admission_utilization=0.9, max_lead_s=100)
    assert scheduler.capacity_streams() == pytest.approx(2.25, rel=0.2)
    streams = []
    for _ in range(2):
        sid = scheduler.open_stream(Collector())
        assert not isinstance(sid, Refusal)
        scheduler.submit(sid, unit(" ".join(["w"] * 40)))
        streams.append(sid)
    deadline = time.monotonic() + 5
    while scheduler.busy_streams < 2 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert isinstance(scheduler.open_stream(Collector()), Refusal), "a third exceeds ~2.25"
