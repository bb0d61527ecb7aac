"""The step interface every synthesis engine implements.

The scheduler (``inference.scheduler``) drives an engine with one call per tick::

    plan = schedule(state)            # the scheduler: which requests, which kind of work
    result = engine.execute(plan)     # the engine: tensors in, audio out
    update(state, plan, result)       # the scheduler: deadlines, outputs, finished requests

Plans and results are plain frozen dataclasses. The scheduler never touches tensors; the engine never
sees sessions, deadlines or sockets. Per-request model state (phonemes, latents, KV caches) lives in the
engine, keyed by ``RequestId``, from the ``PrefillItem`` that creates it until the ``release`` call
that frees it. Every method is called from the one model thread that owns the engine.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import NewType, Protocol, runtime_checkable

import numpy as np
import numpy.typing as npt

RequestId = NewType("RequestId", int)
"""One speakable unit of text (a clause or sentence) being synthesised."""

FloatAudio = npt.NDArray[np.float32]
"""Mono float32 samples in [-1, 1] at the engine's ``sample_rate_hz``."""


@dataclass(frozen=True)
class SynthesisUnit:
    """One unit of already-normalised text to speak in one voice.

    ``voice`` is the engine's own voice name (``joe`` for ``piper:joe``), already resolved by the
    session layer. ``speed`` > 1 speaks faster (1.0 is the voice's natural rate).
    """

    text: str
    voice: str
    speed: float = 1.0
    style: tuple[float, ...] | None = None
    """Engine-specific voice parameters (e.g. a Kokoro style vector); None for stock voices."""
    language: str | None = None
    """Language code for engines that speak several (Kokoro); None: the voice's default."""
    f0: F0Shift | None = None
    """A change of the voice's pitch contour at its source, for engines that model one
    (``ShiftsF0``); the session layer sets it only for them."""


