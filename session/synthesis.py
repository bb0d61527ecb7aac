"""Long-text synthesis as an asynchronous job (``POST /v1/synthesize``): audiobook-length text in,
a downloadable audio file out.

``SynthesisService.submit`` checks everything a client can get wrong before any job exists (text
length, format, speed, the voice, the tier's output formats, and the month's characters against the
whole text: ``check_characters(..., requested=len(text))``), then creates a ``synthesize`` job. The
job:

1. segments the text (``session.segment.split_units``) and normalises each unit in the request's
   language (``session.normalize``), off the event loop;
2. speaks the units on an *offline* scheduler stream (``Scheduler.open_stream(offline=True)``): no
   deadline, only ticks that no live stream needs, so a long job never delays real-time audio. At
   most ``units_in_flight`` units are queued in the scheduler at a time (its inbox is bounded, and
   a cancelled job then drops little work);
3. writes the audio as it arrives (engine rate, mono, 16-bit where the format has samples) to a
   hidden temporary file, published under ``DATA_DIR/tenants/<tenant>/jobs/<job_id>.<format>``
   only when complete;
4. reports progress as units done / units, and meters the characters it spoke (``meter``) once,
   when it ends, whatever the outcome.

A unit the engine finds nothing to speak in (punctuation only) is skipped and counted in the result;
any other unit failure fails the job with that unit's error code.

Result: ``{"audio_url", "duration_s", "format", "characters", "sample_rate_hz", "voice",
"skipped_units"}``. Results live as long as their job (``JobStore`` TTL); ``sweep`` removes files
whose job has expired.
"""

from __future__ import annotations

import asyncio
import logging
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import soundfile

from inference.engine import FloatAudio, SynthesisUnit
from inference.scheduler import (
    UnitAudio,
    UnitFailed,
)
from session.authn import Principal
from session.errors import (
    BadFormat,
    BadRequest,
    SynthesisFailed,
    TextTooLong,
    TimbreError,
)
from session.files import TenantFiles, is_job_id
from session.ids import JobId, TenantId
from session.jobs import JobContext, JobRunner
from session.languages import check_language
from session.limits import check_characters, check_output_format
from session.normalize import normalize
from session.offline import OfflineStream, wait_until_ready
from session.segment import SegmenterConfig, split_units
from session.store.jobs import Job, JobError, JobKind, JobStatus, JobStore
from session.tenancy import TenantDirectory
from session.voices import ResolvedVoice
from session.voicing import (
    MAX_PITCH,
    MIN_PITCH,
    UnitStage,
    engine_f0,
    engine_speed,
    needs_stage,
)
from session.watermark import stamp

log = logging.getLogger(__name__)

# format -> (soundfile major format, subtype, media type)
AUDIO_FORMATS: Mapping[str, tuple[str, str, str]] = {
    "wav": ("WAV", "PCM_16", "audio/wav"),
    "flac": ("FLAC", "PCM_16", "audio/flac"),
    "mp3": ("MP3", "MPEG_LAYER_III", "audio/mpeg"),
    "ogg": ("OGG", "VORBIS", "audio/ogg"),
}
SKIPPABLE_FAILURES = frozenset({"synthesis_failed", "empty_text"})
"""Unit failure codes that mean "nothing to speak here": the unit is skipped, the job goes on."""


@dataclass(frozen=True)
class SynthesisConfig:
    """``[synthesis]``: limits of ``POST /v1/synthesize``."""

    max_text_chars: int = 200_000
    formats: tuple[str, ...] = ("wav", "flac", "mp3", "ogg")
    min_speed: float = 0.5
    max_speed: float = 2.0
    units_in_flight: int = 16
    """Units queued in the scheduler at once per job."""
    engine_wait_s: float = 120.0
    """How long a job waits for its engine to finish loading (server start) before failing."""
    sweep_interval_s: float = 3600.0
    """How often result files whose job has expired are deleted."""

    def __post_init__(self) -> None:
        unknown = set(self.formats) - set(AUDIO_FORMATS)
        if unknown:
            raise ValueError(f"unsupported synthesis formats {sorted(unknown)}; "
                             f"supported: {sorted(AUDIO_FORMATS)}")
        if self.max_text_chars < 1 or self.units_in_flight < 1:
            raise ValueError("max_text_chars and units_in_flight must be at least 1")
        if not 0 < self.min_speed <= 1.0 <= self.max_speed:
            raise ValueError("need 0 < min_speed <= 1 <= max_speed")


# -- errors -----------------------------------------------------------------------------------------


class UnknownJob(TimbreError):
    """No job with this id for this tenant (another tenant's jobs answer the same)."""

    code = "unknown_job"
    http_status = 404
    close_code = None


