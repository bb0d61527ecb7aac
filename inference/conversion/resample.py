"""A streaming fractional resampler whose output does not depend on how the input is chunked.

Output sample ``n`` is the input interpolated at position ``n * ratio`` (windowed sinc, 16 taps a
side, tabulated at 1/1024-sample phases, low-passed below the output Nyquist when ``ratio > 1``). Played at the same rate, the
output's pitch and formants are ``ratio`` times the input's and its duration ``1 / ratio`` times:
the conversion asks the base voice to speak ``ratio`` times slower first, so only pitch and
formants move. Positions are computed from absolute sample indices, so feeding audio in any
chunks gives the same samples as one pass.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
import numpy.typing as npt

F32 = npt.NDArray[np.float32]
F64 = npt.NDArray[np.float64]

HALF_TAPS = 16


class StreamResampler:
    """Stateful resampler: ``feed(chunk)`` returns what can be computed so far, ``flush()`` the
    rest (the input is taken to end with silence). ``ratio`` 1.0 passes audio through unchanged."""

    def __init__(self, ratio: float) -> None:
        if not 0.25 <= ratio <= 4.0:
            raise ValueError(f"resampling ratio {ratio} is out of range")
        self.ratio = float(ratio)
        self._buffer = np.zeros(0, dtype=np.float64)
        self._buffer_start = 0
        """Absolute input index of ``_buffer[0]``."""
        self._received = 0
        self._next_out = 0
        self._cutoff = min(1.0, 1.0 / self.ratio) * 0.97

    def feed(self, chunk: F32) -> F32:
        if self.ratio == 1.0:
            return np.asarray(chunk, dtype=np.float32).reshape(-1)
        data = np.asarray(chunk, dtype=np.float64).reshape(-1)
        self._buffer = np.concatenate([self._buffer, data])
        self._received += len(data)
        return self._emit(final=False)

    def flush(self) -> F32:
        if self.ratio == 1.0:
            return np.zeros(0, dtype=np.float32)
        return self._emit(final=True)

    def _emit(self, final: bool) -> F32:
        if final:
            last = int(np.ceil(self._received / self.ratio))  # outputs covering the input
        else:
            # output n needs input up to floor(n * ratio) + HALF_TAPS
            last = int(np.floor((self._received - 1 - HALF_TAPS) / self.ratio)) + 1
        if last <= self._next_out:
            return np.zeros(0, dtype=np.float32)
        out = np.concatenate([self._block(start, min(start + _BLOCK, last))
                              for start in range(self._next_out, last, _BLOCK)])
        self._next_out = last
        keep_from = int(np.floor(last * self.ratio)) - HALF_TAPS - self._buffer_start
        if keep_from > 0:
            self._buffer = self._buffer[keep_from:]
            self._buffer_start += keep_from
        return out.astype(np.float32)


    def _block(self, first: int, last: int) -> F64:
        """Outputs ``first`` .. ``last - 1``: each the dot product of 2 * HALF_TAPS input samples
        with the kernel row of its fractional position (nearest of ``_PHASES`` phases)."""
        pos = np.arange(first, last, dtype=np.float64) * self.ratio
        base = np.floor(pos).astype(np.int64)
        phase = np.rint((pos - base) * _PHASES).astype(np.int64)  # may round up to _PHASES
        idx = base[:, None] + _OFFSETS[None, :] - self._buffer_start
        valid = (idx >= 0) & (idx < len(self._buffer))
        if len(self._buffer):
            samples = np.where(valid, self._buffer[np.clip(idx, 0, len(self._buffer) - 1)], 0.0)
        else:
            samples = np.zeros(idx.shape)
        out: F64 = np.einsum("ij,ij->i", samples, _kernel_table(self._cutoff)[phase])
        return out


_BLOCK = 8192
_PHASES = 1024
_OFFSETS = np.arange(-HALF_TAPS + 1, HALF_TAPS + 1)


@lru_cache(maxsize=16)
def _kernel_table(cutoff: float) -> F64:
    """Kernel rows for fractional positions k / _PHASES, k = 0 .. _PHASES (inclusive)."""
    frac = np.arange(_PHASES + 1)[:, None] / _PHASES
    dist = frac - _OFFSETS[None, :]
    table: F64 = cutoff * np.sinc(cutoff * dist) * _kaiser(dist / HALF_TAPS)
    return table


def _kaiser(u: F64, beta: float = 8.0) -> F64:
    """Kaiser window evaluated at ``u`` in [-1, 1] (zero outside)."""
    inside = np.abs(u) <= 1.0
    arg = beta * np.sqrt(np.clip(1.0 - u * u, 0.0, None))
    out: F64 = np.where(inside, np.i0(arg) / np.i0(beta), 0.0)
    return out


def resample_once(audio: F32, ratio: float) -> F32:
    """One-pass equivalent of feeding ``audio`` and flushing."""
    stream = StreamResampler(ratio)
    return np.concatenate([stream.feed(audio), stream.flush()])
