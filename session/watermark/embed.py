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
from scipy.fft import irfft, next_fast_len, rfft
from scipy.signal import lfilter

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
    cepstrum = irfft(log_mag, DESIGN_FFT)
    half = DESIGN_FFT // 2
    folded = np.zeros(DESIGN_FFT)  # causal part doubled: the minimum-phase cepstrum
    folded[0] = cepstrum[0]
    folded[1:half] = 2.0 * cepstrum[1:half]
    folded[half] = cepstrum[half]
    impulse = irfft(np.exp(rfft(folded)), DESIGN_FFT)
    taps = int(TAPS_S * sample_rate_hz)
    g: F64 = impulse[:taps].copy()
    g[0] -= 1.0
    fade = max(1, taps // 8)  # the min-phase tail is already tiny; fade it to avoid a step
    g[-fade:] *= 0.5 * (1.0 + np.cos(np.linspace(0.0, np.pi, fade)))
    return g


class Embedder:
    """Watermarks one stream. Call ``process`` with each chunk, in order; it returns the marked
    chunk at once (same length, float32).

    The filtered part ``g * x`` is scaled, sample by sample, by a gain that holds the mark's power
    ``target_snr_db`` below the host's, both measured by causal one-pole envelopes of ``ENVELOPE_S``
    (5 ms): when a word ends the host's envelope falls within milliseconds and the mark (the
    filter's ~90 ms tail of the loud past) is pulled down with it, instead of ringing into the quiet
    frame after it, which is what PESQ and the ear notice most. Piper ends many words abruptly
    (25-30 dB within 10 ms), faster than even a 5 ms envelope falls: for those few milliseconds the
    mark stood only 10 dB below the host, and such frames alone cost the worst clips 0.04 of PESQ.
    The host's level is therefore the lesser of the 5 ms envelope and ``FALL_MARGIN`` times a 1 ms
    one (``FAST_ENVELOPE_S``): the fast envelope takes over only when the host has just fallen well
    below its 5 ms level (a word's end), not in the ordinary dips between glottal pulses, where a
    gain following a 1 ms envelope would modulate the mark at the pitch rate and blur its ripple.
    The gain is capped at ``MAX_GAIN`` times the nominal depth: the SNR budget alone would deepen
    the ripple in voiced frames, whose power sits below the marked band, up to several dB per
    chip -- cheap in SNR, audible in PESQ.
    The envelopes are IIR filters with their state carried across chunks, so the output is the same
    however the stream is cut (up to float rounding) and each sample's gain depends only on
    samples up to it (no look-ahead).
    """

    ENVELOPE_S = 0.005
    FAST_ENVELOPE_S = 0.001
    FALL_MARGIN = 3.0
    """How far (power ratio) the 1 ms envelope must sit below the 5 ms one before it rules: about
    5 dB, so a word's end pulls the gain down at once while voiced frames keep most of their mark
    (on the 24 clips of the seed-2026 run with the largest PESQ drop: worst drop 0.120 -> 0.088,
    mean pilot ``z`` 1-2 % lower; a margin of 2 lowered ``z`` twice as much for little more)."""
    MAX_GAIN = 1.5
    DEFAULT_TARGET_SNR_DB = 30.5

    def __init__(self, stream_id: int, sample_rate_hz: int, key: bytes = DEFAULT_KEY,
                 strength: float = 0.1,
                 target_snr_db: float = DEFAULT_TARGET_SNR_DB) -> None:
        self.sample_rate_hz = sample_rate_hz
        self._g = design_filter(stream_id, sample_rate_hz, key, strength)
        self._tail = np.zeros(len(self._g) - 1)
        self._spectra: dict[int, npt.NDArray[np.complex128]] = {}
        self._target = 10.0 ** (-target_snr_db / 10.0)
        decay = float(np.exp(-1.0 / (self.ENVELOPE_S * sample_rate_hz)))
        self._b = np.array([1.0 - decay])
        self._a = np.array([1.0, -decay])
        self._host_state = np.zeros(1)
        fast = float(np.exp(-1.0 / (self.FAST_ENVELOPE_S * sample_rate_hz)))
        self._fast_b = np.array([self.FALL_MARGIN * (1.0 - fast)])
        self._fast_a = np.array([1.0, -fast])
        self._fast_state = np.zeros(1)
        self._mark_state = np.zeros(1)

    def process(self, chunk: FloatAudio) -> FloatAudio:
        if len(chunk) == 0:
            return chunk
        x = chunk.astype(np.float64)
        size = next_fast_len(len(x) + len(self._g) - 1, real=True)
        wet = irfft(rfft(x, size) * self._spectrum(size), size)
        wet = wet[: len(x) + len(self._g) - 1]
        wet[: len(self._tail)] += self._tail
        self._tail = wet[len(x):]
        wet = wet[: len(x)]
        power = x * x
        host, self._host_state = lfilter(self._b, self._a, power, zi=self._host_state)
        fast, self._fast_state = lfilter(self._fast_b, self._fast_a, power, zi=self._fast_state)
        np.minimum(host, fast, out=host)  # fast: FALL_MARGIN times the 1 ms envelope
        mark, self._mark_state = lfilter(self._b, self._a, wet * wet, zi=self._mark_state)
        gain = host  # in place from here on: the gain is sqrt(target * host / mark), capped
        gain *= self._target
        gain /= np.maximum(mark, 1e-30, out=mark)
        np.sqrt(gain, out=gain)
        np.minimum(gain, self.MAX_GAIN, out=gain)
        wet *= gain
        wet += x
        marked: FloatAudio = wet.astype(np.float32)  # the encoders downstream clip
        return marked

    def _spectrum(self, size: int) -> npt.NDArray[np.complex128]:
        """The filter's spectrum at an FFT size (a stream's chunks come in a few sizes)."""
        spectrum = self._spectra.get(size)
        if spectrum is None:
            if len(self._spectra) >= 4:
                self._spectra.pop(next(iter(self._spectra)))
            spectrum = self._spectra[size] = rfft(self._g, size)
        return spectrum
