"""Framing and pacing of Twilio audio, on a clock the test holds: whole 160-byte frames, deadlines
that never drift, a lead rebuilt after playout catches up, and lateness measured per frame."""

from __future__ import annotations

import pytest

from realtime.twilio.pacer import FramePacer, FrameSplitter, PacingSettings


def test_splitter_cuts_whole_frames_and_pads_the_last() -> None:
    splitter = FrameSplitter(160)
    assert splitter.push(b"\x01" * 100) == []
    frames = splitter.push(b"\x02" * 300)
    assert [len(f) for f in frames] == [160, 160]
    assert frames[0] == b"\x01" * 100 + b"\x02" * 60
    (last,) = splitter.flush()
    assert last == b"\x02" * 80 + b"\xff" * 80
    assert splitter.flush() == []


def test_lead_frames_go_at_once_then_one_per_frame_time() -> None:
    pacer = FramePacer(PacingSettings(frame_s=0.02, lead_s=0.1))
    now = 100.0
    for _ in range(5):  # 100 ms of lead
        assert pacer.delay_s(now) == 0.0
        pacer.sent(now)
    assert pacer.delay_s(now) == pytest.approx(0.0)  # frame 5 is due at origin + 0.1 - 0.1
    pacer.sent(now)
    assert pacer.delay_s(now) == pytest.approx(0.02)


def test_deadlines_do_not_drift_with_late_wake_ups() -> None:
    pacer = FramePacer(PacingSettings(frame_s=0.02, lead_s=0.1))
    now = 0.0
    pacer.delay_s(now)
    deadlines = []
    for _ in range(500):
        delay = pacer.delay_s(now)
        if delay > 0:
            now += delay + 0.003  # every wake-up from a sleep 3 ms late
        deadlines.append(pacer.deadline())
        assert pacer.sent(now) <= 0.0031
    assert deadlines[-1] == pytest.approx(499 * 0.02 - 0.1)  # 10 s later, still on the grid


def test_playout_catching_up_rebuilds_the_lead() -> None:
    pacer = FramePacer(PacingSettings(frame_s=0.02, lead_s=0.1))
    pacer.delay_s(0.0)
    pacer.sent(0.0)
    assert pacer.delay_s(5.0) == 0.0  # long gap: Twilio's buffer ran dry, the origin restarts
    assert pacer.sent(5.0) == 0.0
    pacer.reset()
    assert pacer.delay_s(5.001) == 0.0
