"""The Kokoro engine: text -> aligned frames once per request, then the decoder window by window.

Graphs and assets are in ``inference.kokoro_graph``, phonemes in ``inference.kokoro_text``, voices
in ``inference.kokoro_voice``. A prefill runs the frontend (PL-BERT, durations, pitch, energy,
alignment, the sine source's phase) for the whole unit: about 0.1 s for a sentence. Each decode
step then turns frames [start, end) into audio by decoding [start - context, end + context] and
keeping the middle, like ``inference.piper`` (the first window, with nothing before it, keeps all
but its last ``first_context_frames``); the first chunk is small so first audio is fast, later
ones larger so less is spent on context.

Streamed vs one pass. Kokoro's decoder normalises every AdaIN block over the whole utterance
(instance norm over time), so no window can reproduce one pass bit for bit; it reproduces it
exactly only when the window is the whole utterance. What chunking keeps exact is everything that
depends on the whole text (durations, pitch, energy, the harmonic phase, all computed once in the
prefill); what differs is each window's normalisation statistics, which changes the waveform's
fine structure (on the test sentence: waveform SNR 3.5 dB against one pass, magnitude-STFT SNR
12.5 dB) while the spectrum, pitch and words stay (the test recogniser hears the same words).
The longer the window, the closer its statistics come to one pass's, hence the generous context.
Consecutive chunks are joined with a short crossfade over audio both windows decoded, so a seam
cannot click.

Batching: the exported graph declares batch 1 on its inputs, and on a CPU a batched decoder call
costs about the sum of its items (see ARCHITECTURE.md), so each decode item is one decoder call.

Decoders (``KokoroConfig.decoder``): ONNX Runtime runs the stock int8 graph as exported, one
item after another, each on ``intra_op_threads`` threads. The PyTorch decoder
(``inference.torch_graph``; the default on CPUs with AVX-512) runs the same graph in
channels-last layout with its element-wise chains fused, its integer convolutions in bfloat16
with AMX (about 3.5x faster than ONNX Runtime on 2 cores), in 8-bit integers with VNNI (about
2.2x) or else in float32. It decodes up to ``KokoroConfig.lanes`` requests' windows at once (2
by default), each on its own worker thread, and a tick does not wait for all of them
(``inference.kokoro_lanes``; ``decode_lanes``, which the scheduler packs its ticks for). Its
audio is not ONNX Runtime's bit for bit (in float the activations are no longer rounded to 8
bits; in int8 the kernels round differently); the voices embed 0.98-0.999 alike against ONNX
Runtime's own, with the same words (docs/benchmarks.md).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import torch

from inference.allocator import retain_freed_memory
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
from inference.kokoro_config import KokoroConfig
from inference.kokoro_graph import (
    SAMPLE_RATE_HZ,
    SAMPLES_PER_FRAME,
    KokoroAssets,
    load_assets,
    source_phase,
)
from inference.kokoro_lanes import Lanes
from inference.kokoro_text import (
    LANGUAGES,
    MAX_TOKENS,
    UnsupportedLanguage,
    espeak_voice,
    tokenize,
)
from inference.kokoro_voice import KokoroVoice, stock_voices
from inference.kokoro_windows import (
    FIRST_WINDOW_HOLD_S,
    SHARED_SLOWDOWN,
    Window,
    bucketed,
    common_windows,
    decoded_span,
    next_chunk,
    quiet_edges,
    runs_dry_if_shared,
    shared_start_s,
    short_to_share,
)
from inference.onnx_graphs import chunk_window, cpu_session
from inference.phonemes import NO_WORD
from inference.torch_graph import TorchGraph
from inference.voice_registry import VoiceRegistry

DEFAULT_CACHE_DIR = Path("~/.cache/timbre/kokoro")
MAX_LOADED_VOICES = 256
"""Profile voices kept decoded on the model thread besides the stock ones."""

_WARMUP_TEXT = "Warming up the voice."
SPEED_PROBE_FRAMES = 96
"""Frames of the warm window ``warmup`` times to seed the measured decoder speed."""
_WARMUP_ID = RequestId(-1)

_F32 = npt.NDArray[np.float32]
log = logging.getLogger(__name__)
_CONV_DTYPES = {"torch-bf16": torch.bfloat16, "torch-fp32": torch.float32,
                "torch-int8": torch.int8}
"""The PyTorch decoders (``kokoro_config.DECODERS``) and the precision of their integer
convolutions."""


@dataclass(frozen=True)
class _WordSpan:
    word: str
    start_frame: int
    end_frame: int


@dataclass
class _Request:
    """Per-request state from prefill to release: the frontend's frame tensors."""

    asr: _F32
    """[1, 512, frames]"""
    f0: _F32
    """[1, 2 * frames]"""
    n: _F32
    phase: _F32
    """[1, 2 * frames, 9]"""
    style: _F32
    words: tuple[_WordSpan, ...]
    lead: int = 0
    """Frames at the start of the tensors that are decoded as context but never sent."""
    trail: int = 0
    """Frames at the end of the tensors that are decoded as context but never sent."""
    next_frame: int = 0
    next_word: int = 0
    last_chunk: int = 0
    """Frames in the chunk decoded last (0 before the first)."""
    tail: _F32 = field(default_factory=lambda: np.zeros(0, np.float32))
    """The previous window's audio just past its chunk, faded out under the next chunk."""
    decoding: Window | None = None
    """The window on a lane. Written by the lane, read by ``_holds`` and ``_chunk_speed``."""

    @property
    def frames(self) -> int:
        """Frames sent (the tensors' less ``lead`` and ``trail``)."""
        return int(self.asr.shape[2]) - self.lead - self.trail


