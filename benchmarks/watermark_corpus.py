"""Clips for the watermark benchmark, made offline: watermarked Piper speech and unmarked negatives.

Positives are Piper ``joe`` (the stock voice) speaking 1-2 sentences drawn from a template grammar
at a random speed, at least 3 s long. Negatives are what the watermark must not be found in:
other voices (espeak-ng, many languages and variants), the same Piper voice *without* the mark,
recorded human speech shipped with the OS (ALSA's test sounds, when installed), white and pink
noise, and music-like tone mixtures (chords of harmonic tones with vibrato and envelopes).
Everything is seeded by the clip index, so a run is reproducible.
"""

from __future__ import annotations

import io
import shutil
import subprocess
from pathlib import Path

import numpy as np
import numpy.typing as npt
import soundfile
import soxr

Audio = npt.NDArray[np.float64]

SUBJECTS = ["The committee", "My neighbour", "Our support team", "The new model", "A small bakery",
            "The river guide", "Every student", "The night train", "This software update",
            "The old library", "Your delivery", "The city council", "A quiet engineer",
            "The morning flight", "Our quarterly report", "The weather service", "Grandma",
            "The football club", "A curious cat", "The hospital"]
VERBS = ["announced", "will review", "quietly changed", "has finished", "is preparing",
         "forgot about", "carefully measured", "postponed", "celebrated", "explained",
         "recommended", "is still waiting for", "accidentally deleted", "painted", "approved"]
OBJECTS = ["the plan for next summer", "three hundred and twelve applications",
           "a surprisingly long list of questions", "the broken window on the second floor",
           "the results of the experiment", "a new schedule starting on Monday",
           "the budget for the coming year", "forty seven boxes of old photographs",
           "the recipe with fresh basil and tomatoes", "the route through the mountains",
           "your appointment at half past four", "the invoice from last October",
           "a concert in the park", "the safety instructions", "everything we discussed"]
TAILS = ["", " yesterday", " before the deadline", " without telling anyone", " on Friday",
         " at the end of the meeting", " in the rain", " for the second time this week",
         " after a long discussion", " as expected"]
QUESTIONS = ["Could you call me back when you have a moment?", "Is the office open tomorrow?",
             "What time does the museum close on Sundays?", "Have you seen my blue umbrella?",
             "Would you like tea or coffee?", "Why is the printer always out of paper?"]

ESPEAK_VOICES = ["en-us", "en-gb", "en-029", "en-gb-scotland", "en-us+f3", "en-us+m7",
                 "en-gb+f2", "en-us+m3", "en-us+f4", "en-gb-x-rp", "de", "fr", "es", "it", "nl",
                 "pl", "pt", "sv", "da", "fi", "cs", "hu", "ro", "tr", "ru", "el", "id",
                 "de+f3", "fr+m2", "es+f1"]


def sentence(rng: np.random.Generator) -> str:
    if rng.random() < 0.15:
        return str(rng.choice(QUESTIONS))
    return (f"{rng.choice(SUBJECTS)} {rng.choice(VERBS)} {rng.choice(OBJECTS)}"
            f"{rng.choice(TAILS)}.")


def text(rng: np.random.Generator, sentences: int) -> str:
    return " ".join(sentence(rng) for _ in range(sentences))


def piper_clip(engine: object, rng: np.random.Generator, min_s: float = 3.0) -> Audio:
    """Piper speech of 1-2 sentences at a random speed, at least ``min_s`` long."""
    rate = int(engine.sample_rate_hz)  # type: ignore[attr-defined]
    speed = float(rng.uniform(0.85, 1.2))
    sentences = int(rng.integers(1, 3))
    while True:
        audio = engine.synthesize_one_pass(text(rng, sentences), speed=speed)  # type: ignore[attr-defined]
        if len(audio) >= min_s * rate:
            return np.asarray(audio, dtype=np.float64)
        sentences += 1


def espeak_clip(rng: np.random.Generator, rate: int, min_s: float = 3.0) -> Audio:
    voice = str(rng.choice(ESPEAK_VOICES))
    words_per_minute = int(rng.integers(130, 200))
    sentences = 1
    while True:
        wav = subprocess.run(
            ["espeak-ng", "-v", voice, "-s", str(words_per_minute), "-p", str(rng.integers(30, 70)),
             "--stdout", text(rng, sentences)], capture_output=True, check=True).stdout
        audio, source_rate = soundfile.read(io.BytesIO(wav), dtype="float64")
        if len(audio) >= min_s * source_rate:
            return _at_rate(audio, int(source_rate), rate)
        sentences += 1


def alsa_clip(rng: np.random.Generator, rate: int, min_s: float = 3.0) -> Audio | None:
    """Recorded human speech from alsa-utils' test sounds, joined to ``min_s``; None if absent."""
    files = sorted(Path("/usr/share/sounds/alsa").glob("*_*.wav"))
    if not files:
        return None
    parts: list[Audio] = []
    while sum(len(p) for p in parts) < min_s * rate:
        audio, source_rate = soundfile.read(files[int(rng.integers(len(files)))], dtype="float64")
        mono = audio.mean(axis=1) if audio.ndim == 2 else audio
        parts.append(_at_rate(mono, int(source_rate), rate))
    return np.concatenate(parts)


def white_noise(rng: np.random.Generator, rate: int, seconds: float) -> Audio:
    return rng.normal(0.0, 0.1, int(seconds * rate))


def pink_noise(rng: np.random.Generator, rate: int, seconds: float) -> Audio:
    n = int(seconds * rate)
    spectrum = np.fft.rfft(rng.normal(0.0, 1.0, n))
    freqs = np.fft.rfftfreq(n, 1.0 / rate)
    spectrum[1:] /= np.sqrt(freqs[1:])
    spectrum[0] = 0.0
    pink = np.fft.irfft(spectrum, n)
    return 0.1 * pink / (np.std(pink) + 1e-12)


def tones(rng: np.random.Generator, rate: int, seconds: float) -> Audio:
    """A few notes of chords: harmonic tones with vibrato and attack/decay envelopes."""
    n = int(seconds * rate)
    t = np.arange(n) / rate
    out = np.zeros(n)
    notes = int(rng.integers(2, 7))
    bounds = np.sort(rng.integers(0, n, notes - 1))
    for start, end in zip(np.r_[0, bounds], np.r_[bounds, n], strict=True):
        if end - start < 16:
            continue
        span = t[start:end] - t[start]
        envelope = (1 - np.exp(-span / 0.02)) * np.exp(-span / rng.uniform(0.3, 3.0))
        for _ in range(int(rng.integers(1, 5))):
            f0 = 110.0 * 2.0 ** (rng.integers(0, 36) / 12.0)
            vibrato = 1.0 + 0.004 * np.sin(2 * np.pi * rng.uniform(4, 7) * span)
            for harmonic in range(1, int(rng.integers(2, 9))):
                if f0 * harmonic < rate / 2 - 500:
                    phase = 2 * np.pi * f0 * harmonic * np.cumsum(vibrato) / rate
                    out[start:end] += envelope * np.sin(phase) / harmonic ** rng.uniform(0.7, 2.0)
    scaled: Audio = 0.3 * out / (np.max(np.abs(out)) + 1e-12)
    return scaled


def has_espeak() -> bool:
    return shutil.which("espeak-ng") is not None


def _at_rate(audio: Audio, source: int, target: int) -> Audio:
    if source == target:
        return audio
    return np.asarray(soxr.resample(audio.astype(np.float32), source, target), dtype=np.float64)
