"""The clone job end to end: a reference speaker the stock voices do not have (espeak-ng's en-us+m2),
cloned onto Piper joe with a fitted conversion stage, then spoken through a real ``Session``.

The checks are the product's promise in small: the cloned voice's held-out sentences embed closer
to the reference than the base voice's do, and they stay intelligible.
"""

from __future__ import annotations

import asyncio
import io
import shutil
import subprocess
import tempfile
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import numpy as np
import pytest
import soundfile
import soxr

from inference.engine import render_variant
from inference.piper import PiperEngine
from inference.scheduler import Scheduler, SchedulerConfig
from inference.speaker import SpeakerEncoder, cosine
from session.authn import Principal
from session.cloning import SAMPLE_TEXT, sample_file_name
from session.context import ContextAudio, ContextEvent, ContextFinished
from session.db import Stores
from session.ids import TenantId, VoiceId
from session.jobs import JobRunner
from session.session import Session, SessionConfig, SessionDefaults
from session.store.jobs import JobStatus
from session.voice_service import NewVoice, ReferenceUpload, VoiceService
from session.voices import ResolvedVoice, VoiceCatalog
from tests.asr import recognize, word_overlap
from tests.inference.fake_engine import FakeEngine
from tests.session.test_voice_service import build_service, consent

REFERENCE = (
    "The birch canoe slid on the smooth planks. Glue the sheet to the dark blue background. "
    "It's easy to tell the depth of a well. These days a chicken leg is a rare dish. "
    "Rice is often served in round bowls. The juice of lemons makes fine punch. "
    "The box was thrown beside the parked truck. The hogs were fed chopped corn and garbage. "
    "Four hours of steady work faced us. A large size in stockings is hard to sell."
)
HELD_OUT = ("Smoky fires lack flame and heat. The soft cushion broke the man's fall. "
            "The salt breeze came across from the sea.")
pytestmark = pytest.mark.skipif(shutil.which("espeak-ng") is None,
                                reason="espeak-ng (apt) makes the target speaker")


def espeak(text: str, voice: str = "en-us+m2") -> tuple[np.ndarray, int]:
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "out.wav"
        subprocess.run(["espeak-ng", "-v", voice, "-s", "160", "-w", str(out), text],
                       check=True, capture_output=True)
        audio, rate = soundfile.read(out, dtype="float32")
    return np.asarray(audio, dtype=np.float32), int(rate)


@pytest.fixture(scope="module")
def scheduler(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Scheduler]:
    # admission (throughput or late streams) is not under test: these tests speak one after another
    scheduler = Scheduler(PiperEngine(cache_dir=tmp_path_factory.mktemp("piper")),
                          SchedulerConfig(admission_utilization=None, late_window_s=0.0))
    scheduler.start()
    assert scheduler.ready.wait(120), "piper did not warm up"
    yield scheduler
    scheduler.stop()


@pytest.fixture(scope="module")
def encoder() -> SpeakerEncoder:
    return SpeakerEncoder()


@pytest.fixture
async def service(stores: Stores, tmp_path: Path, scheduler: Scheduler,
                  encoder: SpeakerEncoder) -> AsyncIterator[tuple[VoiceService, JobRunner]]:
    catalog = VoiceCatalog()
    catalog.add_engine(scheduler)
    revoked: list[tuple[TenantId, VoiceId]] = []
    service, runner, _ = build_service(stores, tmp_path, catalog, encoder, revoked)
    yield service, runner
    await runner.close()


async def speak(voice: ResolvedVoice, text: str) -> tuple[np.ndarray, int]:
    """``text`` through a real Session and Context (conversion stage included)."""
    loop = asyncio.get_running_loop()
    done = asyncio.Event()
    chunks: list[np.ndarray] = []

    def emit(event: ContextEvent) -> None:
        if isinstance(event, ContextAudio):
            chunks.append(event.audio)
        elif isinstance(event, ContextFinished):
            done.set()

    session = Session(VoiceCatalog(), SessionConfig(), SessionDefaults(voice), emit, loop)
    ctx = session.start_context("c")
    ctx.add_text(text)
    ctx.close()
    await asyncio.wait_for(done.wait(), 60)
    return np.concatenate(chunks), voice.scheduler.engine.sample_rate_hz


