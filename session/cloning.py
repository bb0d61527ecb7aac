"""The clone job's work: from a profile's reference audio to the parameters it speaks with.

1. The reference speech (silences trimmed) is embedded with the speaker encoder (resemblyzer
   GE2E, ``inference.speaker``); the embedding is stored with the profile.
2. The base voice: of the stock voices allowed as bases (``CloningConfig.base_voices``, those this
   server runs), the one whose own speech embeds closest to the reference. Each stock voice's
   embedding and pitch statistics come from a 12 s sample it says once (``SAMPLE_TEXT``), kept
   on disk under ``DATA_DIR/cache/embeddings`` and computed in the background at start-up
   (``BaseVoices.warm``), so a clone job does not wait for them.
3. The conversion stage (``inference.conversion``): the base voice says the reference's
   transcript (the uploader's, per file, or ``inference.asr``'s when none was given), and the
   fit learns the per-envelope-class spectral gains that take the base's timbre to the
   reference's. On an engine that shifts F0 at its source (Kokoro; ``match_pitch``), the base
   says it with its pitch contour moved to the reference's typical pitch and spread (an
   ``F0Shift`` from both speakers' ``f0_stats``), and the profile keeps that shift: moving
   pitch at the source keeps the formants and the timing, and on the benchmark it lifted a
   female clone's similarity from 0.768 to 0.808 (docs/benchmarks.md). The fitted stage is
   checked: the base's rendering of the transcript, converted, must embed closer to the
   reference than the base alone, or the profile keeps the plain base.
4. Result: ``engine_params = {"engine", "voice", "base_similarity", "conversion": [{"weight",
   "params"}], "clone_similarity", "transcript"}``; ``session.voices.profile_voice`` reads it.

A server with a cloning engine (``ClonesVoices``: XTTS on a GPU) skips 2-3: the engine makes the
voice's own conditioning from the reference.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import logging
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt

from inference.asr import recognize
from inference.conversion import ConversionParams, convert, f0_stats, fit
from inference.engine import (
    ClonesVoices,
    F0Shift,
    ShiftsF0,
    SynthesisUnit,
    decode_lanes,
    render_variant,
)
from inference.scheduler import Scheduler, UnitAudio, UnitFailed
from inference.speaker import SpeakerEncoder, cosine
from session.errors import UnknownVoice
from session.jobs import JobContext, JobRunner
from session.normalize import normalize
from session.offline import OfflineStream, wait_until_ready
from session.segment import split_units
from session.voices import VoiceCatalog, VoiceUnavailable, encode_conversion

log = logging.getLogger(__name__)

_F32 = npt.NDArray[np.float32]

SAMPLE_TEXT = (
    "A rainbow is a division of white light into many beautiful colors. These take the shape of a "
    "long round arch, with its path high above, and its two ends apparently beyond the horizon. "
    "There is, according to legend, a boiling pot of gold at one end."
)
"""What each stock voice reads to get its speaker embedding (about 12 s of speech)."""
_EMBEDDING_VERSION = "ge2e-1+yin-1"
"""Part of the stock embeddings' cache key: bump it when the encoder or its input changes."""
_SENTENCE_GAP_S = 0.2


@dataclass(frozen=True)
class CloningConfig:
    """``[cloning]`` in the config file."""

    conversion: bool = True
    """Fit a conversion stage per profile (False: a profile speaks with its closest base voice)."""
    base_voices: tuple[str, ...] = ("kokoro:jf_gongitsune", "kokoro:jf_nezumi", "kokoro:jm_kumo",
                                    "piper:joe")
    """Stock voices a clone may start from, where this server runs them. Kokoro's jf_alpha and
    jf_tebukuro are left out: an English recogniser keeps 0.26 and 0.19 of their words (joe 0.72,
    jf_gongitsune 0.75; docs/benchmarks.md)."""
    transcribe: bool = True
    """Recognise a reference uploaded without a transcript (``inference.asr``)."""
    max_fit_speech_s: float = 90.0
    """Reference speech used for the fit at most (a longer reference is cut, in whole files)."""
    warm_base_voices: bool = True
    """Embed the stock voices in the background at start-up."""
    match_pitch: bool = True
    """On an engine that shifts F0 at its source (Kokoro), move the base voice's pitch contour to
    the reference speaker's typical pitch and spread."""
    pitch_ratio_range: tuple[float, float] = (0.6, 1.6)
    """The pitch move (reference's typical F0 / the base voice's) is clipped to this range."""
    pitch_spread_range: tuple[float, float] = (0.4, 1.5)
    """So is the change of the contour's spread (reference's / the base voice's)."""

    def __post_init__(self) -> None:
        for name in ("pitch_ratio_range", "pitch_spread_range"):
            low, high = getattr(self, name)
            if not 0 < low <= high:
                raise ValueError(f"[cloning] {name} must be two positive numbers, low to high")


