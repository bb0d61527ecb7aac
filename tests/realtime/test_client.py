"""The client's pure parts: frame demultiplexing, word splitting, URLs and key lookup."""

from __future__ import annotations

from pathlib import Path

import pytest

from realtime.client import Demux, resolve_api_key, split_words, stream_url
from realtime.protocol import (
    AudioFrame,
    ContextDone,
    ContextStarted,
    ErrorMessage,
    Ready,
    ServerMessage,
    parse_server_message,
)


def _wire(message: ServerMessage) -> ServerMessage:
    """Round-trip through the wire format, as the client receives it."""
    return parse_server_message(message.to_wire())


def _pcm(n_samples: int, value: int) -> bytes:
    return value.to_bytes(2, "little", signed=True) * n_samples


def test_interleaved_frames_are_filed_under_their_context_in_order() -> None:
    demux = Demux()
    demux.feed(_wire(ContextStarted("a", "piper:joe", "pcm_s16le", 24000)), at_s=1.0)
    demux.feed(_wire(ContextStarted("b", "piper:joe", "pcm_s16le", 24000)), at_s=1.0)
    demux.feed(_wire(AudioFrame("a", 0, _pcm(240, 1))), at_s=1.1)
    demux.feed(_wire(AudioFrame("b", 0, _pcm(480, 2))), at_s=1.2)
    demux.feed(_wire(AudioFrame("a", 1, _pcm(240, 3))), at_s=1.3)

    a, b = demux.records["a"], demux.records["b"]
    assert bytes(a.audio) == _pcm(240, 1) + _pcm(240, 3)
    assert bytes(b.audio) == _pcm(480, 2)
    assert [(f.at_s, f.sequence) for f in a.frames] == [(1.1, 0), (1.3, 1)]
    assert a.first_audio_s == 1.1
    assert a.samples == 480 and a.audio_s == pytest.approx(0.02)
    assert a.frame_duration_s(a.frames[0]) == pytest.approx(0.01)
    assert not a.errors and not b.errors


def test_ready_and_context_started_set_the_sample_rate_of_the_audio() -> None:
    demux = Demux(sample_rate_hz=24000)
    demux.feed(_wire(Ready("s_1", 1, "piper:joe", "pcm_s16le", 16000)), at_s=0.0)
    assert demux.ready is not None and demux.ready.session_id == "s_1"
    assert demux.record("x").sample_rate_hz == 16000  # the session default from ready
    demux.feed(_wire(ContextStarted("y", "piper:joe", "pcm_s16le", 8000)), at_s=0.1)
    demux.feed(_wire(AudioFrame("y", 0, _pcm(80, 0))), at_s=0.2)
    assert demux.records["y"].audio_s == pytest.approx(0.01)


def test_a_sequence_gap_is_recorded_as_lost_data() -> None:
    demux = Demux()
    demux.feed(_wire(AudioFrame("a", 0, b"\0\0")), at_s=0.0)
    demux.feed(_wire(AudioFrame("a", 2, b"\0\0")), at_s=0.1)
    (error,) = demux.records["a"].errors
    assert error.code == "sequence_gap"
    assert demux.errors_by_code() == {"sequence_gap": 1}


def test_context_done_finishes_the_context_and_later_audio_is_flagged() -> None:
    demux = Demux()
    demux.feed(_wire(ContextStarted("a", "piper:joe", "pcm_s16le", 24000)), at_s=0.0)
    demux.feed(_wire(AudioFrame("a", 0, b"\0\0")), at_s=0.1)
    record = demux.feed(_wire(ContextDone("a", 1, 5, "completed")), at_s=0.2)
    assert record is not None and record.finished and record.done_at_s == 0.2
    assert record.done is not None and record.done.reason == "completed"
    demux.feed(_wire(AudioFrame("a", 1, b"\0\0")), at_s=0.3)
    assert [e.code for e in record.errors] == ["audio_after_done"]


def test_a_context_the_server_would_not_start_is_finished_as_refused() -> None:
    demux = Demux()
    demux.note_text("busy", "Hello ", at_s=0.0)
    record = demux.feed(_wire(ErrorMessage("server_busy", "no capacity", "busy")), at_s=0.1)
    assert record is not None and record.refused and record.finished
    assert record.done is None


def test_errors_of_a_running_context_or_of_the_session_do_not_finish_anything() -> None:
    demux = Demux()
    demux.feed(_wire(ContextStarted("a", "piper:joe", "pcm_s16le", 24000)), at_s=0.0)
    record = demux.feed(_wire(ErrorMessage("synthesis_failed", "unit failed", "a")), at_s=0.1)
    assert record is not None and not record.finished
    assert demux.feed(_wire(ErrorMessage("bad_json", "not JSON")), at_s=0.2) is None
    assert [e.code for e in demux.session_errors] == ["bad_json"]
    assert demux.errors_by_code() == {"bad_json": 1, "synthesis_failed": 1}


def test_sent_text_and_controls_are_kept_on_the_context_timeline() -> None:
    demux = Demux()
    demux.note_text("a", "Hello there, ", at_s=1.0)
    demux.note_text("a", "friend. ", at_s=1.5)
    demux.note_control("a", "close_context", at_s=2.0)
    record = demux.records["a"]
    assert [(t.at_s, t.words_total) for t in record.texts] == [(1.0, 2), (1.5, 3)]
    assert record.word_count == 3
    assert [(c.at_s, c.kind) for c in record.controls] == [(2.0, "close_context")]


def test_split_words_keeps_the_whitespace_so_pieces_join_back() -> None:
    text = "Sure, I can  help with that.\nAnything else?"
    pieces = split_words(text)
    assert pieces[:3] == ["Sure, ", "I ", "can  "]
    assert "".join(pieces) == text
    assert split_words("   ") == []


def test_stream_url_adds_the_path_and_query() -> None:
    url = stream_url("ws://127.0.0.1:8080", voice="joe", sample_rate_hz=16000)
    assert url == "ws://127.0.0.1:8080/v1/stream?format=pcm_s16le&voice=joe&sample_rate=16000"
    assert stream_url("wss://h/custom/path").startswith("wss://h/custom/path?")
    with pytest.raises(ValueError, match="not a WebSocket URL"):
        stream_url("ftp://h")


def test_api_key_comes_from_flag_then_env_then_demo_key_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "demo-api-key").write_text("demo-key\n")
    monkeypatch.delenv("TIMBRE_API_KEY", raising=False)
    assert resolve_api_key(None, tmp_path) == "demo-key"
    monkeypatch.setenv("TIMBRE_API_KEY", "env-key")
    assert resolve_api_key(None, tmp_path) == "env-key"
    assert resolve_api_key("flag-key", tmp_path) == "flag-key"
    monkeypatch.delenv("TIMBRE_API_KEY")
    assert resolve_api_key(None, tmp_path / "missing") is None
