"""Detection: is the pattern's ripple in this audio's average log spectrum, and what payload rides it.

Steps (any sample rate in; no synchronisation, since the ripple is the same at every instant):

1. resample to ``ANALYSIS_RATE_HZ`` and take a short-time spectrum (128 ms frames, hop 32 ms);
2. per frame, each bin's power over its local mean across 9 neighbouring bins, minus 1 (this
   removes the host's spectral envelope and any gain; a ratio rather than a log difference, since
   the log of one periodogram bin is a much noisier estimate), clipped so that a single tone
   cannot dominate;
3. average over the frames that carry sound (within 45 dB of the loudest; silence carries no mark,
   since the mark is a filter of the host);
4. per chip, the bump-weighted sum ``r_j``; the pilot statistic is
   ``z = sum_j s_j r_j / sqrt(sum_j r_j^2)`` over pilot chips.

Under the null (audio that does not carry this key's pattern) the signs ``s_j`` are independent of
``r_j``, so whatever the audio, ``z`` is a sum of randomly signed terms: it has mean 0, variance 1 and,
by Hoeffding's inequality, ``P(z > t) <= exp(-t^2/2)`` -- the false-positive rate is bounded for any
input, not just for the inputs we calibrated on. The pilot lies in the telephone band, so the same
statistic serves wideband and 8 kHz audio; the payload chips above 3.5 kHz are reported only when
the audio has content there (a telephone path removes them).
"""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction

import numpy as np
import numpy.typing as npt
from scipy.ndimage import uniform_filter1d
from scipy.signal import resample_poly

from session.watermark.pattern import (
    CHIP_HZ,
    DEFAULT_KEY,
    F64,
    TELEPHONE_HIGH_HZ,
    chip_weights,
    pattern,
)

ANALYSIS_RATE_HZ = 16000
FRAME = 2048
HOP = 512
DETREND_BINS = 9
CLIP = 2.5
ACTIVE_DB = 45.0
THRESHOLD_Z = 3.72
"""``exp(-3.72^2 / 2) < 1e-3``: the Hoeffding bound on the false-positive rate at this threshold
(calibrated on the negative set too; see docs/watermark.md)."""


@dataclass(frozen=True)
class Analysis:
    """What the detector measured. ``z``: the pilot statistic; ``payload``: the statistic ``r_j`` of
    each payload chip (all zero when the audio lacks the band above 3.5 kHz), for matching stream
    ids (``session.watermark.payload``); ``seconds``: active audio analysed."""

    z: float
    payload: F64
    seconds: float
    wideband: bool

    @property
    def detected(self) -> bool:
        return self.z > THRESHOLD_Z


def to_analysis_rate(audio: npt.NDArray[np.floating], sample_rate_hz: int) -> F64:
    x = np.asarray(audio, dtype=np.float64)
    if sample_rate_hz == ANALYSIS_RATE_HZ:
        return x
    ratio = Fraction(ANALYSIS_RATE_HZ, sample_rate_hz).limit_denominator(1000)
    return np.asarray(resample_poly(x, ratio.numerator, ratio.denominator), dtype=np.float64)


def mean_detrended_spectrum(x: F64) -> tuple[F64, int]:
    """Per bin, the weighted average over active frames of the clipped, envelope-free power
    ratio; and the number of active frames."""
    if len(x) < FRAME:
        return np.zeros(FRAME // 2 + 1), 0
    frames = np.lib.stride_tricks.sliding_window_view(x, FRAME)[::HOP]
    window = np.hanning(FRAME)
    power = np.abs(np.fft.rfft(frames * window, axis=1)) ** 2
    energy = power.sum(axis=1)
    peak = float(energy.max())
    if peak <= 0.0:
        return np.zeros(power.shape[1]), 0
    active = energy > peak * 10.0 ** (-ACTIVE_DB / 10.0)
    power = power[active]
    floor = power.mean(axis=1, keepdims=True) * 1e-6 + 1e-20
    smooth = uniform_filter1d(power, DETREND_BINS, axis=1, mode="nearest") + floor
    detrended = power / smooth - 1.0
    # Wiener-like weights: a bin where steady noise (its 20th percentile over time) dominates
    # carries little of the mark, so it counts little
    noise = np.percentile(smooth, 20, axis=0, keepdims=True)
    weight = smooth / (smooth + 2.0 * noise + 1e-20)
    total = weight.sum(axis=0) + 1e-12
    return (np.clip(detrended, -CLIP, CLIP) * weight).sum(axis=0) / total, int(active.sum())


def analyse(audio: npt.NDArray[np.floating], sample_rate_hz: int, key: bytes = DEFAULT_KEY,
            narrowband: bool = False) -> Analysis:
    """Measure the pilot and payload statistics of ``audio`` (mono, any rate, any length).
    ``narrowband``: use only telephone-band chips (the audio passed through 8 kHz)."""
    x = to_analysis_rate(audio, sample_rate_hz)
    spectrum, frames = mean_detrended_spectrum(x)
    pat = pattern(key)
    freqs: F64 = np.fft.rfftfreq(FRAME, 1.0 / ANALYSIS_RATE_HZ).astype(np.float64)
    index, bump = chip_weights(pat, freqs)
    chips = len(pat.starts_hz)
    weighted = np.where(index >= 0, spectrum * bump, 0.0)
    r = np.bincount(np.maximum(index, 0), weights=weighted, minlength=chips)[:chips]
    wideband = (not narrowband and sample_rate_hz > 2 * TELEPHONE_HIGH_HZ + 500
                and _has_high_band(x))
    usable = wideband | (pat.starts_hz + CHIP_HZ <= TELEPHONE_HIGH_HZ)
    pilot = pat.pilot & usable
    z = _signed_z(r[pilot] * pat.signs[pilot])
    payload = np.where(usable[pat.payload], r[pat.payload], 0.0)
    seconds = frames * HOP / ANALYSIS_RATE_HZ
    return Analysis(z, payload, seconds, bool(wideband))


def _signed_z(terms: F64) -> float:
    norm = float(np.sqrt(np.sum(terms**2)))
    return float(np.sum(terms) / norm) if norm > 0.0 else 0.0


def _has_high_band(x: F64) -> bool:
    """True when the audio has content above the telephone band (not band-limited to 4 kHz)."""
    spectrum = np.abs(np.fft.rfft(x[: ANALYSIS_RATE_HZ * 4])) ** 2
    freqs = np.fft.rfftfreq(min(len(x), ANALYSIS_RATE_HZ * 4), 1.0 / ANALYSIS_RATE_HZ)
    low = spectrum[(freqs > 300) & (freqs < 3400)].mean() if len(x) else 0.0
    high = spectrum[(freqs > 4500) & (freqs < 7000)].mean() if len(x) else 0.0
    return bool(high > low * 1e-4)


@dataclass(frozen=True)
class Detection:
    """The verdict on one clip. ``confidence``: 1 minus the bound on the chance that unmarked audio
    scores this high (0 when the statistic is not positive); ``analysis``: the raw statistics."""

    detected: bool
    confidence: float
    analysis: Analysis


def detect(audio: npt.NDArray[np.floating], sample_rate_hz: int, key: bytes = DEFAULT_KEY,
           narrowband: bool = False) -> Detection:
    """Detect the watermark in ``audio`` (mono, any rate; ``narrowband``: it passed through
    8 kHz, so only telephone-band chips count)."""
    analysis = analyse(audio, sample_rate_hz, key, narrowband)
    z = max(analysis.z, 0.0)
    confidence = 1.0 - min(1.0, float(np.exp(-z * z / 2.0)))
    return Detection(analysis.detected, confidence, analysis)
