"""Percentiles of the report, and the playout simulator's underrun accounting."""

from __future__ import annotations

import pytest

from loadtest.playout import Chunk, simulate_playout
from loadtest.stats import distribution, percentile


def test_percentile_interpolates_between_ranks_like_numpy() -> None:
    values = [10.0, 20.0, 30.0, 40.0]
    assert percentile(values, 0) == 10.0
    assert percentile(values, 50) == 25.0
    assert percentile(values, 100) == 40.0
    assert percentile(values, 95) == pytest.approx(38.5)


def test_percentile_ignores_input_order_and_handles_one_value() -> None:
    assert percentile([3.0, 1.0, 2.0], 50) == 2.0
    assert percentile([7.0], 99) == 7.0


def test_percentile_of_nothing_is_none_and_bad_q_raises() -> None:
    assert percentile([], 50) is None
    with pytest.raises(ValueError, match="0..100"):
        percentile([1.0], 101)


def test_distribution_reports_none_for_an_empty_run() -> None:
    assert distribution([]) == {
        "n": 0,
        "p50": None,
        "p95": None,
        "p99": None,
        "mean": None,
        "max": None,
    }
    summary = distribution([100.0, 200.0, 300.0])
    assert summary["n"] == 3
    assert summary["p50"] == 200.0
    assert summary["mean"] == 200.0
    assert summary["max"] == 300.0


def _steady(count: int, every_s: float, duration_s: float, start_s: float = 0.0) -> list[Chunk]:
    return [Chunk(start_s + i * every_s, duration_s) for i in range(count)]


def test_audio_faster_than_real_time_never_underruns() -> None:
    # 20 chunks of 100 ms arriving every 50 ms: always ahead of the playhead.
    playout = simulate_playout(_steady(20, 0.05, 0.1), buffer_s=0.1)
    assert playout is not None
    assert playout.underrun_count == 0
    assert playout.starved_s == 0.0
    assert playout.start_s == pytest.approx(0.1)
    assert playout.end_s == pytest.approx(0.1 + 2.0)


def test_exactly_real_time_with_no_buffer_does_not_underrun() -> None:
    # 30 ms chunks every 30 ms: each arrives as the previous finishes (float rounding included).
    playout = simulate_playout(_steady(50, 0.03, 0.03, start_s=1000.0), buffer_s=0.0)
    assert playout is not None
    assert playout.underrun_count == 0


def test_a_gap_longer_than_the_buffer_is_one_underrun_of_the_missing_time() -> None:
    # 200 ms of audio at t=0, playout starts at 0.1 and runs dry at 0.3; the next chunk is at 0.5.
    chunks = [Chunk(0.0, 0.2), Chunk(0.5, 0.2)]
    playout = simulate_playout(chunks, buffer_s=0.1)
    assert playout is not None
    assert playout.underrun_count == 1
    (underrun,) = playout.underruns
    assert underrun.at_s == pytest.approx(0.3)
    assert underrun.starved_s == pytest.approx(0.2)
    assert playout.end_s == pytest.approx(0.7)


def test_a_gap_the_buffer_absorbs_is_no_underrun() -> None:
    # Same audio, but the second chunk arrives at 0.25, before the playhead reaches 0.3.
    playout = simulate_playout([Chunk(0.0, 0.2), Chunk(0.25, 0.2)], buffer_s=0.1)
    assert playout is not None
    assert playout.underrun_count == 0
    assert playout.end_s == pytest.approx(0.5)


def test_waiting_for_first_audio_is_not_an_underrun() -> None:
    playout = simulate_playout([Chunk(3.0, 0.4), Chunk(3.1, 0.4)], buffer_s=0.1)
    assert playout is not None
    assert playout.underrun_count == 0
    assert playout.start_s == pytest.approx(3.1)


def test_several_late_chunks_add_up_their_starvation() -> None:
    chunks = [Chunk(0.0, 0.1), Chunk(0.3, 0.1), Chunk(0.3, 0.1), Chunk(1.0, 0.1)]
    playout = simulate_playout(chunks, buffer_s=0.0)
    assert playout is not None
    # dry at 0.1 until 0.3 (200 ms), then two chunks play to 0.5, dry until 1.0 (500 ms).
    assert [round(u.starved_s, 6) for u in playout.underruns] == [0.2, 0.5]
    assert playout.starved_s == pytest.approx(0.7)