# -- the speaker encoder and the stock voices' embeddings ---------------------------------------


class Encoder(Protocol):
    """What the service needs from ``inference.speaker.SpeakerEncoder``."""

    def embed(self, audio: _F32, sample_rate_hz: int) -> _F32: ...

    def embed_windows(self, audio: _F32, sample_rate_hz: int, window_s: float | None = ...,
                      hop_s: float = ...) -> _F32: ...


class SharedEncoder:
    """One speaker encoder per process, loaded on first use on a worker thread."""

    def __init__(self, runner: JobRunner, factory: Callable[[], Encoder] = SpeakerEncoder) -> None:
        self._runner = runner
        self._factory = factory
        self._encoder: Encoder | None = None
        self._lock = asyncio.Lock()

    async def get(self) -> Encoder:
        if self._encoder is None:
            async with self._lock:
                if self._encoder is None:
                    self._encoder = await self._runner.run_blocking(self._factory)
        return self._encoder


@dataclass(frozen=True)
class BaseVoice:
    voice_id: str
    """``engine:name`` in the catalog."""
    engine: str
    voice: str
    similarity: float
    """Cosine between the reference's and the stock voice's speaker embeddings."""


@dataclass(frozen=True)
class VoiceSample:
    """What a stock voice's sample tells about it: its speaker embedding and ``f0_stats``
    (typical F0 in Hz and the spread of log F0; 0, 0 when its sample had no voiced speech)."""

    embedding: _F32
    f0_hz: float
    f0_spread: float