class _Unspeakable(Exception):
    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


class KokoroEngine:
    """Kokoro-82M behind the step interface (see ``inference.engine``). Not thread-safe: the one
    model thread that owns it makes every call.

    Voices: the stock voicepacks and their mean by name (``voices()``); a unit's ``style`` (256
    values, or a flattened voicepack) overrides its voice; other names are looked up in
    ``voice_source`` (``KokoroVoice.to_bytes``, put there for voice profiles).
    """

    def __init__(self, config: KokoroConfig | None = None, cache_dir: Path | None = None,
                 voice_source: VoiceRegistry | None = None,
                 assets: KokoroAssets | None = None) -> None:
        self.config = config or KokoroConfig()
        self._assets = assets or load_assets(cache_dir or self.config.cache_dir
                                             or DEFAULT_CACHE_DIR)
        threads, spin = self.config.intra_op_threads, self.config.allow_spinning
        self._frontend = cpu_session(self._assets.frontend_path, threads, spin)
        self.decoder_kind = self.config.resolved_decoder()
        self._decoder: _OnnxDecoder | _TorchDecoder
        self._lanes: Lanes[_Request] | None = None
        if self.decoder_kind == "onnx":
            self._decoder = _OnnxDecoder(self._assets, threads, spin)
        else:
            self._decoder = _TorchDecoder(self._assets, _CONV_DTYPES[self.decoder_kind], threads)
            retain_freed_memory(self.config.retained_memory_mb)
            if self.config.lanes > 1:
                self._lanes = Lanes(self.config.lanes, self._decode, "kokoro-decode")
        self._stock = stock_voices(self._assets.voicepacks)
        if self.config.default_voice not in self._stock:
            raise ValueError(f"kokoro has no stock voice {self.config.default_voice!r}")
        self._loaded: dict[str, KokoroVoice] = {}
        self._voice_source = voice_source
        self._requests: dict[RequestId, _Request] = {}
        self._held_since: dict[RequestId, float] = {}
        """First windows waiting for a lane (``_holds``), since when."""
        self._s_per_frame = 0.01
        """Decoder seconds per window frame, a moving average (``kokoro_windows.next_chunk``)."""
        self._solo_s_per_frame = 0.0
        self._shared_s_per_frame = 0.0
        """The same on lanes, of windows that decoded alone / beside another (0: none yet)."""

    @property
    def name(self) -> str:
        return "kokoro"

    def shifts_f0(self) -> bool:
        """``SynthesisUnit.f0`` moves the predicted pitch contour before the decoder (the harmonic
        source and the decoder's F0 conditioning both follow it)."""
        return True

    @property
    def sample_rate_hz(self) -> int:
        return SAMPLE_RATE_HZ

    def render_variant(self) -> str:
        """The decoder (``RendersVariants``): its audio differs slightly between decoders."""
        return self.decoder_kind

    def decode_lanes(self) -> int:
        """Decode items one tick runs at once (``DecodesInParallel``)."""
        return 1 if self._lanes is None else self._lanes.count

    def voices(self) -> Sequence[str]:
        """The default voice first (the scheduler calibrates with the first), then the rest."""
        default = self.config.default_voice
        return [default, *(name for name in self._stock if name != default)]

    def languages(self) -> Sequence[str]:
        """Language codes every Kokoro voice accepts (``SynthesisUnit.language``)."""
        return sorted(LANGUAGES)

    def stock_voice(self, name: str) -> KokoroVoice:
        """A stock voice by name (``KeyError`` if there is none): the base for mixes and clones."""
        return self._stock[name]

    def warmup(self) -> None:
        unit = SynthesisUnit(_WARMUP_TEXT, self.config.default_voice)
        self.execute(EnginePlan(prefills=(PrefillItem(_WARMUP_ID, unit),)))
        finished = False
        while not finished:
            result = self.execute(EnginePlan(decodes=(DecodeItem(_WARMUP_ID),)))
            finished = result.outputs[0].finished
        self.release(_WARMUP_ID)
        if isinstance(self._decoder, _TorchDecoder):
            for frames in common_windows(self.config):
                self._decoder.prime(frames)
            # The speed the first streams' chunks are sized by (``gaining_chunks``): a warm
            # window about as long as a growing stream's second, not the kernel builds above.
            began = time.perf_counter()
            self._decoder.prime(SPEED_PROBE_FRAMES)
            self._s_per_frame = (time.perf_counter() - began) / SPEED_PROBE_FRAMES
            if self._lanes is not None:
                self._solo_s_per_frame = self._s_per_frame

    def execute(self, plan: EnginePlan) -> EngineResult:
        """Prefills (text -> frames, no audio yet), then one chunk per decode item. Raises
        ``KeyError``/``ValueError`` for scheduler bugs, as ``PiperEngine.execute`` does."""
        t0 = time.perf_counter()
        failures = tuple(f for f in map(self._prefill, plan.prefills) if f is not None)
        t1 = time.perf_counter()
        if len({item.request_id for item in plan.decodes}) != len(plan.decodes):
            raise ValueError("a request appears twice among one plan's decodes")
        if self._lanes is None:
            outputs = tuple(map(self._decode_one, plan.decodes))
            t2 = time.perf_counter()
            return EngineResult(outputs, failures, prefill_s=t1 - t0, decode_s=t2 - t1,
                                extras={"decoder_calls": float(len(outputs))})
        held = self._holds(plan.decodes, t1)
        outputs, lost, busy = self._lanes.run(
            [item for item in plan.decodes if item.request_id not in held], self._request)
        outputs += tuple(RequestOutput(request_id, np.zeros(0, np.float32)) for request_id in held)
        t2 = time.perf_counter()
        busy_s = self._lanes.busy_s([*busy, (t0, t1)], t2, self._solo_share())
        return EngineResult(outputs, failures + lost, prefill_s=t1 - t0, decode_s=t2 - t1,
                            busy_s=busy_s, extras={"decoder_calls": float(len(outputs))})

    def _holds(self, items: Sequence[DecodeItem], now: float) -> set[RequestId]:
        """The planned first windows of silent streams that wait this tick
        (``KokoroConfig.hold_first_windows``): while a window on a lane, or one starting this
        tick, would finish after its client runs dry if it shared the cores (at the speed
        measured so far, ``SHARED_SLOWDOWN`` slower), a newcomer's window does not start beside
        it, for up to ``FIRST_WINDOW_HOLD_S``; while a playing stream would be left with too
        little audio to go on beside another (``short_to_share``), for up to ``ramp_hold_s``."""
        assert self._lanes is not None
        waiting = {item.request_id for item in items
                   if item.buffered_s == 0.0 and item.request_id in self._requests
                   and self._requests[item.request_id].next_frame == 0
                   and not self._lanes.decoding(item.request_id)}
        for request_id in list(self._held_since):
            if request_id not in waiting:
                del self._held_since[request_id]
        if not waiting or not self.config.hold_first_windows:
            return set()
        windows = [request.decoding for request in self._requests.values()
                   if request.decoding is not None]
        for item in items:  # windows of playing streams that start on a lane this tick
            request = self._requests.get(item.request_id)
            if (request is not None and item.request_id not in waiting and item.buffered_s
                    and not self._lanes.decoding(item.request_id)):
                size, _, lo, hi = self._window_for(request, item)
                first, last = decoded_span(request.lead, request.trail, request.frames, lo, hi)
                windows.append(Window(now, last - first, size, item.buffered_s))
        cap_s = 0.0
        if any(runs_dry_if_shared(window, now, self._s_per_frame) for window in windows):
            cap_s = FIRST_WINDOW_HOLD_S
        solo = self._solo_s_per_frame or self._s_per_frame
        if self.config.ramp_hold_s > cap_s and any(
                short_to_share(self.config, window, now, solo, self._shared_speed())
                for window in windows):
            cap_s = self.config.ramp_hold_s
        held = set()
        competing = {item.request_id: item.competing for item in items}
        for request_id in waiting:
            cap = cap_s
            if not windows and competing[request_id] and request_id in self._held_since:
                # between a playing stream's units no window shows: a held newcomer stays held
                cap = max(cap, self.config.ramp_hold_s)
            since = self._held_since.setdefault(request_id, now) if cap else now
            if now - since < cap:
                held.add(request_id)
        return held

    def _shared_speed(self) -> float:
        """Seconds per window frame of a window decoding beside another: as measured, else a
        lone window's ``SHARED_SLOWDOWN`` slower."""
        return self._shared_s_per_frame or SHARED_SLOWDOWN * (self._solo_s_per_frame
                                                               or self._s_per_frame)

    def release(self, request_id: RequestId) -> None:
        """A window still decoding for the request finishes on its lane; a later tick returns
        its output, which the scheduler drops."""
        self._requests.pop(request_id, None)

    def synthesize_one_pass(self, unit: SynthesisUnit) -> FloatAudio:
        """The reference: the frames a request for ``unit`` gets, decoded in one decoder call.
        Raises ``ValueError`` for a unit ``execute`` would report as a failure."""
        try:
            request = self._prepare(unit)
        except _Unspeakable as exc:
            raise ValueError(f"{exc.code}: {exc.message}") from exc
        return _to_audio(self._run_decoder(request, 0, request.frames))

    # -- prefill ---------------------------------------------------------------------------------

    def _prefill(self, item: PrefillItem) -> RequestFailure | None:
        if item.request_id in self._requests:
            raise ValueError(f"request {item.request_id} is already prefilled")
        try:
            self._requests[item.request_id] = self._prepare(item.unit)
        except _Unspeakable as exc:
            return RequestFailure(item.request_id, exc.code, exc.message)
        return None

    def _prepare(self, unit: SynthesisUnit) -> _Request:
        """Text -> the frontend's frame tensors and word spans. Raises ``_Unspeakable``."""
        voice = self._voice(unit)
        if not (np.isfinite(unit.speed) and unit.speed > 0):
            raise _Unspeakable("synthesis_failed", f"speed must be a positive number, not "
                                                   f"{unit.speed}")
        language = unit.language or voice.language
        try:
            espeak_voice(language)
            tokens = tokenize(unit.text, language, self._assets.vocab)
        except UnsupportedLanguage as exc:
            raise _Unspeakable(exc.code, str(exc)) from exc
        if not tokens.words or all(owner == NO_WORD for owner in tokens.owners):
            raise _Unspeakable("synthesis_failed", f"no words to speak in {unit.text!r}")
        if len(tokens.ids) > MAX_TOKENS:
            raise _Unspeakable("synthesis_failed", f"{len(tokens.ids)} phonemes; kokoro speaks "
                                                   f"at most {MAX_TOKENS} per unit")
        style = voice.style_for(len(tokens.ids))
        asr, f0, n, phase, durations = self._frontend.run(None, {
            "tokens": np.array([[0, *tokens.ids, 0]], dtype=np.int64),
            "style": style,
            "speed": np.array([unit.speed], dtype=np.float32),
        })
        if unit.f0 is not None and not unit.f0.identity:
            f0 = unit.f0.apply(f0)
            phase = source_phase(f0)
        spans = _word_spans(tokens.words, tokens.owners, np.asarray(durations, np.int64))
        lead, trail = quiet_edges(n) if self.config.quiet_edges else (0, 0)
        if lead or trail:
            sent = int(asr.shape[2]) - lead - trail
            spans = tuple(_WordSpan(span.word, min(max(span.start_frame - lead, 0), sent),
                                    min(max(span.end_frame - lead, 0), sent)) for span in spans)
        return _Request(asr, f0, n, phase, style, spans, lead, trail)

    def _voice(self, unit: SynthesisUnit) -> KokoroVoice:
        if unit.style is not None:
            try:
                return KokoroVoice.from_vector(unit.style, unit.language)
            except ValueError as exc:
                raise _Unspeakable("synthesis_failed", str(exc)) from exc
        voice = self._stock.get(unit.voice) or self._loaded.get(unit.voice)
        if voice is None:
            voice = self._load_voice(unit.voice)
        if voice is None:
            raise _Unspeakable("unknown_voice", f"kokoro has no voice {unit.voice!r}")
        return voice

    def _load_voice(self, name: str) -> KokoroVoice | None:
        """A voice profile's parameters from the voice source, decoded here on the model thread."""
        params = None if self._voice_source is None else self._voice_source.get(name)
        if params is None:
            return None
        try:
            voice = KokoroVoice.from_bytes(params)
        except ValueError:
            return None
        self._loaded[name] = voice
        while len(self._loaded) > MAX_LOADED_VOICES:
            self._loaded.pop(next(iter(self._loaded)))
        return voice

    # -- decode ----------------------------------------------------------------------------------

    def _request(self, request_id: RequestId) -> _Request:
        request = self._requests.get(request_id)
        if request is None:
            raise KeyError(f"request {request_id} was never prefilled or has been released")
        if request.next_frame >= request.frames:
            raise KeyError(f"request {request_id} has already finished")
        return request

    def _window_for(self, request: _Request, item: DecodeItem) -> tuple[int, int, int, int]:
        """The request's next chunk: its length, its end, and the window ``lo:hi`` decoded."""
        cfg = self.config
        size = next_chunk(cfg, request.next_frame, request.last_chunk, item,
                          self._chunk_speed(item))
        end, lo, hi = chunk_window(request.next_frame, request.frames, size, size,
                                   cfg.context_frames, cfg.first_context_frames)
        if isinstance(self._decoder, _TorchDecoder):
            lo, hi = bucketed(lo, hi, request.frames)
        return size, end, lo, hi

    def _chunk_speed(self, item: DecodeItem) -> float:
        """Seconds per window frame to size the item's chunk by. With lanes and ``ramp_hold_s``,
        for a stream with competitors: two windows' side by side (``_shared_speed``) once
        another stream has started decoding, or once this one holds enough audio to share
        (``shared_start_s``); before that, newcomers' first windows wait for it (``_holds``), so
        a lone window's. Otherwise a lone window's when no other stream competes and that speed
        is measured, else the average of all."""
        if self._lanes is not None and self.config.ramp_hold_s and item.competing:
            shared = self._shared_speed()
            started = any(request.next_frame or request.decoding
                          for request_id, request in self._requests.items()
                          if request_id != item.request_id)
            if started or (item.buffered_s or 0.0) >= shared_start_s(self.config, shared):
                return shared
            return self._solo_s_per_frame or self._s_per_frame
        if item.competing == 0 and self._solo_s_per_frame:
            return self._solo_s_per_frame
        return self._s_per_frame

    def _decode_one(self, item: DecodeItem) -> RequestOutput:
        return self._decode(item, self._request(item.request_id))

    def _decode(self, item: DecodeItem, request: _Request) -> RequestOutput:
        """The request's next chunk. On a lane (``KokoroConfig.lanes``) this runs on a worker
        thread: it writes only ``request``, which no other thread uses meanwhile, and the
        moving average ``_s_per_frame`` (an update lost to a race costs nothing)."""
        request_id = item.request_id
        cfg = self.config
        start = request.next_frame
        size, end, lo, hi = self._window_for(request, item)
        request.last_chunk = size
        began = time.perf_counter()
        shared_before = 0.0 if self._lanes is None else self._lanes.others_s()
        first, last = decoded_span(request.lead, request.trail, request.frames, lo, hi)
        request.decoding = Window(began, last - first, size, item.buffered_s)
        try:
            window = self._run_decoder(request, lo, hi)
        finally:
            request.decoding = None
        self._learn_speed(last - first, time.perf_counter() - began, shared_before)
        audio = window[(start - lo) * SAMPLES_PER_FRAME:(end - lo) * SAMPLES_PER_FRAME].copy()
        fade = min(len(request.tail), len(audio))
        if fade:
            ramp = (np.arange(fade, dtype=np.float32) + 0.5) / fade
            audio[:fade] = audio[:fade] * ramp + request.tail[:fade] * (1.0 - ramp)
        past = (end - lo) * SAMPLES_PER_FRAME
        request.tail = window[past:past + cfg.crossfade_frames * SAMPLES_PER_FRAME].copy()
        return self._emit(request_id, request, end, audio)

    def _run_decoder(self, request: _Request, lo: int, hi: int) -> _F32:
        """The audio of sent frames ``lo:hi``; a window at either end of the unit also decodes
        the silence there that is not sent (``_Request.lead``, ``trail``), as context."""
        first, last = decoded_span(request.lead, request.trail, request.frames, lo, hi)
        audio = self._decoder(request.asr[:, :, first:last], request.f0[:, 2 * first:2 * last],
                              request.n[:, 2 * first:2 * last],
                              request.phase[:, 2 * first:2 * last], request.style)
        start = (request.lead + lo - first) * SAMPLES_PER_FRAME
        return audio[start:start + (hi - lo) * SAMPLES_PER_FRAME]

    def _learn_speed(self, frames: int, seconds: float, shared_before: float) -> None:
        """Moving averages of seconds per window frame: all windows (``_s_per_frame``), and on
        lanes those that decoded alone and those that decoded beside another nearly all the
        time (``_solo_share``). Races between lanes can lose an update, which costs nothing."""
        s_per_frame = seconds / frames
        self._s_per_frame = _mix(self._s_per_frame, s_per_frame)
        if self._lanes is None or seconds <= 0:
            return
        shared = (self._lanes.others_s() - shared_before) / seconds
        if shared < 0.1:
            self._solo_s_per_frame = _mix(self._solo_s_per_frame, s_per_frame)
        elif shared > 0.9:
            self._shared_s_per_frame = _mix(self._shared_s_per_frame, s_per_frame)

    def _solo_share(self) -> float:
        """The share of what every lane together decodes that one window alone decodes in the
        same time (1.0 until both speeds are measured), for ``Lanes.busy_s``. In 2-session
        loadtests on a 2-core AVX2 EPYC one window alone decoded 91-107 frames a second, two
        beside each other 78-79 each: a share of 0.59-0.71. Counted as 1.0, that time made the
        scheduler refuse a second session's turns as over capacity in most runs
        (docs/benchmarks.md, "A next unit on time, and capacity counted for both lanes")."""
        if not (self._solo_s_per_frame and self._shared_s_per_frame and self._lanes):
            return 1.0
        share = self._shared_s_per_frame / (self._lanes.count * self._solo_s_per_frame)
        return min(1.0, max(0.5, share))

    def _emit(self, request_id: RequestId, request: _Request, end: int,
              audio: _F32) -> RequestOutput:
        request.next_frame = end
        done = request.next_word
        while done < len(request.words) and request.words[done].end_frame <= end:
            done += 1
        ms_per_frame = 1000.0 * SAMPLES_PER_FRAME / SAMPLE_RATE_HZ
        words = tuple(WordTiming(s.word, s.start_frame * ms_per_frame, s.end_frame * ms_per_frame)
                      for s in request.words[request.next_word:done])
        request.next_word = done
        return RequestOutput(request_id, _to_audio(audio), words, end == request.frames)