class NoAudio(TimbreError):
    """The job has no audio to download: not finished, failed, or not a synthesis job."""

    code = "no_audio"
    http_status = 409
    close_code = None


# -- the request ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SynthesisRequest:
    text: str
    voice: str
    format: str = "wav"
    speed: float = 1.0
    pitch: float = 0.0
    """Semitones up (+) or down (-), ``session.voicing.MIN_PITCH`` to ``MAX_PITCH``."""
    language: str | None = None
    """As asked until ``submit`` checks it against the voice; then the normalised code."""

    @classmethod
    def from_json(cls, body: object) -> SynthesisRequest:
        """The parsed JSON body; raises BadRequest naming what is missing or mistyped."""
        if not isinstance(body, dict):
            raise BadRequest("the body must be a JSON object")
        unknown = sorted(set(body) - {"text", "voice", "format", "speed", "pitch", "language"})
        if unknown:
            raise BadRequest(f"unknown fields {unknown}; known: text, voice, format, speed, "
                             "pitch, language")
        text, voice = body.get("text"), body.get("voice")
        if not isinstance(text, str) or not text.strip():
            raise BadRequest("'text' must be a non-empty string")
        if not isinstance(voice, str) or not voice:
            raise BadRequest("'voice' must be a voice id (a stock voice such as 'piper:joe', or "
                             "one of your profiles)")
        audio_format = body.get("format", "wav")
        if not isinstance(audio_format, str):
            raise BadRequest("'format' must be a string")
        speed = body.get("speed", 1.0)
        if isinstance(speed, bool) or not isinstance(speed, int | float) or not math.isfinite(speed):
            raise BadRequest("'speed' must be a number")
        pitch = body.get("pitch", 0.0)
        if isinstance(pitch, bool) or not isinstance(pitch, int | float) or not math.isfinite(pitch):
            raise BadRequest("'pitch' must be a number of semitones")
        language = body.get("language")
        if language is not None and (not isinstance(language, str) or not 0 < len(language) <= 16):
            raise BadRequest("'language' must be a language code such as 'en' or 'pt-br'")
        return cls(text, voice, audio_format, float(speed), float(pitch), language)


class VoiceResolver(Protocol):
    """Who turns a voice id into the scheduler and engine voice that speak it (``VoiceService``)."""

    async def resolve(self, tenant: TenantId, voice: str) -> ResolvedVoice:
        """Raises UnknownVoice (404, also for another tenant's profile), or a refusal for a
        profile that cannot speak (not ready, revoked, consent expired)."""

    async def record_use(self, tenant: TenantId, voice_id: str, actor: str,
                         details: Mapping[str, Any]) -> None:
        """Audit one use of a voice profile (no-op for stock voices)."""


# -- text to units ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class PlannedUnit:
    text: str
    """Normalised text to speak."""
    characters: int
    """Characters of the request text this unit accounts for (metered when it is spoken); the
    units of a text add up to ``len(text)``."""


def plan_units(text: str, config: SegmenterConfig | None = None,
               language: str | None = None) -> list[PlannedUnit]:
    """Segment and normalise ``text`` as ``language`` speaks it (None: the voice's own, English
    for every voice today; only English has its digits rewritten as words). Units with nothing
    to pronounce after normalising keep their characters (so the total stays ``len(text)``) but
    empty text; they are never sent to the engine."""
    lang = language or "en"
    pieces = split_units(text, config)
    counts = [len(piece) for piece in pieces]
    if counts:
        counts[-1] += len(text) - sum(counts)  # whitespace between units
    return [PlannedUnit(_speakable(normalize(piece, lang)), count)
            for piece, count in zip(pieces, counts, strict=True)]


def _speakable(text: str) -> str:
    return text if any(ch.isalnum() for ch in text) else ""


# -- writing audio ------------------------------------------------------------------------------------


class AudioFileWriter:
    """Mono float audio appended to an audio file of one ``AUDIO_FORMATS`` format. Blocking: call
    from a worker thread."""

    def __init__(self, path: Path, audio_format: str, sample_rate_hz: int) -> None:
        major, subtype, _ = AUDIO_FORMATS[audio_format]
        self._file = soundfile.SoundFile(path, "w", samplerate=sample_rate_hz, channels=1,
                                         format=major, subtype=subtype)
        self.samples = 0

    def write(self, audio: FloatAudio) -> None:
        if len(audio):
            self._file.write(np.clip(audio, -1.0, 1.0).astype(np.float32))
            self.samples += len(audio)

    def close(self) -> None:
        self._file.close()


# -- the service ----------------------------------------------------------------------------------


@dataclass
class _Progress:
    units_done: int = 0
    skipped: int = 0
    characters: int = 0
    samples: int = 0
    pending_audio: list[FloatAudio] = field(default_factory=list)