class BaseVoices:
    """Speaker embeddings and pitch statistics of the catalog's stock voices, each computed once
    (a sample synthesised on an offline stream, then measured; kept in ``cache_dir`` when
    given), and the closest one to a reference."""

    def __init__(self, catalog: VoiceCatalog, runner: JobRunner, encoder: SharedEncoder, *,
                 sample_text: str = SAMPLE_TEXT, engine_wait_s: float = 120.0,
                 cache_dir: Path | None = None) -> None:
        self._catalog = catalog
        self._runner = runner
        self._encoder = encoder
        self._sample_text = sample_text
        self._engine_wait_s = engine_wait_s
        self._cache_dir = cache_dir
        self._samples: dict[str, VoiceSample] = {}
        self._lock = asyncio.Lock()

    async def closest(self, embedding: _F32, among: Sequence[str] | None = None) -> BaseVoice:
        """The stock voice (of ``among`` where the catalog has any of them; otherwise every stock
        voice) whose embedding is closest. Raises UnknownVoice when there is none, ServerBusy (retry)
        when its engine is not available."""
        served = self._catalog.voice_ids()
        names = [v for v in among or () if v in served] or served
        best: BaseVoice | None = None
        for voice_id in names:
            similarity = cosine(embedding, await self.embedding(voice_id))
            if best is None or similarity > best.similarity:
                engine, _, name = voice_id.partition(":")
                best = BaseVoice(voice_id, engine, name, similarity)
        if best is None:
            raise UnknownVoice("the server has no stock voice to base a profile on")
        return best

    async def warm(self) -> None:
        """Embed every stock voice now (start-up, in the background); failures are logged."""
        for voice_id in self._catalog.voice_ids():
            try:
                await self.embedding(voice_id)
            except Exception:
                log.exception("could not embed stock voice %s", voice_id)

    async def embedding(self, voice_id: str) -> _F32:
        return (await self.sample(voice_id)).embedding

    async def sample(self, voice_id: str) -> VoiceSample:
        async with self._lock:  # one synthesis per voice, even under concurrent clone jobs
            cached = self._samples.get(voice_id)
            if cached is None:
                cached = await self._runner.run_blocking(self._load, voice_id)
            if cached is None:
                cached = await self._compute(voice_id)
                await self._runner.run_blocking(self._save, voice_id, cached)
            self._samples[voice_id] = cached
            return cached

    def _path(self, voice_id: str) -> Path | None:
        if self._cache_dir is None:
            return None
        variant = render_variant(self._catalog.resolve(voice_id).scheduler.engine)
        return self._cache_dir / sample_file_name(voice_id, variant, self._sample_text)

    def _load(self, voice_id: str) -> VoiceSample | None:
        path = self._path(voice_id)
        if path is None or not path.is_file():
            return None
        try:
            with np.load(path) as npz:
                return VoiceSample(np.asarray(npz["embedding"], dtype=np.float32),
                                   float(npz["f0_hz"]), float(npz["f0_spread"]))
        except (OSError, ValueError, KeyError):
            return None

    def _save(self, voice_id: str, sample: VoiceSample) -> None:
        path = self._path(voice_id)
        if path is None:
            return
        path.parent.mkdir(parents=True, exist_ok=True)
        temporary = path.with_suffix(".tmp.npz")
        np.savez(temporary, embedding=sample.embedding, f0_hz=sample.f0_hz,
                 f0_spread=sample.f0_spread)
        temporary.replace(path)

    async def _compute(self, voice_id: str) -> VoiceSample:
        voice = self._catalog.resolve(voice_id)
        audio = await speak_offline(voice.scheduler, voice.engine_voice, self._sample_text,
                                    self._engine_wait_s)
        if audio.size == 0:
            raise VoiceUnavailable(f"the stock voice {voice_id} produced no audio")
        encoder = await self._encoder.get()
        rate = voice.scheduler.engine.sample_rate_hz

        def measure() -> VoiceSample:
            try:
                f0_hz, spread = f0_stats(audio, rate)
            except ValueError:  # no voiced speech: the voice cannot be given another's pitch
                f0_hz, spread = 0.0, 0.0
            return VoiceSample(encoder.embed(audio, rate), f0_hz, spread)

        return await self._runner.run_blocking(measure)


def sample_file_name(voice_id: str, variant: str, text: str) -> str:
    """Where a stock voice's ``VoiceSample`` is cached: one file per voice, way of rendering it
    (``inference.engine.render_variant``), sample text and measuring method."""
    key = hashlib.sha256(f"{_EMBEDDING_VERSION}\n{voice_id}\n{variant}\n{text}".encode())
    return f"{voice_id.replace(':', '-')}-{key.hexdigest()[:16]}.npz"


async def speak_offline(scheduler: Scheduler, engine_voice: str, text: str, engine_wait_s: float,
                        on_unit: Callable[[int, int], Awaitable[None]] | None = None,
                        f0: F0Shift | None = None) -> _F32:
    """``text`` said by a stock voice (with its pitch contour moved by ``f0``) on offline streams,
    units joined by short pauses. ``on_unit(done, total)`` is awaited as each unit completes. An
    engine that decodes on several lanes gets one stream per lane (every other unit each)."""
    await wait_until_ready(scheduler, engine_wait_s)
    units = [SynthesisUnit(normalize(u), engine_voice, f0=f0) for u in split_units(text)]
    units = [u for u in units if u.text.strip()]
    parts: list[list[_F32]] = [[] for _ in units]
    done = 0

    async def collect(index: int, event: UnitAudio | UnitFailed) -> None:
        nonlocal done
        if isinstance(event, UnitAudio):
            parts[index].append(event.audio)
            if event.unit_finished:
                done += 1
                if on_unit is not None:
                    await on_unit(done, len(units))

    async def speak(indices: list[int]) -> None:
        async def relay(index: int, event: UnitAudio | UnitFailed) -> None:
            await collect(indices[index], event)

        async with OfflineStream(scheduler) as stream:
            await stream.speak([units[i] for i in indices], relay)

    lanes = max(1, min(decode_lanes(scheduler.engine), len(units)))
    await asyncio.gather(*(speak(list(range(lane, len(units), lanes))) for lane in range(lanes)))
    gap = np.zeros(int(_SENTENCE_GAP_S * scheduler.engine.sample_rate_hz), dtype=np.float32)
    pieces = [np.concatenate(p) for p in parts if p]
    joined: list[_F32] = []
    for piece in pieces:
        joined += [piece, gap]
    return np.concatenate(joined[:-1]) if joined else np.zeros(0, dtype=np.float32)