class _OnnxDecoder:
    """The decoder graph in ONNX Runtime."""

    def __init__(self, assets: KokoroAssets, threads: int, spinning: bool) -> None:
        self._session = cpu_session(assets.decoder_path, threads, spinning)

    def __call__(self, asr: _F32, f0: _F32, n: _F32, phase: _F32, style: _F32) -> _F32:
        audio: Any = self._session.run(None, {"asr": asr, "f0": f0, "n": n, "phase": phase,
                                              "style": style})[0]
        return np.asarray(audio, dtype=np.float32).reshape(-1)


class _TorchDecoder:
    """The decoder in PyTorch: the harmonic source (in float32, its STFT's DC phase as ONNX
    Runtime has it: ``torch_graph.STFT_DC_RESIDUE``), then the body. Thread-safe: several
    windows may decode at once."""

    def __init__(self, assets: KokoroAssets, conv_dtype: torch.dtype, threads: int) -> None:
        torch.set_num_threads(threads)  # process-wide: PyTorch has no per-call thread count
        self._source = TorchGraph(assets.source_path)
        self._body = TorchGraph(assets.body_path, conv_dtype)

    def __call__(self, asr: _F32, f0: _F32, n: _F32, phase: _F32, style: _F32) -> _F32:
        source = self._source.run({"f0": f0, "phase": phase})[0]
        audio = self._body.run({"asr": asr, "f0": f0, "n": n, "source": source,
                                "style": style})[0]
        return np.asarray(audio, dtype=np.float32).reshape(-1)

    def prime(self, frames: int) -> None:
        """Decode one window of ``frames`` frames of silence-like input, so that oneDNN has
        built the convolution kernels for that length (``kokoro_windows.bucketed``)."""
        feeds: Mapping[str, _F32] = {
            "asr": np.zeros((1, 512, frames), np.float32),
            "f0": np.zeros((1, 2 * frames), np.float32),
            "n": np.zeros((1, 2 * frames), np.float32),
            "phase": np.zeros((1, 2 * frames, 9), np.float32),
            "style": np.zeros((1, 256), np.float32),
        }
        self(**feeds)


def _word_spans(words: Sequence[str], owners: Sequence[int],
                durations: npt.NDArray[np.int64]) -> tuple[_WordSpan, ...]:
    """Frame spans of the words that own at least one token. ``durations`` has one entry per
    model input, boundary pads included, so token i lasts ``durations[i + 1]`` frames."""
    edges = np.concatenate([[0], np.cumsum(durations)])
    starts, ends = edges[1:-2], edges[2:-1]
    owner = np.asarray(owners)
    spans = []
    for index, word in enumerate(words):
        where = np.flatnonzero(owner == index)
        if where.size:
            spans.append(_WordSpan(word, int(starts[where[0]]), int(ends[where[-1]])))
    return tuple(spans)


def _mix(average: float, sample: float) -> float:
    return sample if average == 0.0 else average + 0.2 * (sample - average)


def _to_audio(samples: _F32) -> FloatAudio:
    return np.clip(samples, -1.0, 1.0).astype(np.float32, copy=False)
