"""How the Kokoro engine runs: ``KokoroConfig``, the ``[kokoro]`` table of the TOML configuration.

Each setting's note says what it trades and where it was measured (docs/benchmarks.md). The engine
is ``inference.kokoro``; the window policy its chunk settings feed is ``inference.kokoro_windows``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from inference.cpu_kernels import (
    bf16_matrix_units,
    int8_convolutions,
    int8_weight_bits,
    wide_vector_units,
)

DECODERS = ("auto", "onnx", "torch-bf16", "torch-fp32", "torch-int8")
"""What may run the decoder (``KokoroConfig.decoder``)."""


@dataclass(frozen=True)
class KokoroConfig:
    """How the Kokoro engine runs (``[kokoro]`` in the TOML configuration)."""

    enabled: bool = True
    """Serve ``kokoro:*`` voices when the Kokoro packages are installed."""
    cache_dir: Path | None = None
    """Where the cut graphs are built once (about 90 MB; None: ``DEFAULT_CACHE_DIR``). Shared by
    every data directory: the folder name carries the model's hash."""
    intra_op_threads: int = 2
    allow_spinning: bool = False
    first_chunk_frames: int = 36
    """Frames in a request's first chunk (36 frames = 900 ms of audio), from a first window of
    48 (with ``first_context_frames``): small for fast first audio, long enough that the second
    window decodes while it plays. With 12 (300 ms), a stream that starts in silence ran dry 1-2
    times per turn in this machine's slow minutes; 24 (600 ms, from the same 48-frame window
    with 24 frames of margin) removed those in single-session loadtests on a faster CPU, but on
    a 2-core CPU without AMX its second window (96 frames) often did not decode in 0.6 s. With
    36, ``first_context_frames = 12`` and ``hold_first_windows``, nine 2-session loadtests ran
    without a dry spell where 24 + 24 had 0-6 per run (docs/benchmarks.md, "A newcomer waits
    for a lane")."""
    first_chunk_per_competitor_frames: int = 36
    """Frames added to a request's first chunk for each other stream with work queued
    (``DecodeItem.competing``). Those streams' windows share the cores with (on one lane:
    decode before) this request's second one, and 300 ms of audio cannot cover them: when two
    streams start together, each one's 12-frame start ran dry. Beside one other stream the
    first chunk is then 72 frames (1.8 s); in 2-session loadtests (with 12-frame lone starts)
    36 starved half as long as 24 on one lane, and on two lanes it starved less than 12 under
    CPU contention (docs/benchmarks.md)."""
    chunk_frames: int = 128
    """Frames in a full chunk (128 frames = 3.2 s of audio; with its context 0.5-1 s to decode
    on the PyTorch decoder on 2 cores with AMX: one tick, which a newly arriving utterance may
    have to wait for). Longer chunks spend less on context: 176 frames decoded per 128 kept,
    against 112 per 64."""
    grow_chunks: bool = True
    """Size chunks to the client's buffer (``DecodeItem.buffered_s``): a request's first chunk is
    the largest whose window decodes in half the audio its client has buffered (from
    ``first_chunk_frames`` up to ``chunk_frames``), and each later one doubles the last, or
    grows less where the doubled window would not decode in ``GROWTH_SHARE`` of the buffered
    audio at the measured speed. An utterance that starts in silence then begins with 36, 72,
    128 ... frames on a fast CPU and smaller steps on a slow one, so the player does not run dry
    while a large window decodes; one that follows audio still playing starts with full chunks.
    False, or no buffer known: ``first_chunk_frames`` and then ``chunk_frames``."""
    gaining_chunks: bool = True
    """With ``grow_chunks``: no chunk is shorter than one whose window decodes in
    ``GROWTH_SHARE`` of its own audio at the measured speed (a lone window's when no other
    stream competes), where the buffer allows one, and a first chunk holds enough audio for
    such a second window (``kokoro_windows.gaining_chunk``). Below about 130 window frames a
    second a 36-frame start cannot gain. On a 2-core AVX2 EPYC at about 100, its second
    window ran dry in each of 6 turns of 1-session loadtests (0.04-0.25 s); with this rule the
    stream starts with 60 frames and ran dry in none of 6, its first audio 50-250 ms later. A
    CPU fast enough keeps ``first_chunk_frames`` (docs/benchmarks.md, "Starts that gain")."""
    context_frames: int = 24
    """Frames decoded on each side of a chunk and thrown away. Besides covering the decoder's
    convolutions, a longer window brings its normalisation statistics closer to the whole
    utterance's: on the test sentence 10 frames gave a magnitude-STFT SNR of about 10 dB and lost
    words for the test recogniser at some seams, 30 frames (with 80-frame chunks) 14 dB."""
    first_context_frames: int = 12
    """Frames decoded after a request's first chunk and thrown away (nothing comes before it).
    The first window's normalisation statistics are its own whichever part of it is kept, so
    what costs the voice is how much audio comes from that short window, not this margin: on 15
    streamed utterances a 36-frame first chunk from a 48-frame window and from a 60-frame one
    kept the same voice (0.986 against one pass; 24 frames from 48: 0.993) and the same words
    (docs/benchmarks.md, "More audio from the first window")."""
    crossfade_frames: int = 2
    """Frames over which a chunk fades in over the previous window's look-ahead (<= context)."""
    default_voice: str = "mean"
    decoder: str = "auto"
    """What runs the decoder: ``onnx`` (ONNX Runtime, the stock int8 graph bit for bit),
    ``torch-bf16`` / ``torch-fp32`` (PyTorch, integer convolutions in bfloat16 / float32),
    ``torch-int8`` (PyTorch, integer convolutions in 8-bit integers by oneDNN, as the graph
    means them) -- the PyTorch ones set PyTorch's process-wide intra-op threads -- or ``auto``
    (the default): ``torch-bf16`` on a CPU with AMX-BF16; on one with AVX-512 but no AMX,
    ``torch-int8`` where it has VNNI, else ``torch-fp32``; on one with AVX2 only, ``torch-int8``
    (``onnx`` where oneDNN has no int8 convolutions). On a 2-core CPU with AMX ``torch-bf16``
    decodes a window about 3.5x faster than ONNX Runtime with the same words and voice
    (docs/benchmarks.md, "Kokoro's PyTorch decoder"); on a 2-core AVX-512 VNNI CPU without AMX
    ``torch-int8`` decodes one window or two lanes about 2.2x faster, ``torch-fp32`` 1.4x and 1.5x
    ("8-bit integer convolutions", "A CPU without AMX"); on a 2-core AVX2 EPYC ``torch-int8``
    1.3x ONNX Runtime ("An AVX2 CPU"). ``torch-int8`` was not measured on an AMX CPU."""
    lanes: int = 2
    """PyTorch decoder only: windows of different requests that decode at once, each on its own
    worker thread with all ``intra_op_threads`` threads (``inference.kokoro_lanes``). A tick
    starts a planned request's window on a free lane and returns as soon as any lane's window
    finishes (or after ``LANE_POLL_S``), with empty output for planned requests still decoding;
    a window that finishes later is delivered by a later tick. So a new utterance's small first
    window runs beside another stream's large one instead of after it, and two windows on 2
    cores give more audio per second than one window on both: in 2-session loadtests 2 lanes
    starved about half as long as 1 (docs/benchmarks.md). A lone stream decodes as fast either
    way."""
    retained_memory_mb: int = 512
    """PyTorch decoder only: freed memory the process keeps for reuse (``inference.allocator``,
    process-wide). A window's tensors then reuse the last window's pages instead of faulting in
    fresh ones: 17,000-19,000 page faults per window and 3-4 % of the decoder's CPU on 2 cores;
    the process keeps 150-300 MB more resident. 0 leaves the C library's defaults."""
    hold_first_windows: bool = True
    """Lanes only: a silent stream's first window waits (up to ``FIRST_WINDOW_HOLD_S``) while a
    playing stream's window, on a lane or starting this tick, would finish after its client's
    buffered audio runs out if it shared the cores (``_holds``). That is a stream that started
    moments earlier, decoding its second window on the 0.9 s its first chunk holds: a newcomer's
    window beside it slows it by about ``SHARED_SLOWDOWN``, and it ran dry once in every
    2-session loadtest without the hold. The newcomer's first audio comes that much later
    (docs/benchmarks.md, "A newcomer waits for a lane")."""
    ramp_hold_s: float = 4.0
    """Lanes only: how long a silent stream's first window may also wait while a playing
    stream holds too little audio to go on decoding beside it (``short_to_share``: less than a
    gaining window at the shared speed takes). While a newcomer waits, the playing stream's
    chunks are sized for a lone window; once it starts, both streams' are sized for two. With
    this and prefills that no longer wait for another stream's window, 2-session loadtests on a
    2-core AVX2 EPYC ran dry 0.27 times per run instead of 1.0, and the second of two turns
    that open together got its first audio after 3.7-5.9 s instead of 2.4-2.6 s
    (docs/benchmarks.md, "A prefill waited"). 0 turns this off."""

    quiet_edges: bool = True
    """Do not send the model's silence at a unit's edges: Kokoro opens every unit with 13-17
    frames (0.33-0.42 s) of it and closes it with 20-30, so a listener heard nothing for 0.35 s
    after the first audio came, and two streamed sentences sat about 1.1 s apart. Where an edge
    has enough of it, 12 frames (``kokoro_windows.EDGE_FRAMES``) are decoded with the window at that
    edge, as context, and not sent; the unit keeps at least 1 frame of silence before its speech
    and 10 after. Cutting the frames before decoding instead changed the decoder's
    normalisation statistics and lost words (docs/benchmarks.md, "Time to first speech")."""

    def __post_init__(self) -> None:
        if min(self.first_chunk_frames, self.chunk_frames, self.intra_op_threads) < 1:
            raise ValueError("chunk sizes and thread count must be at least 1")
        if self.first_chunk_per_competitor_frames < 0:
            raise ValueError("first_chunk_per_competitor_frames must not be negative")
        if not 0 <= self.crossfade_frames <= min(self.context_frames, self.first_context_frames):
            raise ValueError("crossfade_frames must be between 0 and both context_frames and "
                             "first_context_frames")
        if self.lanes < 1:
            raise ValueError("lanes must be at least 1")
        if not 0 <= self.ramp_hold_s <= 30:
            raise ValueError("ramp_hold_s must be 0-30")
        if not 0 <= self.retained_memory_mb < 2048:
            raise ValueError("retained_memory_mb must be 0-2047")
        if self.decoder not in DECODERS:
            raise ValueError(f"decoder must be one of {', '.join(DECODERS)}, not "
                             f"{self.decoder!r}")

    def resolved_decoder(self) -> str:
        """``decoder`` with ``auto`` decided for this CPU."""
        if self.decoder != "auto":
            return self.decoder
        if bf16_matrix_units():
            return "torch-bf16"
        avx512 = wide_vector_units()
        # 8-bit weights summed exactly: VNNI (AVX-512 without it: float32 is faster); AVX2 alone:
        # int8 too, 1.3x ONNX Runtime on an AVX2 EPYC
        if (int8_weight_bits() == 8 or not avx512) and int8_convolutions():
            return "torch-int8"
        return "torch-fp32" if avx512 else "onnx"
