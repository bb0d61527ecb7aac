"""The ``pitch`` option through a real Session and Piper: pitch moves by the asked ratio, duration and
words stay, word timings follow the shifted audio, and the stage streams (chunking does not change
its output)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import numpy as np
import pytest

from inference.conversion.model import mean_f0
from inference.piper import PiperEngine
from inference.scheduler import Scheduler, SchedulerConfig
from session.context import ContextAudio, ContextEvent, ContextFinished, ContextWords
from session.session import Session, SessionConfig, SessionDefaults
from session.voices import VoiceCatalog
from session.voicing import UnitStage, engine_speed, pitch_ratio
from tests.asr import recognize, word_overlap

TEXT = "The birch canoe slid on the smooth planks. Glue the sheet to the dark blue background."


@pytest.fixture(scope="module")
def catalog(tmp_path_factory: pytest.TempPathFactory) -> Iterator[VoiceCatalog]:
    # no admission control (throughput or late streams): the check is about audio, not
    # capacity on a busy test machine
    scheduler = Scheduler(PiperEngine(cache_dir=tmp_path_factory.mktemp("piper")),
                          SchedulerConfig(admission_utilization=None, late_window_s=0.0))
    scheduler.start()
    assert scheduler.ready.wait(120), "piper did not warm up"
    catalog = VoiceCatalog()
    catalog.add_engine(scheduler)
    yield catalog
    scheduler.stop()


async def speak(catalog: VoiceCatalog, pitch: float) -> tuple[np.ndarray, list[float]]:
    loop = asyncio.get_running_loop()
    done = asyncio.Event()
    chunks: list[np.ndarray] = []
    word_ends: list[float] = []

    def emit(event: ContextEvent) -> None:
        if isinstance(event, ContextAudio):
            chunks.append(event.audio)
        elif isinstance(event, ContextWords):
            word_ends.extend(w.end_ms for w in event.words)
        elif isinstance(event, ContextFinished):
            done.set()

    voice = catalog.resolve("piper:joe")
    session = Session(catalog, SessionConfig(), SessionDefaults(voice, pitch=pitch), emit, loop)
    ctx = session.start_context("c")
    ctx.add_text(TEXT)
    ctx.close()
    await asyncio.wait_for(done.wait(), 60)
    return np.concatenate(chunks), word_ends


@pytest.mark.parametrize("semitones", [4.0, -4.0])
async def test_pitch_moves_by_its_ratio_and_keeps_duration_and_words(
        catalog: VoiceCatalog, semitones: float) -> None:
    rate = 22050
    plain, plain_words = await speak(catalog, 0.0)
    shifted, shifted_words = await speak(catalog, semitones)
    f0_ratio = mean_f0(shifted, rate) / mean_f0(plain, rate)
    assert f0_ratio == pytest.approx(pitch_ratio(semitones), rel=0.08)
    assert len(shifted) / len(plain) == pytest.approx(1.0, abs=0.15)
    assert word_overlap(TEXT, recognize(shifted, rate)) >= 0.5
    # word times are in the shifted audio's time
    assert len(shifted_words) == len(plain_words)
    assert max(shifted_words) <= 1000 * len(shifted) / rate + 1


def test_the_stage_streams_and_the_engine_is_slowed_by_the_ratio() -> None:
    rng = np.random.default_rng(3)
    t = np.arange(22050) / 22050
    audio = (0.3 * np.sin(2 * np.pi * 140 * t) + 0.01 * rng.standard_normal(t.size))
    audio = audio.astype(np.float32)
    one = UnitStage((), 3.0, 22050)
    whole = np.concatenate([one.feed(audio), one.flush()])
    two = UnitStage((), 3.0, 22050)
    parts = [two.feed(audio[i:i + 1000]) for i in range(0, audio.size, 1000)]
    streamed = np.concatenate([*parts, two.flush()])
    assert streamed.shape == whole.shape
    np.testing.assert_allclose(streamed, whole, atol=1e-5)
    assert engine_speed(1.0, 3.0, ()) == pytest.approx(1 / pitch_ratio(3.0))
    assert one.time_ratio == pytest.approx(pitch_ratio(3.0))