class SynthesisService:
    """``POST /v1/synthesize`` and its jobs. One per app."""

    def __init__(self, *, jobs: JobStore, tenants: TenantDirectory, voices: VoiceResolver,
                 files: TenantFiles, runner: JobRunner, config: SynthesisConfig | None = None,
                 segmenter: SegmenterConfig | None = None) -> None:
        self._jobs = jobs
        self._tenants = tenants
        self._voices = voices
        self._files = files
        self._runner = runner
        self.config = config or SynthesisConfig()
        self._segmenter = segmenter
        self._sweeper: asyncio.Task[None] | None = None
        runner.on_failure(JobKind.SYNTHESIZE, self._job_failed)

    async def submit(self, principal: Principal, request: SynthesisRequest) -> Job:
        """Check the request and start its job (queued). Raises TextTooLong (413), BadFormat,
        BadRequest (speed, pitch), FormatNotAllowed (403), UnknownVoice (404), a voice refusal,
        UnsupportedLanguage (400) for a language the voice cannot speak, or
        QuotaExceeded (402) when the text needs more characters than the month has left."""
        tenant = principal.tenant
        config = self.config
        if len(request.text) > config.max_text_chars:
            raise TextTooLong(f"the text has {len(request.text)} characters; at most "
                              f"{config.max_text_chars} per request")
        if request.format not in config.formats:
            raise BadFormat(f"format {request.format!r} is not offered; choose one of "
                            f"{', '.join(config.formats)}")
        if not config.min_speed <= request.speed <= config.max_speed:
            raise BadRequest(f"speed must be between {config.min_speed} and {config.max_speed}")
        if not MIN_PITCH <= request.pitch <= MAX_PITCH:
            raise BadRequest(f"pitch must be between {MIN_PITCH:g} and {MAX_PITCH:g} semitones")
        account = await self._tenants.account(tenant)
        check_output_format(account.tier, request.format)
        voice = await self._voices.resolve(tenant, request.voice)
        request = replace(request, language=check_language(voice, request.language))
        check_characters(account.tier, account.usage, requested=len(request.text))
        job = await self._jobs.create(tenant, JobKind.SYNTHESIZE, subject=voice.voice_id)
        await self._voices.record_use(tenant, voice.voice_id, principal.key_id,
                                      {"via": "synthesize", "job_id": job.job_id,
                                       "characters": len(request.text)})

        stamper = stamp.current().stamper  # the app's, bound by the request (watermark key, store)

        async def work(context: JobContext) -> Mapping[str, Any]:
            return await self._run(context, tenant, request, voice, stamper)

        self._runner.submit(job, work)
        return job

    async def job(self, tenant: TenantId, job_id: str) -> Job:
        """The tenant's job; UnknownJob for a malformed id, another tenant's, or an expired one."""
        job = await self._jobs.get(tenant, JobId(job_id)) if is_job_id(job_id) else None
        if job is None:
            raise UnknownJob(f"no job {job_id!r}")
        return job

    async def result_file(self, tenant: TenantId, job_id: str) -> tuple[Path, str]:
        """The audio file of the tenant's finished synthesis job and its media type. Raises
        UnknownJob, or NoAudio while it runs, when it failed, or for a clone job."""
        job = await self.job(tenant, job_id)
        if job.kind is not JobKind.SYNTHESIZE:
            raise NoAudio(f"job {job_id} is a {job.kind.value} job; it has no audio")
        if job.status is not JobStatus.SUCCEEDED or job.result is None:
            raise NoAudio(f"job {job_id} is {job.status.value}; its audio exists once it "
                          "has succeeded")
        audio_format = str(job.result.get("format"))
        if audio_format not in AUDIO_FORMATS:
            raise NoAudio(f"job {job_id} has no audio")
        path = self._files.job_path(tenant, job.job_id, audio_format)
        if not path.is_file():
            raise NoAudio(f"the audio of job {job_id} is no longer stored")
        return path, AUDIO_FORMATS[audio_format][2]

    # -- the job -----------------------------------------------------------------------------------

    async def _run(self, context: JobContext, tenant: TenantId, request: SynthesisRequest,
                   voice: ResolvedVoice, stamper: stamp.Stamper) -> Mapping[str, Any]:
        units = await context.run_blocking(plan_units, request.text, self._segmenter,
                                           request.language)
        scheduler = voice.scheduler
        await wait_until_ready(scheduler, self.config.engine_wait_s)
        rate = scheduler.engine.sample_rate_hz
        mark = stamper.mark(tenant, voice.voice_id, rate)  # the file is watermarked like a stream
        target = self._files.job_path(tenant, context.job_id, request.format)
        temporary = await context.run_blocking(self._files.temporary_path, target)
        progress = _Progress()
        try:
            writer = await context.run_blocking(AudioFileWriter, temporary, request.format, rate)
            try:
                await self._speak(context, units, voice, request, writer, progress, mark)
            finally:
                await context.run_blocking(writer.close)
            if progress.units_done == progress.skipped:
                raise SynthesisFailed("nothing in the text could be spoken")
            await context.run_blocking(self._files.publish, temporary, target)
        except BaseException:
            temporary.unlink(missing_ok=True)
            raise
        finally:
            await self._meter(tenant, progress, rate)
        return {
            "audio_url": f"/v1/jobs/{context.job_id}/audio",
            "duration_s": round(progress.samples / rate, 3),
            "format": request.format,
            "characters": progress.characters,
            "sample_rate_hz": rate,
            "voice": voice.voice_id,
            "skipped_units": progress.skipped,
        }

    async def _speak(self, context: JobContext, units: Sequence[PlannedUnit],
                     voice: ResolvedVoice, request: SynthesisRequest, writer: AudioFileWriter,
                     progress: _Progress, mark: stamp.StreamMark) -> None:
        spoken = [i for i, unit in enumerate(units) if unit.text]
        progress.skipped = progress.units_done = len(units) - len(spoken)
        speed = engine_speed(request.speed, request.pitch, voice.conversion)
        f0 = engine_f0(voice.conversion, voice.scheduler.engine)
        requests = [SynthesisUnit(units[i].text, voice.engine_voice, speed,
                                  language=request.language, f0=f0) for i in spoken]
        rate = voice.scheduler.engine.sample_rate_hz

        def voiced(chunk: FloatAudio) -> FloatAudio:
            """A whole unit through the voice's conversion and the pitch option (one pass)."""
            if not needs_stage(voice.conversion, request.pitch):
                return chunk
            stage = UnitStage(voice.conversion, request.pitch, rate)
            return np.concatenate([stage.feed(chunk), stage.flush()])

        async def on_event(index: int, event: UnitAudio | UnitFailed) -> None:
            unit = units[spoken[index]]
            if isinstance(event, UnitFailed):
                if event.code not in SKIPPABLE_FAILURES:
                    raise SynthesisFailed(f"unit {spoken[index]} could not be spoken: "
                                          f"{event.message}")
                progress.skipped += 1
                progress.pending_audio.clear()
            else:
                progress.pending_audio.append(event.audio)
                if not event.unit_finished:
                    return
                progress.characters += unit.characters
            audio = progress.pending_audio
            progress.pending_audio = []
            if audio:
                chunk = np.concatenate(audio)
                await context.run_blocking(lambda: writer.write(mark.process(voiced(chunk))))
            progress.samples = writer.samples
            progress.units_done += 1
            await context.progress(progress.units_done / len(units))

        async with OfflineStream(voice.scheduler,
                                 units_in_flight=self.config.units_in_flight) as stream:
            await stream.speak(requests, on_event)

    async def _meter(self, tenant: TenantId, progress: _Progress, rate: int) -> None:
        try:
            await self._tenants.meter(tenant, progress.characters, progress.samples / rate)
        except Exception:
            log.exception("could not meter %d characters of tenant %s", progress.characters,
                          tenant)

    # -- result files ------------------------------------------------------------------------------

    async def _job_failed(self, job: Job, error: JobError) -> None:
        """Failure hook: a failed job keeps no audio, even one interrupted by a crash between
        publishing its file and finishing."""
        for audio_format in AUDIO_FORMATS:
            await self._runner.run_blocking(self._files.remove_job_result, job.tenant,
                                            job.job_id, audio_format)

    async def sweep(self) -> int:
        """Delete result files whose job no longer exists (expired), and temporary files a dead
        process left (untouched for ``sweep_interval_s``); returns how many."""
        results = await self._runner.run_blocking(lambda: list(self._files.job_results()))
        removed = await self._runner.run_blocking(self._files.remove_stale_temporaries,
                                                  self.config.sweep_interval_s)
        for tenant, job_id, extension in results:
            if await self._jobs.get(tenant, job_id) is None:
                removed += await self._runner.run_blocking(
                    self._files.remove_job_result, tenant, job_id, extension)
        return removed

    def start_sweeper(self) -> None:
        """Sweep now and every ``sweep_interval_s`` until ``close``."""
        self._sweeper = asyncio.get_running_loop().create_task(self._sweep_forever(),
                                                               name="synthesis-sweeper")

    async def _sweep_forever(self) -> None:
        while True:
            try:
                removed = await self.sweep()
                if removed:
                    log.info("removed %d expired synthesis result(s)", removed)
            except Exception:
                log.exception("sweeping expired synthesis results failed")
            await asyncio.sleep(self.config.sweep_interval_s)

    async def close(self) -> None:
        if self._sweeper is not None:
            self._sweeper.cancel()
            await asyncio.gather(self._sweeper, return_exceptions=True)
            self._sweeper = None
