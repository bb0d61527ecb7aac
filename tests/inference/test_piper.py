"""The Piper engine through execute() plans, as the scheduler drives it, against one-pass output."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest

from inference.engine import (
    DecodeItem,
    EnginePlan,
    EngineResult,
    PrefillItem,
    RequestId,
    SynthesisUnit,
    WordTiming,
)
from inference.phonemes import phonemize, text_words
from inference.piper import HOP_SAMPLES, PiperConfig, PiperEngine, ensure_split_graphs, phoneme_ids
from tests.asr import recognize, word_overlap

SENTENCE = "Hello world, this is a test of the system."
LONGER = "Please call me back tomorrow morning, and bring the blue folder with you."


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("piper-cache")


@pytest.fixture(scope="module")
def engine(cache_dir: Path) -> PiperEngine:
    return PiperEngine(cache_dir=cache_dir)


@dataclass
class Stream:
    """What one request produced, chunk by chunk."""

    chunks: list[np.ndarray] = field(default_factory=list)
    words: list[WordTiming] = field(default_factory=list)
    audio_ms_when_reported: list[float] = field(default_factory=list)
    finished: bool = False

    @property
    def audio(self) -> np.ndarray:
        return np.concatenate(self.chunks)


def stream(engine: PiperEngine, texts: dict[int, str], speed: float = 1.0,
           ) -> tuple[dict[int, Stream], list[EngineResult]]:
    """Prefill all texts in one plan, then decode every unfinished request in each plan."""
    units = tuple(PrefillItem(RequestId(i), SynthesisUnit(t, "joe", speed)) for i, t in texts.items())
    results = [engine.execute(EnginePlan(prefills=units))]
    streams = {i: Stream() for i in texts}
    while not all(s.finished for s in streams.values()):
        live = tuple(DecodeItem(RequestId(i)) for i, s in streams.items() if not s.finished)
        results.append(engine.execute(EnginePlan(decodes=live)))
        for out in results[-1].outputs:
            s = streams[out.request_id]
            s.chunks.append(out.audio)
            s.words += out.words
            s.audio_ms_when_reported += [_ms(sum(map(len, s.chunks)))] * len(out.words)
            s.finished = out.finished
    for i in texts:
        engine.release(RequestId(i))
    return streams, results


def _ms(samples: int) -> float:
    return 1000.0 * samples / 22050


def snr_db(reference: np.ndarray, other: np.ndarray) -> float:
    noise = np.sum((reference - other) ** 2)
    return float("inf") if noise == 0 else float(10 * np.log10(np.sum(reference**2) / noise))


def test_engine_identity(engine: PiperEngine) -> None:
    assert engine.name == "piper"
    assert engine.sample_rate_hz == 22050
    assert list(engine.voices()) == ["joe"]


def test_two_requests_batched_stream_the_same_audio_as_one_pass(engine: PiperEngine) -> None:
    streams, results = stream(engine, {1: SENTENCE, 2: LONGER})
    for rid, text in ((1, SENTENCE), (2, LONGER)):
        reference = engine.synthesize_one_pass(text)
        assert len(streams[rid].audio) == len(reference)
        assert snr_db(reference, streams[rid].audio) > 60
    first_decode = results[1]
    assert len(first_decode.outputs) == 2
    assert first_decode.extras["decoder_calls"] == 1  # equal first windows share one call
    assert first_decode.decode_s > 0 and results[0].prefill_s > 0


def test_first_chunk_is_small_and_later_chunks_grow_to_full_size(engine: PiperEngine) -> None:
    streams, _ = stream(engine, {1: LONGER})
    frames = [len(c) // HOP_SAMPLES for c in streams[1].chunks]
    assert all(len(c) % HOP_SAMPLES == 0 for c in streams[1].chunks)
    assert _ms(frames[0] * HOP_SAMPLES) < 400
    assert engine.config.chunk_growth == 1.5 and engine.config.chunk_frames == 64
    assert frames[:3] == [32, 48, 64]  # each at most 1.5x the last, then full chunks
    assert set(frames[3:-1]) == {64}  # the last may be longer or shorter (chunk_end)


@pytest.mark.parametrize("bad", [{"chunk_growth": 0.5}, {"chunk_growth": float("nan")},
                                 {"first_chunk_frames": 0}, {"context_frames": -1}])
def test_config_refuses_settings_that_cannot_stream(bad: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        PiperConfig(**bad)  # type: ignore[arg-type]


def test_speed_changes_duration(engine: PiperEngine) -> None:
    normal = len(engine.synthesize_one_pass(LONGER, speed=1.0))
    fast = len(engine.synthesize_one_pass(LONGER, speed=2.0))
    slow = len(engine.synthesize_one_pass(LONGER, speed=0.5))
    assert 0.4 < fast / normal < 0.65
    assert 1.6 < slow / normal < 2.4


def test_same_text_gives_the_same_audio(engine: PiperEngine) -> None:
    assert np.array_equal(engine.synthesize_one_pass(SENTENCE), engine.synthesize_one_pass(SENTENCE))


def test_word_timings_one_per_word_in_order_inside_the_audio(engine: PiperEngine) -> None:
    streams, _ = stream(engine, {1: SENTENCE})
    s = streams[1]
    assert [w.word for w in s.words] == text_words(SENTENCE)
    assert all(0 <= w.start_ms < w.end_ms <= _ms(len(s.audio)) for w in s.words)
    assert all(a.end_ms <= b.start_ms for a, b in zip(s.words, s.words[1:]))
    # a word is reported with the chunk that completes its audio, not before
    assert all(w.end_ms <= ms + 1e-6 for w, ms in zip(s.words, s.audio_ms_when_reported))


def test_word_timings_follow_speed(engine: PiperEngine) -> None:
    normal, _ = stream(engine, {1: SENTENCE})
    slow, _ = stream(engine, {1: SENTENCE}, speed=0.5)
    assert slow[1].words[-1].end_ms > 1.6 * normal[1].words[-1].end_ms


@pytest.mark.parametrize("text", ["", "   ", "...", "!?"])
def test_unspeakable_text_is_a_failure_not_a_crash(engine: PiperEngine, text: str) -> None:
    plan = EnginePlan(prefills=(PrefillItem(RequestId(7), SynthesisUnit(text, "joe")),
                                PrefillItem(RequestId(8), SynthesisUnit("Fine.", "joe"))))
    result = engine.execute(plan)
    assert [(f.request_id, f.code) for f in result.failures] == [(7, "synthesis_failed")]
    with pytest.raises(KeyError):  # the failed request holds no state
        engine.execute(EnginePlan(decodes=(DecodeItem(RequestId(7)),)))
    engine.release(RequestId(8))


def test_unknown_voice_and_bad_speed_fail(engine: PiperEngine) -> None:
    plan = EnginePlan(prefills=(PrefillItem(RequestId(1), SynthesisUnit("Hi.", "amy")),
                                PrefillItem(RequestId(2), SynthesisUnit("Hi.", "joe", speed=0.0))))
    result = engine.execute(plan)
    assert [f.code for f in result.failures] == ["unknown_voice", "synthesis_failed"]


def test_release_frees_state(engine: PiperEngine) -> None:
    prefill = EnginePlan(prefills=(PrefillItem(RequestId(3), SynthesisUnit(SENTENCE, "joe")),))
    engine.execute(prefill)
    engine.execute(EnginePlan(decodes=(DecodeItem(RequestId(3)),)))
    engine.release(RequestId(3))
    with pytest.raises(KeyError):
        engine.execute(EnginePlan(decodes=(DecodeItem(RequestId(3)),)))
    engine.release(RequestId(3))  # unknown ids are ignored
    assert not engine.execute(prefill).failures  # the id can be used again
    engine.release(RequestId(3))


def test_streamed_speech_is_intelligible(engine: PiperEngine) -> None:
    text = "Please call me back tomorrow morning at the office."
    streams, _ = stream(engine, {1: text})
    assert word_overlap(text, recognize(streams[1].audio, engine.sample_rate_hz)) >= 0.6


def test_split_graphs_equal_the_stock_model_without_noise(cache_dir: Path) -> None:
    quiet = PiperEngine(PiperConfig(noise_scale=0.0, noise_w=0.0), cache_dir=cache_dir)
    id_map = json.loads(Path(f"{quiet.config.model_path}.json").read_text())["phoneme_id_map"]
    ids, _ = phoneme_ids(phonemize(SENTENCE), id_map)
    stock = ort.InferenceSession(str(quiet.config.model_path), providers=["CPUExecutionProvider"])
    (audio,) = stock.run(None, {"input": np.array([ids], dtype=np.int64),
                                "input_lengths": np.array([len(ids)], dtype=np.int64),
                                "scales": np.array([0.0, 1.0, 0.0], dtype=np.float32)})
    reference = np.clip(audio.reshape(-1), -1, 1)
    ours = quiet.synthesize_one_pass(SENTENCE)
    assert len(ours) == len(reference)
    assert snr_db(reference, ours) > 60


def test_split_graphs_are_cached_and_rebuilt_when_missing(engine: PiperEngine,
                                                          cache_dir: Path) -> None:
    paths = ensure_split_graphs(engine.config.model_path, cache_dir)
    stamps = [p.stat().st_mtime_ns for p in paths]
    assert ensure_split_graphs(engine.config.model_path, cache_dir) == paths
    assert [p.stat().st_mtime_ns for p in paths] == stamps
    paths[2].unlink()
    ensure_split_graphs(engine.config.model_path, cache_dir)
    assert paths[2].exists()
    assert not [p for p in paths[0].parent.iterdir() if p.suffix == ".tmp"]


def test_warmup_leaves_no_state(engine: PiperEngine) -> None:
    engine.warmup()
    assert not engine._requests
