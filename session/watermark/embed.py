"""Streaming embedding: one causal minimum-phase FIR filter per stream, applied chunk by chunk.

The ripple of ``session.watermark.pattern`` (with the stream's payload bits folded into the signs of
the payload chips) is a target log-magnitude response ``L(f)``. The filter with ``|H| = exp(L)`` and
the least delay is its minimum-phase version, made with the real cepstrum (fold the cepstrum onto
positive quefrencies, exponentiate). Being causal it needs no look-ahead: each output sample depends
only on input samples up to it, so the embedder emits every chunk the moment it arrives (no added
latency), and any split of a stream into chunks gives the same output as one pass (up to float
rounding). The filter is ``1 + g`` with ``g`` tiny; only ``g * x`` is computed (FFT convolution),
with its tail carried into the next chunk.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
from scipy.fft import next_fast_len

from inference.engine import FloatAudio
from session.watermark.pattern import (
    DEFAULT_KEY,
    F64,
    Pattern,
    chip_signs,
    chip_weights,
    pattern,
)

DESIGN_FFT = 16384
TAPS_S = 0.092
"""Filter length in seconds (the ripple's 31.25 Hz chips need about three chip periods)."""


def target_log_magnitude(pat: Pattern, signs: F64, freqs_hz: F64) -> F64:
    """``L(f)``: each chip's half-sine bump with its sign and depth."""
    index, bump = chip_weights(pat, freqs_hz)
    safe = np.maximum(index, 0)
    return np.where(index >= 0, signs[safe] * pat.depth[safe] * bump, 0.0)


def design_filter(stream_id: int, sample_rate_hz: int, key: bytes = DEFAULT_KEY,
                  strength: float = 0.1) -> F64:
    """``g``: the minimum-phase filter of the stream's ripple, minus the unit impulse (about a
    millisecond of CPU; done once per stream)."""
    pat = pattern(key, strength)
    freqs: F64 = np.fft.rfftfreq(DESIGN_FFT, 1.0 / sample_rate_hz).astype(np.float64)
    log_mag = target_log_magnitude(pat, chip_signs(pat, stream_id, key), freqs)
    cepstrum = np.fft.irfft(log_mag, DESIGN_FFT)
    half = DESIGN_FFT // 2
    folded = np.zeros(DESIGN_FFT)  # causal part doubled: the minimum-phase cepstrum
    folded[0] = cepstrum[0]
    folded[1:half] = 2.0 * cepstrum[1:half]
    folded[half] = cepstrum[half]
    impulse = np.fft.irfft(np.exp(np.fft.rfft(folded)), DESIGN_FFT)
    taps = int(TAPS_S * sample_rate_hz)
    g: F64 = impulse[:taps].copy()
    g[0] -= 1.0
    fade = max(1, taps // 8)  # the min-phase tail is already tiny; fade it to avoid a step
    g[-fade:] *= 0.5 * (1.0 + np.cos(np.linspace(0.0, np.pi, fade)))
    return g


class Embedder:
    """Watermarks one stream. Call ``process`` with each chunk, in order; it returns the marked
    chunk at once (same length, float32).

    The filtered part is scaled by a gain that holds the mark's power ``target_snr_db`` below the
    host's, measured over the recent past (exponential average, ``AVERAGE_S``): sibilant-rich
    speech, where the ripple's high band costs most, gets a shallower mark; voiced speech a deeper
    one (at most ``MAX_GAIN`` times the nominal). The gain changes only at fixed block boundaries
    of the stream and depends only on earlier blocks, so the output stays independent of how the
    stream is cut into chunks.
    """

    BLOCK = 256
    AVERAGE_S = 0.02
    MAX_GAIN = 3.0
    DEFAULT_TARGET_SNR_DB = 33.5

    def __init__(self, stream_id: int, sample_rate_hz: int, key: bytes = DEFAULT_KEY,
                 strength: float = 0.1,
                 target_snr_db: float = DEFAULT_TARGET_SNR_DB) -> None:
        self.sample_rate_hz = sample_rate_hz
        self._g = design_filter(stream_id, sample_rate_hz, key, strength)
        self._tail = np.zeros(len(self._g) - 1)
        self._spectra: dict[int, npt.NDArray[np.complex128]] = {}
        self._target = 10.0 ** (-target_snr_db / 10.0)
        self._decay = float(np.exp(-self.BLOCK / (self.AVERAGE_S * sample_rate_hz)))
        self._host = 0.0
        self._mark = 0.0
        self._block_host = 0.0
        self._block_mark = 0.0
        self._filled = 0
        self._gain = 1.0

    def process(self, chunk: FloatAudio) -> FloatAudio:
        if len(chunk) == 0:
            return chunk
        x = chunk.astype(np.float64)
        size = next_fast_len(len(x) + len(self._g) - 1, real=True)
        wet = np.fft.irfft(np.fft.rfft(x, size) * self._spectrum(size), size)
        wet = wet[: len(x) + len(self._g) - 1]
        wet[: len(self._tail)] += self._tail
        self._tail = wet[len(x):]
        wet = wet[: len(x)]
        # cut the chunk where the stream's gain blocks end; energies per piece in one pass
        first = self.BLOCK - self._filled
        cuts = np.arange(first, len(x), self.BLOCK)
        edges = np.concatenate(([0], cuts))
        host = np.add.reduceat(x * x, edges)
        mark = np.add.reduceat(wet * wet, edges)
        gains = np.empty(len(edges))
        for i in range(len(edges)):
            gains[i] = self._gain
            self._block_host += float(host[i])
            self._block_mark += float(mark[i])
            if i < len(cuts):
                self._next_block()
        self._filled = self._filled + len(x) if not len(cuts) else len(x) - int(cuts[-1])
        if self._filled == self.BLOCK:
            self._next_block()
            self._filled = 0
        wet *= np.repeat(gains, np.diff(np.concatenate((edges, [len(x)]))))
        marked: FloatAudio = (x + wet).astype(np.float32)  # the encoders downstream clip
        return marked

    def _spectrum(self, size: int) -> npt.NDArray[np.complex128]:
        """The filter's spectrum at an FFT size (a stream's chunks come in a few sizes)."""
        spectrum = self._spectra.get(size)
        if spectrum is None:
            if len(self._spectra) >= 4:
                self._spectra.pop(next(iter(self._spectra)))
            spectrum = self._spectra[size] = np.fft.rfft(self._g, size)
        return spectrum

    def _next_block(self) -> None:
        self._host = self._decay * self._host + self._block_host
        self._mark = self._decay * self._mark + self._block_mark
        self._block_host = self._block_mark = 0.0
        if self._mark > 0.0:
            self._gain = min(self.MAX_GAIN, float(np.sqrt(self._target * self._host / self._mark)))
