"""The watermark's DSP: streaming embedding, detection, payload matching (no server, no engine).

The host audio is a synthetic voiced signal (a glottal-like pulse train with a moving pitch through
a few moving formant resonances, plus breath noise and pauses): speech-like enough for the
detector's statistics, and made in milliseconds.
"""

from __future__ import annotations

import numpy as np
import pytest
from scipy.signal import lfilter, resample_poly

from session.watermark.detect import THRESHOLD_Z, analyse, detect
from session.watermark.embed import Embedder
from session.watermark.payload import best_match, match_score, match_threshold

RATE = 22050


def voice_like(seconds: float, seed: int, rate: int = RATE) -> np.ndarray:
    """Syllables of random pitch and formants (a pulse train with breath noise through three
    resonances), with short pauses between them."""
    rng = np.random.default_rng(seed)
    parts = []
    while sum(len(p) for p in parts) < seconds * rate:
        n = int(rng.uniform(0.12, 0.3) * rate)
        f0 = rng.uniform(90, 220) * np.linspace(1.0, rng.uniform(0.85, 1.15), n)
        pulses = (np.diff(np.floor(np.cumsum(f0) / rate), prepend=0.0) > 0).astype(float)
        source = pulses + 0.05 * rng.normal(size=n)
        syllable = np.zeros(n)
        for low, high in ((300, 900), (900, 2200), (2200, 3500)):
            radius = np.exp(-np.pi * rng.uniform(80, 200) / rate)
            theta = 2 * np.pi * rng.uniform(low, high) / rate
            syllable += lfilter([1.0], [1.0, -2 * radius * np.cos(theta), radius**2], source)
        syllable *= np.hanning(n) * rng.uniform(0.3, 1.0)
        parts += [syllable, np.zeros(int(rng.uniform(0.0, 0.08) * rate))]
    out = np.concatenate(parts)[: int(seconds * rate)]
    return (0.3 * out / np.max(np.abs(out))).astype(np.float32)


def mark(audio: np.ndarray, stream_id: int, rate: int = RATE) -> np.ndarray:
    return Embedder(stream_id, rate).process(audio)


def test_streaming_in_any_chunks_equals_one_pass() -> None:
    audio = voice_like(2.0, seed=1)
    one_pass = mark(audio, 7)
    rng = np.random.default_rng(0)
    for _ in range(3):
        embedder = Embedder(7, RATE)
        cuts = np.sort(rng.integers(0, len(audio), 12))
        pieces = np.split(audio, cuts)
        streamed = np.concatenate([embedder.process(p) for p in pieces])
        assert streamed.dtype == np.float32 and len(streamed) == len(audio)
        np.testing.assert_allclose(streamed, one_pass, atol=1e-6)


def test_mark_is_quiet_relative_to_the_host() -> None:
    audio = voice_like(4.0, seed=2).astype(np.float64)
    marked = mark(audio.astype(np.float32), 9).astype(np.float64)
    snr_db = 10 * np.log10(np.sum(audio**2) / np.sum((marked - audio) ** 2))
    assert snr_db > 29.0


@pytest.mark.parametrize("seed", [3, 4])
def test_marked_clips_are_detected_and_clean_ones_are_not(seed: int) -> None:
    clean = voice_like(3.5, seed)
    marked = mark(clean, seed * 1000)
    assert detect(marked, RATE).detected
    assert not detect(clean, RATE).detected
    assert detect(marked, RATE).confidence > 0.999


def test_detection_survives_resampling_gain_and_the_telephone_band() -> None:
    marked = mark(voice_like(8.0, seed=4), 11).astype(np.float64)
    at_16k = resample_poly(marked, 320, 441)
    assert analyse(0.5 * at_16k, 16000).z > THRESHOLD_Z
    at_8k = resample_poly(marked, 160, 441)
    narrow = analyse(at_8k, 8000, narrowband=True)
    assert not narrow.wideband and narrow.z > THRESHOLD_Z