async def test_a_clone_sounds_closer_to_its_speaker_than_its_base_and_keeps_the_words(
        service: tuple[VoiceService, JobRunner], stores: Stores, scheduler: Scheduler,
        encoder: SpeakerEncoder) -> None:
    voices, runner = service
    audio, rate = espeak(REFERENCE)
    wav = io.BytesIO()
    soundfile.write(wav, audio, rate, format="WAV", subtype="PCM_16")
    tenant = await stores.tenants.create("cloner", "pro")
    principal = Principal(tenant.tenant_id, "key")
    profile, job = await voices.create(principal, NewVoice(
        "Target", (ReferenceUpload("ref.wav", wav.getvalue(), REFERENCE),), consent()))
    await asyncio.wait_for(runner.wait(job.job_id), 180)
    done = await stores.jobs.get(tenant.tenant_id, job.job_id)
    assert done is not None and done.status is JobStatus.SUCCEEDED, done
    assert done.result is not None and done.result["converted"] is True, done.result
    assert done.result["clone_similarity"] > done.result["base_fit_similarity"]
    assert "pitch_shift" not in done.result  # Piper has no pitch contour to move

    cloned = await voices.resolve(tenant.tenant_id, profile.voice_id)
    assert len(cloned.conversion) == 1 and cloned.engine_voice == "joe"
    base = await voices.resolve(tenant.tenant_id, "piper:joe")
    target = encoder.embed(audio, rate)
    clone_audio, clone_rate = await speak(cloned, HELD_OUT)
    base_audio, base_rate = await speak(base, HELD_OUT)
    clone_similarity = cosine(encoder.embed(clone_audio, clone_rate), target)
    base_similarity = cosine(encoder.embed(base_audio, base_rate), target)
    assert clone_similarity > base_similarity + 0.03, (clone_similarity, base_similarity)

    words = word_overlap(HELD_OUT, recognize(clone_audio, clone_rate))
    base_words = word_overlap(HELD_OUT, recognize(base_audio, base_rate))
    assert words >= 0.5 and words >= base_words - 0.25, (words, base_words)
    # the stage keeps the duration (the base speed follows the reference's speaking rate)
    plain = soxr.resample(base_audio, base_rate, clone_rate)
    assert 0.6 < len(clone_audio) / len(plain) < 1.6


async def test_a_reference_without_transcript_is_recognised_for_the_fit(
        service: tuple[VoiceService, JobRunner], stores: Stores) -> None:
    voices, runner = service
    audio, rate = espeak(REFERENCE)
    wav = io.BytesIO()
    soundfile.write(wav, audio, rate, format="WAV", subtype="PCM_16")
    tenant = await stores.tenants.create("untold", "pro")
    principal = Principal(tenant.tenant_id, "key")
    _, job = await voices.create(principal, NewVoice(
        "Untold", (ReferenceUpload("ref.wav", wav.getvalue()),), consent()))
    await asyncio.wait_for(runner.wait(job.job_id), 180)
    done = await stores.jobs.get(tenant.tenant_id, job.job_id)
    assert done is not None and done.status is JobStatus.SUCCEEDED and done.result is not None
    # the recogniser's words stood in for a transcript: the fit ran on them
    assert done.result["transcript_words"] > 10, done.result
    assert "clone_similarity" in done.result


def test_a_stock_voice_sample_is_cached_per_way_of_rendering_it() -> None:
    """Kokoro's decoders render a voice slightly differently, so a stock voice's embedding
    measured on one decoder is not reused on another; on the same one it is."""
    onnx = sample_file_name("kokoro:jm_kumo", "onnx", SAMPLE_TEXT)
    assert onnx == sample_file_name("kokoro:jm_kumo", "onnx", SAMPLE_TEXT)
    assert onnx.startswith("kokoro-jm_kumo-") and onnx.endswith(".npz")
    others = {sample_file_name("kokoro:jm_kumo", "torch-fp32", SAMPLE_TEXT),
              sample_file_name("kokoro:jf_nezumi", "onnx", SAMPLE_TEXT),
              sample_file_name("kokoro:jm_kumo", "onnx", "Another text.")}
    assert onnx not in others and len(others) == 3
    assert render_variant(FakeEngine()) == ""  # an engine with one way: no variant
