"""The streaming applier: base-voice audio in, converted audio out, chunk by chunk.

Two stages, each with explicit state and output that does not depend on the chunking:

1. ``StreamResampler`` by ``pitch_ratio`` (pitch and formants up or down; the base voice was asked
   to speak correspondingly slower, so durations come back);
2. a filter on the resampled audio's own STFT (1024-point sqrt-Hann frames, hop 256): each
   frame's envelope class posteriors pick a log-power gain per mel band, averaged over
   ``smoothing_frames`` frames centred on the frame (so it waits for that many frames of
   lookahead), spread over the FFT bins and applied to the magnitude; the phase is the base's.
   Overlap-add resynthesis; silence in, silence out.

Latency: the filter holds back ``N_FFT - HOP + (smoothing_frames // 2) * HOP`` samples (about
75 ms at 24 kHz with 9 frames), the resampler 16 input samples. Cost: one rfft/irfft pair and a
few small matrix products per 256 samples (well under 1 % of a core at 24 kHz on this CPU; the
benchmark measures it). ``feed`` returns whatever is final so far (possibly nothing); ``flush``
returns the rest, so ``feed(a) + feed(b) + flush()`` equals ``feed(a + b) + flush()`` to float
rounding.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

from inference.conversion import dsp
from inference.conversion.model import ConversionParams
from inference.conversion.resample import StreamResampler
from inference.engine import F0Shift

F32 = npt.NDArray[np.float32]
F64 = npt.NDArray[np.float64]


Blend = Sequence[tuple[ConversionParams, float]]
"""Fitted conversions and their weights: one for a cloned voice, several for a mix."""


class SpectralFilter:
    """The filter stage alone (no resampling); see the module note.

    ``params`` is one fitted conversion or a ``Blend``: each part's band gains (its own classes,
    offsets and envelope warp) are weighted and summed, so a mix of voices filters by the
    weighted mean of what each would apply. Weights are used as given: a mix normalises them over
    all its voices, so a stock voice in it counts as no conversion with its share. ``formant_warp`` adds one more
    envelope warp (the ``pitch`` option uses ``1 / ratio`` to move formants back after a pitch
    shift by resampling). All parts must be fitted at one sample rate."""

    def __init__(self, params: ConversionParams | Blend, formant_warp: float = 1.0,
                 sample_rate_hz: int | None = None) -> None:
        parts = [(params, 1.0)] if isinstance(params, ConversionParams) else list(params)
        if any(not 0.0 <= weight <= 1.0 for _, weight in parts):
            raise ValueError("blend weights must be between 0 and 1")
        rates = {p.sample_rate_hz for p, _ in parts} | (
            {sample_rate_hz} if sample_rate_hz is not None else set())
        if len(rates) != 1:
            raise ValueError(f"conversions at different sample rates {sorted(rates)}")
        self.sample_rate_hz = rates.pop()
        self._parts = parts
        self._half = max((p.smoothing_frames for p, _ in parts), default=1) // 2
        self._to_bins = dsp.band_to_bins(self.sample_rate_hz)
        warp = dsp.warp_operator(self.sample_rate_hz, formant_warp).T
        for p, weight in self._parts:
            warp = warp + dsp.warp_operator(p.sample_rate_hz, p.warp).T * (p.strength * weight)
        self._warp = warp
        pad = dsp.N_FFT - dsp.HOP
        self._input = np.zeros(pad, dtype=np.float64)  # leading zeros: first samples get full OLA
        self._input_start = 0  # absolute index (padded signal) of _input[0]
        self._received = 0  # real samples received
        self._spectra = np.zeros((0, dsp.N_FFT // 2 + 1), dtype=np.complex128)  # not yet synthesised
        self._deltas = np.zeros((0, dsp.N_MELS))  # raw band gains of frames from _delta_start
        self._delta_start = 0
        self._next_frame = 0  # next frame to analyse
        self._next_synth = 0  # next frame to synthesise
        self._ola = np.zeros(0, dtype=np.float64)  # overlap-add buffer from sample _ola_start
        self._ola_start = 0
        self._pad = pad

    def feed(self, chunk: F32) -> F32:
        data = np.asarray(chunk, dtype=np.float64).reshape(-1)
        self._input = np.concatenate([self._input, data])
        self._received += len(data)
        self._analyse()
        return self._synthesise(final=False)

    def flush(self) -> F32:
        # silence after the end so the last samples get full overlap-add
        tail = np.zeros(self._pad + dsp.HOP, dtype=np.float64)
        self._input = np.concatenate([self._input, tail])
        self._analyse()
        return self._synthesise(final=True)

    def _analyse(self) -> None:
        total = self._input_start + len(self._input)
        count = (total - dsp.N_FFT) // dsp.HOP + 1 - self._next_frame
        if count <= 0:
            return
        offset = self._next_frame * dsp.HOP - self._input_start
        idx = offset + np.arange(count)[:, None] * dsp.HOP + np.arange(dsp.N_FFT)[None, :]
        spectra = np.fft.rfft(self._input[idx] * dsp.window(), axis=1)
        power = np.abs(spectra) ** 2
        logmel = dsp.log_mel(power, self.sample_rate_hz)
        deltas = logmel @ self._warp
        if self._parts:
            ceps = dsp.cepstra(logmel)
            for params, weight in self._parts:
                deltas += params.posteriors(ceps) @ params.offsets * (params.strength * weight)
        self._deltas = np.concatenate([self._deltas, deltas])
        self._spectra = np.concatenate([self._spectra, spectra])
        self._next_frame += count
        drop = self._next_frame * dsp.HOP - self._input_start
        if drop > 0:
            self._input = self._input[drop:]
            self._input_start += drop

    def _synthesise(self, final: bool) -> F32:
        first = self._next_synth
        last = self._next_frame if final else self._next_frame - self._half
        if last > first:
            # centred moving average of the raw band gains, clipped at the ends of the stream
            lo = np.maximum(np.arange(first, last) - self._half, 0) - self._delta_start
            hi = np.minimum(np.arange(first, last) + self._half + 1, self._next_frame)
            hi = hi - self._delta_start
            cum = np.concatenate([np.zeros((1, dsp.N_MELS)), np.cumsum(self._deltas, axis=0)])
            band = (cum[hi] - cum[lo]) / (hi - lo)[:, None]
            gains = np.exp(0.5 * (band @ self._to_bins.T))
            spectra = self._spectra[: last - first] * gains
            self._spectra = self._spectra[last - first:]
            frames = np.fft.irfft(spectra, n=dsp.N_FFT, axis=1) * (dsp.window() * 0.5)
            end = last * dsp.HOP + dsp.N_FFT - dsp.HOP - self._ola_start
            if end > len(self._ola):
                self._ola = np.concatenate([self._ola, np.zeros(end - len(self._ola))])
            for k, frame in enumerate(frames):
                at = (first + k) * dsp.HOP - self._ola_start
                self._ola[at:at + dsp.N_FFT] += frame
            self._next_synth = last
            keep = max(0, last - self._half) - self._delta_start
            if keep > 0:
                self._deltas = self._deltas[keep:]
                self._delta_start += keep
        # samples before the next frame to synthesise are final (all frames over them are added)
        ready_to = min(self._next_synth * dsp.HOP, self._pad + self._received)
        if final:
            ready_to = self._pad + self._received
        if ready_to <= self._ola_start:
            return np.zeros(0, dtype=np.float32)
        out = self._ola[: ready_to - self._ola_start]
        skip = max(0, self._pad - self._ola_start)  # the leading pad is not part of the output
        self._ola = self._ola[ready_to - self._ola_start:]
        self._ola_start = ready_to
        return out[skip:].astype(np.float32)


class StreamingConverter:
    """Resampler then filter, for one stream; create one per synthesis request.

    ``params``: one fitted conversion or a ``Blend`` (pitch ratio: the parts' weighted geometric
    mean). ``pitch`` (a ratio, 1.0: none) shifts further, by the same resampling, with the formants
    moved back by the filter so the voice keeps its character; the engine must speak
    ``1 / speed_factor`` slower for durations to come back (``speed_factor``). ``params`` None:
    pitch only (``sample_rate_hz`` is then required)."""

    def __init__(self, params: ConversionParams | Blend | None, pitch: float = 1.0,
                 sample_rate_hz: int | None = None) -> None:
        parts = [] if params is None else (
            [(params, 1.0)] if isinstance(params, ConversionParams) else list(params))
        self.time_ratio = pitch * blend_pitch_ratio(parts)
        """Input duration / output duration."""
        self._resampler = StreamResampler(self.time_ratio)
        self._filter = SpectralFilter(parts, formant_warp=1.0 / pitch,
                                      sample_rate_hz=sample_rate_hz)

    def feed(self, chunk: F32) -> F32:
        """Converted audio that is final so far (may be empty)."""
        return self._filter.feed(self._resampler.feed(chunk))

    def flush(self) -> F32:
        """The rest of the converted audio; the converter is spent afterwards."""
        tail = self._filter.feed(self._resampler.flush())
        return np.concatenate([tail, self._filter.flush()])


def blend_pitch_ratio(parts: Blend) -> float:
    """The weighted geometric mean of the parts' pitch ratios, the weights' remainder to 1 at
    ratio 1 (1.0 for no parts)."""
    return float(np.exp(sum(w * np.log(p.pitch_ratio) for p, w in parts)))


def blend_base_speed(parts: Blend) -> float:
    """The speed the base voice is asked for: the parts' weighted mean, the weights' remainder
    to 1 at speed 1 (1.0 for no parts)."""
    return float(1.0 + sum(w * (p.base_speed - 1.0) for p, w in parts))


def blend_f0_shift(parts: Blend) -> F0Shift | None:
    """The pitch contour change a blend asks its engine for: the weighted geometric mean of the
    parts' ratios and pivots and the weighted mean of their spreads, the weights' remainder to 1
    (and parts without one) unchanged. None when no part has one."""
    shifted = [(p.f0_shift(), w) for p, w in parts]
    with_shift = [(shift, w) for shift, w in shifted if shift is not None]
    if not with_shift:
        return None
    weight = sum(w for _, w in with_shift)
    pivot = math.exp(sum(w * math.log(shift.pivot_hz) for shift, w in with_shift) / weight)
    return F0Shift(ratio=math.exp(sum(w * math.log(shift.ratio) for shift, w in with_shift)),
                   spread=1.0 + sum(w * (shift.spread - 1.0) for shift, w in with_shift),
                   pivot_hz=pivot)


def convert(params: ConversionParams, audio: F32) -> F32:
    """One-pass conversion of a whole clip (the reference for streaming)."""
    stream = StreamingConverter(params)
    return np.concatenate([stream.feed(audio), stream.flush()])