def test_silence_and_short_input_are_not_detected() -> None:
    assert detect(np.zeros(RATE * 3, dtype=np.float32), RATE).analysis.z == 0.0
    assert not detect(np.zeros(100, dtype=np.float32), RATE).detected


def test_payload_matches_its_stream_among_candidates_and_no_other() -> None:
    stream_id = 0xDEADBEEF
    analysis = analyse(mark(voice_like(12.0, seed=4), stream_id), RATE)
    others = list(range(1, 20))
    assert best_match(analysis.payload, [*others, stream_id]) == stream_id
    assert best_match(analysis.payload, others) is None
    clean = analyse(voice_like(12.0, seed=4), RATE)
    assert best_match(clean.payload, [*others, stream_id]) is None
    assert match_score(analysis.payload, stream_id) > match_threshold(20)


def test_payload_needs_the_band_above_the_telephone_band() -> None:
    marked = mark(voice_like(4.0, seed=7), 5).astype(np.float64)
    narrow = analyse(resample_poly(marked, 160, 441), 8000, narrowband=True)
    assert not narrow.payload.any()
    assert best_match(narrow.payload, [5]) is None


def test_a_clip_marked_under_one_key_is_found_only_under_that_key() -> None:
    clean = voice_like(4.0, seed=5)
    marked = Embedder(3, RATE, key=b"deployment-A").process(clean)
    assert detect(marked, RATE, key=b"deployment-A").detected
    assert not detect(marked, RATE, key=b"deployment-B").detected
    assert not detect(marked, RATE).detected  # nor under the built-in default key
    analysis = analyse(marked, RATE, key=b"deployment-A")
    assert best_match(analysis.payload, [1, 2, 3], key=b"deployment-A") == 3
    assert best_match(analysis.payload, [1, 2, 3], key=b"deployment-B") is None


def test_the_gain_follows_the_host_down_within_milliseconds() -> None:
    """When the host falls by 30 dB (a word ending), the filter's ~90 ms tail must not ring on at
    the level of the loud past: the gain follows the host's 5 ms envelope down, so 10-50 ms after
    the fall the mark is still well below the now quiet host (the 20 ms block gain it replaced
    left it at about -10 dB there; PESQ counts such frames as added noise)."""
    loud = voice_like(1.0, seed=8)
    audio = np.concatenate([loud, 10 ** -1.5 * loud]).astype(np.float32)
    residue = mark(audio, 4).astype(np.float64) - audio
    after = slice(RATE + RATE // 100, RATE + RATE // 20)
    ratio_db = 10 * np.log10(np.sum(residue[after] ** 2)
                             / np.sum(audio[after].astype(np.float64) ** 2))
    assert ratio_db < -15.0


@pytest.mark.parametrize("seed", [8, 10, 11])
def test_the_gain_follows_an_abrupt_word_end_within_a_few_milliseconds(seed: int) -> None:
    """A 30 dB step down in the middle of a loud syllable (Piper ends words this abruptly) falls
    faster than the 5 ms envelope: the 1 ms envelope must take over, so that 5-10 ms after the
    step the mark is already far below the host (the 5 ms envelope alone left it 6-13 dB below;
    PESQ counted those frames) and stays there."""
    audio = voice_like(2.0, seed=seed).astype(np.float64)
    level = np.convolve(audio**2, np.ones(RATE // 50) / (RATE // 50), "same")
    step = RATE // 2 + int(np.argmax(level[RATE // 2: 3 * RATE // 2]))
    audio[step:] *= 10 ** -1.5
    residue = mark(audio.astype(np.float32), 4).astype(np.float64) - audio

    def mark_to_host_db(start_s: float, stop_s: float) -> float:
        span = slice(step + int(start_s * RATE), step + int(stop_s * RATE))
        return float(10 * np.log10(np.sum(residue[span] ** 2) / np.sum(audio[span] ** 2)))

    assert mark_to_host_db(0.005, 0.010) < -18.0
    assert mark_to_host_db(0.010, 0.050) < -25.0
