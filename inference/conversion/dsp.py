"""Signal pieces the voice-conversion stage shares between fitting and streaming.

Everything is framed the same way in both places so that what the mapping is fitted on is exactly
what the streaming applier computes: a 1024-point STFT (about 43 ms at 24 kHz) with a periodic
sqrt-Hann window, hop 256 (75 % overlap; analysis x synthesis window = Hann, whose overlapped sum
at a quarter hop is the constant 2). Envelope features are log energies of mel bands (smooth
enough to ignore harmonics once truncated to a few cepstral coefficients).
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
import numpy.typing as npt

F32 = npt.NDArray[np.float32]
F64 = npt.NDArray[np.float64]

N_FFT = 1024
HOP = 256
N_MELS = 48
N_CEPS = 20
"""Cepstral coefficients (c1..c20 of the log-mel bands) that describe a frame's envelope."""
_MEL_TOP_HZ = 8000.0
"""Bands end here: speaker encoders and the mapping's evidence (references are often 16 kHz)
stop at 8 kHz; bins above take the gain of the top band."""
_FLOOR = 1e-10


@lru_cache(maxsize=4)
def window() -> F64:
    """Periodic sqrt-Hann, used for analysis and synthesis."""
    n = np.arange(N_FFT)
    return np.sqrt(0.5 - 0.5 * np.cos(2 * np.pi * n / N_FFT))


def frames(audio: F32, count: int) -> F64:
    """``count`` windowed frames of ``audio``, frame ``i`` starting at sample ``i * HOP``."""
    idx = np.arange(count)[:, None] * HOP + np.arange(N_FFT)[None, :]
    out: F64 = audio[idx].astype(np.float64) * window()
    return out


def power_spectra(audio: F32) -> F64:
    """Power spectra of all full frames of ``audio`` (no padding), shape (frames, N_FFT/2+1)."""
    count = max(0, 1 + (len(audio) - N_FFT) // HOP)
    if count == 0:
        return np.zeros((0, N_FFT // 2 + 1))
    spectra: F64 = np.abs(np.fft.rfft(frames(audio, count), axis=1)) ** 2
    return spectra


@lru_cache(maxsize=8)
def mel_filterbank(sample_rate_hz: int) -> F64:
    """Triangular mel filters (N_MELS, N_FFT/2+1), 50 Hz to min(8 kHz, Nyquist)."""
    top = min(_MEL_TOP_HZ, sample_rate_hz / 2)
    mels = np.linspace(_hz_to_mel(50.0), _hz_to_mel(top), N_MELS + 2)
    edges = _mel_to_hz(mels)
    freqs = np.fft.rfftfreq(N_FFT, 1.0 / sample_rate_hz)
    bank = np.zeros((N_MELS, len(freqs)))
    for m in range(N_MELS):
        lo, mid, hi = edges[m], edges[m + 1], edges[m + 2]
        rise = (freqs - lo) / (mid - lo)
        fall = (hi - freqs) / (hi - mid)
        bank[m] = np.clip(np.minimum(rise, fall), 0.0, None)
    bank /= np.maximum(bank.sum(axis=1, keepdims=True), _FLOOR)
    return bank


@lru_cache(maxsize=8)
def band_to_bins(sample_rate_hz: int) -> F64:
    """(N_FFT/2+1, N_MELS) interpolation from band values (at band centres) to every bin; bins
    below the first centre take the first band, above the last the last band."""
    top = min(_MEL_TOP_HZ, sample_rate_hz / 2)
    centres = _mel_to_hz(np.linspace(_hz_to_mel(50.0), _hz_to_mel(top), N_MELS + 2))[1:-1]
    freqs = np.fft.rfftfreq(N_FFT, 1.0 / sample_rate_hz)
    eye = np.eye(N_MELS)
    return np.stack([np.interp(freqs, centres, eye[m]) for m in range(N_MELS)], axis=1)


def log_mel(power: F64, sample_rate_hz: int) -> F64:
    """Natural-log mel band energies, shape (frames, N_MELS)."""
    out: F64 = np.log(power @ mel_filterbank(sample_rate_hz).T + _FLOOR)
    return out


@lru_cache(maxsize=2)
def dct_matrix() -> F64:
    """Orthonormal DCT-II rows 0..N_CEPS over N_MELS bands: log-mel -> cepstrum."""
    n = np.arange(N_MELS)
    rows = [np.cos(np.pi * k * (2 * n + 1) / (2 * N_MELS)) for k in range(N_CEPS + 1)]
    mat: F64 = np.stack(rows) * np.sqrt(2.0 / N_MELS)
    mat[0] /= np.sqrt(2.0)
    return mat


def cepstra(logmel: F64) -> F64:
    """c1..c20 (level-free envelope shape) of log-mel rows."""
    out: F64 = logmel @ dct_matrix()[1:].T
    return out


@lru_cache(maxsize=64)
def warp_operator(sample_rate_hz: int, warp: float) -> F64:
    """(N_MELS, N_MELS) matrix that turns a frame's log-mel row into the log-power gain that moves
    its smooth envelope (cepstrally liftered to c0..c20) to ``warp`` times the frequency
    (warped(f) = envelope(f / warp); 1.0 gives zeros). Band centres outside the range hold the
    edge value."""
    top = min(_MEL_TOP_HZ, sample_rate_hz / 2)
    centres = _mel_to_hz(np.linspace(_hz_to_mel(50.0), _hz_to_mel(top), N_MELS + 2))[1:-1]
    eye = np.eye(N_MELS)
    interp = np.stack([np.interp(centres / warp, centres, eye[m]) for m in range(N_MELS)], axis=1)
    lifter = dct_matrix().T @ dct_matrix()
    out: F64 = (interp - eye) @ lifter
    return out


def frame_energy_db(power: F64) -> F64:
    out: F64 = 10 * np.log10(power.sum(axis=1) + _FLOOR)
    return out


def _hz_to_mel(hz: float | F64) -> F64:
    return np.asarray(2595.0 * np.log10(1.0 + np.asarray(hz) / 700.0), dtype=np.float64)


def _mel_to_hz(mel: float | F64) -> F64:
    return np.asarray(700.0 * (10.0 ** (np.asarray(mel) / 2595.0) - 1.0), dtype=np.float64)