@dataclass(frozen=True)
class F0Shift:
    """A voice's pitch contour moved toward another speaker's: the log-F0 line that takes the
    base voice's typical pitch ``pivot_hz`` to ``ratio`` times it and scales the contour's
    excursions around it by ``spread`` (< 1 flatter, > 1 livelier). Below half the pivot
    (transitions into and out of voicing) the factor stays at that point's, so dips are moved,
    not flattened. Unvoiced frames (F0 <= ``UNVOICED_HZ``) are left alone."""

    ratio: float = 1.0
    spread: float = 1.0
    pivot_hz: float = 200.0

    UNVOICED_HZ = 10.0
    """The harmonic source's own voicing threshold (Kokoro's sine generator)."""

    def __post_init__(self) -> None:
        if not all(np.isfinite(v) and v > 0 for v in (self.ratio, self.spread, self.pivot_hz)):
            raise ValueError("F0 shift ratio, spread and pivot must be positive numbers")

    @property
    def identity(self) -> bool:
        return self.ratio == 1.0 and self.spread == 1.0

    def apply(self, f0: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
        """The shifted contour (any shape, Hz)."""
        f = np.asarray(f0, dtype=np.float64)
        floor = np.maximum(f, self.pivot_hz / 2) / self.pivot_hz
        factor = self.ratio * floor ** (self.spread - 1.0)
        return np.where(f > self.UNVOICED_HZ, f * factor, f).astype(np.float32)


@dataclass(frozen=True)
class WordTiming:
    """Where one word sits in a unit's audio, in milliseconds from the unit's first sample."""

    word: str
    start_ms: float
    end_ms: float


@dataclass(frozen=True)
class PrefillItem:
    """Create state for a new request (text analysis, encoder pass, KV-cache fill)."""

    request_id: RequestId
    unit: SynthesisUnit


@dataclass(frozen=True)
class DecodeItem:
    """Advance an already-prefilled request by one step of the engine's own granularity.

    For a chunked vocoder that is the next decoder chunk; for an autoregressive model it is one
    token (audio leaves every few tokens).
    """

    request_id: RequestId
    buffered_s: float | None = None
    """Audio the request's client has received and not yet played, when the scheduler knows it
    (None: offline work, or no real-time client). An engine that chooses its step size may size
    this step to arrive before that audio runs out (``KokoroConfig.grow_chunks``)."""
    competing: int = 0
    """Other live streams with work queued when this item was planned: each needs engine time
    before this request's next step, which an engine sizing its steps may allow for. On an
    engine with lanes, a stream far ahead of its client gives way and is not counted
    (``SchedulerConfig.yield_lead_s``)."""


@dataclass(frozen=True)
class EnginePlan:
    """The work of one tick. Any of the tuples may be empty; an empty plan is never executed."""

    prefills: tuple[PrefillItem, ...] = ()
    decodes: tuple[DecodeItem, ...] = ()

    @property
    def size(self) -> int:
        return len(self.prefills) + len(self.decodes)


@dataclass(frozen=True)
class RequestOutput:
    """What one request produced in one tick.

    ``audio`` may be empty (a prefill, or an autoregressive token that completed no audio window).
    ``words`` carries timings of words whose audio is complete, relative to the request's first
    sample. ``finished`` is set on the request's last output; the engine keeps its state until
    ``release``.
    """

    request_id: RequestId
    audio: FloatAudio
    words: tuple[WordTiming, ...] = ()
    finished: bool = False


@dataclass(frozen=True)
class RequestFailure:
    """A request the engine could not serve (e.g. text it cannot phonemise). Not a crash."""

    request_id: RequestId
    code: str
    message: str


@dataclass(frozen=True)
class EngineResult:
    outputs: tuple[RequestOutput, ...] = ()
    failures: tuple[RequestFailure, ...] = ()
    prefill_s: float = 0.0
    """Wall time spent on the plan's prefills (the scheduler learns its cost model from these)."""
    decode_s: float = 0.0
    """Wall time spent on the plan's decodes."""
    busy_s: float | None = None
    """For an engine whose decodes outlast the tick that started them (Kokoro's lanes): the
    wall time, since its previous result, during which it computed anything, lanes overlapping
    counted once. The scheduler then learns throughput as this result's audio over ``busy_s``,
    as measured. None: over ``prefill_s + decode_s``, scaled up to every lane busy."""
    extras: dict[str, float] = field(default_factory=dict)


class Engine(Protocol):
    """A synthesis model behind the step interface. Not thread-safe: one model thread owns it."""

    @property
    def name(self) -> str:
        """Engine name, the prefix of its voice ids (``piper`` in ``piper:joe``)."""
        ...

    @property
    def sample_rate_hz(self) -> int: ...

    def voices(self) -> Sequence[str]:
        """Voice names this engine serves (without the engine prefix)."""
        ...

    def warmup(self) -> None:
        """Run the model once on a short text so the first real request pays no start-up cost."""
        ...

    def execute(self, plan: EnginePlan) -> EngineResult:
        """Run one tick. Prefills come before decodes; a request prefilled in this plan is not
        decoded in the same plan. Raises only for bugs; a request-level problem is a
        ``RequestFailure`` in the result."""
        ...

    def release(self, request_id: RequestId) -> None:
        """Free a request's state (finished, failed or cancelled). Unknown ids are ignored."""
        ...


@runtime_checkable
class DecodesInParallel(Protocol):
    """An engine whose ``execute`` runs up to ``decode_lanes()`` decode items at once, each on its
    own core, so a tick of that many items takes about as long as one item (the scheduler packs
    ticks accordingly). Engines without it decode their items one after another."""

    def decode_lanes(self) -> int: ...


def decode_lanes(engine: object) -> int:
    """How many decode items ``engine`` runs at once (1 unless it says otherwise)."""
    return max(1, engine.decode_lanes()) if isinstance(engine, DecodesInParallel) else 1


@runtime_checkable
class RendersVariants(Protocol):
    """An engine that can render a voice in more than one way (Kokoro's decoders give audio that
    embeds 0.98-0.99 alike): what is measured from its audio is kept per ``render_variant()``."""

    def render_variant(self) -> str: ...


def render_variant(engine: object) -> str:
    """How ``engine`` renders its voices now ("" for an engine with one way)."""
    return engine.render_variant() if isinstance(engine, RendersVariants) else ""


class VoiceParams(Protocol):
    def to_bytes(self) -> bytes: ...


@runtime_checkable
class ShiftsF0(Protocol):
    """An engine whose voices are driven by an explicit pitch contour (Kokoro's harmonic source),
    so it can honour ``SynthesisUnit.f0``: the pitch moves, the formants and timing stay."""

    def shifts_f0(self) -> bool: ...


@runtime_checkable
class ClonesVoices(Protocol):
    """An engine that makes a voice from reference audio (XTTS). The parameters it returns are
    stored with the voice profile and handed back to the engine by name (``VoiceRegistry``).
    ``clone_voice`` may run on a worker thread while the model thread serves ticks."""

    def clone_voice(self, audio: FloatAudio, sample_rate_hz: int) -> VoiceParams: ...