def test_buffer_level_curve_rises_on_arrival_and_drains_to_zero() -> None:
    playout = simulate_playout([Chunk(0.0, 0.2), Chunk(0.5, 0.2)], buffer_s=0.1)
    assert playout is not None
    flat = [x for point in playout.level for x in point]
    expected = [(0.0, 0.0), (0.0, 0.2), (0.1, 0.2), (0.3, 0.0), (0.5, 0.0), (0.5, 0.2), (0.7, 0.0)]
    assert flat == pytest.approx([x for point in expected for x in point])


def test_no_audio_gives_no_playout_and_bad_input_raises() -> None:
    assert simulate_playout([], buffer_s=0.1) is None
    with pytest.raises(ValueError, match="out of order"):
        simulate_playout([Chunk(1.0, 0.1), Chunk(0.5, 0.1)], buffer_s=0.0)
    with pytest.raises(ValueError, match=">= 0"):
        simulate_playout([Chunk(0.0, 0.1)], buffer_s=-0.1)


def test_the_report_lists_each_utterance_with_its_underruns_and_errors() -> None:
    """``summarize`` keeps each turn's underruns, timed from the turn's first text, so a
    pattern (every utterance starving at the same point) shows in the JSON, and why a turn was
    refused."""
    from loadtest.agent import AgentOutcome, UtteranceResult
    from loadtest.runner import LoadTestConfig, LoadTestRun, summarize

    turn = UtteranceResult(session=1, turn=0, started_s=2.0, words=12, completed=True,
                           audio_s=4.0, ttfa_ms=350.0, ttfa_from_first_text_ms=600.0,
                           ttfs_ms=420.0, gaps_ms=(10.0,), underruns=((3.1, 0.25), (4.0, 0.05)),
                           level=(), error_codes=())
    refused = UtteranceResult(session=1, turn=1, started_s=6.0, words=3, completed=False,
                              audio_s=0.0, ttfa_ms=None, ttfa_from_first_text_ms=None,
                              ttfs_ms=None, gaps_ms=(), underruns=(), level=(),
                              error_codes=("server_busy",),
                              error_messages=("server_busy: at capacity",))
    run = LoadTestRun(LoadTestConfig(url="ws://x"), started_s=0.0, wall_s=10.0,
                      outcomes=[AgentOutcome(1, [turn, refused])], server_pid=None)
    report = summarize(run)
    assert report["underruns"]["count"] == 2
    assert report["per_utterance"] == [
        {"session": 1, "turn": 0, "started_s": 2.0, "words": 12, "audio_s": 4.0,
         "completed": True, "ttfa_ms": 350.0, "ttfs_ms": 420.0,
         "underruns": [[1.1, 0.25], [2.0, 0.05]], "errors": []},
        {"session": 1, "turn": 1, "started_s": 6.0, "words": 3, "audio_s": 0.0,
         "completed": False, "ttfa_ms": None, "ttfs_ms": None, "underruns": [],
         "errors": ["server_busy: at capacity"]}]


def test_time_to_first_speech_counts_the_silence_a_voice_opens_with() -> None:
    """Audio that opens with 0.4 s of silence is heard 0.4 s after its first frame plays; a
    loud sample whose frame arrives later than that is heard when it arrives; silence, or a
    format without fixed samples, has no time to first speech."""
    import numpy as np

    from loadtest.timing import first_speech_s, utterance_timing
    from realtime.demux import ContextRecord, FrameArrived, TextSent

    rate = 24000
    audio = np.zeros(rate, dtype="<i2")
    audio[int(0.4 * rate):] = 8000  # a loud tone after 0.4 s of silence
    record = ContextRecord("c", rate, texts=[TextSent(1.0, "Hello there.", 2)])
    record.audio.extend(audio.tobytes())
    half = len(record.audio) // 2
    record.frames += [FrameArrived(1.3, 0, half), FrameArrived(1.5, 1, half)]
    assert first_speech_s(record) == pytest.approx(1.7)  # 1.3 + 0.4 s of silence played
    timing = utterance_timing(record, lambda pieces: 0)
    assert timing.ttfa_ms == pytest.approx(300.0) and timing.ttfs_ms == pytest.approx(700.0)
    record.frames[1] = FrameArrived(2.5, 1, half)
    record.frames[0] = FrameArrived(1.3, 0, int(0.3 * rate) * 2)  # the tone is in a late frame
    assert first_speech_s(record) == pytest.approx(2.5)
    silent = ContextRecord("s", rate, audio=bytearray(bytes(4800)),
                           frames=[FrameArrived(1.0, 0, 4800)])
    assert first_speech_s(silent) is None
    other = ContextRecord("m", 8000, audio_format="mulaw", audio=bytearray(b"\xff" * 800),
                          frames=[FrameArrived(1.0, 0, 800)])
    assert first_speech_s(other) is None