# -- the job -----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Reference:
    """A profile's reference speech: all of it (for the embedding) and the parts with a known
    transcript (for the fit)."""

    speech: _F32
    sample_rate_hz: int
    takes: tuple[tuple[_F32, str | None], ...]
    """Each file's speech and its transcript (None: not given)."""


class Cloner:
    """Runs the clone job's steps for ``session.voice_service``; see the module note."""

    def __init__(self, catalog: VoiceCatalog, encoder: SharedEncoder, base_voices: BaseVoices,
                 config: CloningConfig | None = None, engine_wait_s: float = 120.0) -> None:
        self._catalog = catalog
        self._encoder = encoder
        self._base_voices = base_voices
        self.config = config or CloningConfig()
        self._engine_wait_s = engine_wait_s

    async def clone(self, context: JobContext, voice_id: str,
                    reference: Reference) -> tuple[dict[str, Any], list[float], dict[str, Any]]:
        """(engine_params, embedding, job result) for a profile."""
        rate = reference.sample_rate_hz
        encoder = await self._encoder.get()
        embedding = await context.run_blocking(encoder.embed, reference.speech, rate)
        await context.progress(0.15)
        cloner = self._catalog.cloning_scheduler()
        if cloner is not None and isinstance(cloner.engine, ClonesVoices):
            # a cloning engine runs here: the profile gets its own conditioning
            made = await context.run_blocking(cloner.engine.clone_voice, reference.speech, rate)
            params: dict[str, Any] = {
                "engine": cloner.engine.name, "voice": voice_id,
                "conditioning": base64.b64encode(made.to_bytes()).decode("ascii")}
            return params, _floats(embedding), {"voice_id": voice_id,
                                                "engine": cloner.engine.name}
        among = self.config.base_voices if self.config.conversion else None
        base = await self._base_voices.closest(embedding, among)
        await context.progress(0.25)
        params = {"engine": base.engine, "voice": base.voice,
                  "base_similarity": round(base.similarity, 4)}
        result: dict[str, Any] = {"voice_id": voice_id, "base_voice": base.voice_id,
                                  "base_similarity": params["base_similarity"]}
        if self.config.conversion:
            outcome = await self._fit(context, base, reference, embedding)
            params.update(outcome)
            result.update({k: v for k, v in outcome.items() if k != "conversion"})
            result["converted"] = "conversion" in outcome
        await context.progress(0.95)
        return params, _floats(embedding), result

    async def _fit(self, context: JobContext, base: BaseVoice, reference: Reference,
                   embedding: _F32) -> dict[str, Any]:
        """The conversion's ``engine_params`` entries, or why there is none (``skipped``)."""
        takes = await self._transcribed(context, reference)
        if not takes:
            return {"skipped": "no transcript: the reference was uploaded without one and could "
                               "not be recognised"}
        audio = np.concatenate([a for a, _ in takes])
        transcript = " ".join(t for _, t in takes)
        scheduler = self._catalog.resolve(base.voice_id).scheduler

        async def on_unit(done: int, total: int) -> None:
            await context.progress(0.3 + 0.5 * done / max(total, 1))

        shift = None
        engine = scheduler.engine
        if self.config.match_pitch and isinstance(engine, ShiftsF0) and engine.shifts_f0():
            shift = await self._pitch_shift(context, base, audio, reference.sample_rate_hz)
        said = await speak_offline(scheduler, base.voice, transcript, self._engine_wait_s,
                                   on_unit, f0=shift)
        base_rate = engine.sample_rate_hz
        encoder = await self._encoder.get()

        def fit_and_check() -> tuple[ConversionParams, float, float]:
            params, _ = fit(audio, reference.sample_rate_hz, transcript, _no_synthesis,
                            base_audio=(said, base_rate))
            if shift is not None:
                params = replace(params, f0_ratio=shift.ratio, f0_spread=shift.spread,
                                 f0_pivot_hz=shift.pivot_hz)
            plain = cosine(encoder.embed(said, base_rate), embedding)
            converted = cosine(encoder.embed(convert(params, said), base_rate), embedding)
            return params, plain, converted

        try:
            params, plain, converted = await context.run_blocking(fit_and_check)
        except ValueError as exc:  # the two renderings could not be aligned
            return {"skipped": f"the conversion could not be fitted: {exc}"}
        await context.progress(0.9)
        outcome: dict[str, Any] = {"clone_similarity": round(converted, 4),
                                   "base_fit_similarity": round(plain, 4),
                                   "transcript_words": len(transcript.split())}
        if converted <= plain:
            outcome["skipped"] = (f"the fitted conversion did not move the voice closer "
                                  f"({converted:.3f} against {plain:.3f} without it)")
            return outcome
        outcome["conversion"] = encode_conversion(((params, 1.0),))
        if shift is not None:  # the profile speaks with it (it travels in the conversion)
            outcome["pitch_shift"] = {"ratio": round(shift.ratio, 4),
                                      "spread": round(shift.spread, 4)}
        return outcome

    async def _pitch_shift(self, context: JobContext, base: BaseVoice, speech: _F32,
                           rate: int) -> F0Shift | None:
        """The pitch contour change that takes the base voice to the reference speaker's typical
        pitch and spread (clipped to the configured ranges); None when either has too little
        voiced speech to measure."""
        sample = await self._base_voices.sample(base.voice_id)
        if sample.f0_hz <= 0 or sample.f0_spread <= 0:
            return None
        try:
            f0_hz, spread = await context.run_blocking(f0_stats, speech, rate)
        except ValueError:
            return None
        ratio = float(np.clip(f0_hz / sample.f0_hz, *self.config.pitch_ratio_range))
        spread_ratio = float(np.clip(spread / sample.f0_spread, *self.config.pitch_spread_range))
        return F0Shift(ratio, spread_ratio, sample.f0_hz)

    async def _transcribed(self, context: JobContext,
                           reference: Reference) -> list[tuple[_F32, str]]:
        """The takes with a transcript (recognised where none was given and ``transcribe`` is
        on), up to ``max_fit_speech_s`` of speech."""
        takes: list[tuple[_F32, str]] = []
        total = 0.0
        rate = reference.sample_rate_hz
        for audio, text in reference.takes:
            if total >= self.config.max_fit_speech_s:
                break
            if not text and self.config.transcribe:
                text = await context.run_blocking(recognize, audio, rate)
            if text and text.strip():
                takes.append((audio, text.strip()))
                total += audio.size / rate
        return takes


def _no_synthesis(text: str) -> tuple[_F32, int]:
    raise AssertionError("the base audio is passed in")


def _floats(embedding: _F32) -> list[float]:
    return [float(x) for x in embedding]


def describe_cloning(params: Mapping[str, Any]) -> dict[str, Any]:
    """What the API shows of how a profile speaks (never the fitted arrays): whether it has a
    conversion stage, the clone job's similarity check, and a mix's sources."""
    similarity = params.get("clone_similarity")
    return {"converted": bool(params.get("conversion")),
            "clone_similarity": similarity if isinstance(similarity, int | float) else None,
            "mix": list(params.get("sources") or []) or None}
