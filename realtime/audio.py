"""Audio helpers the transports share: PCM16 conversion and chunk-by-chunk resampling.

Engines produce mono float32 samples in [-1, 1] at their own rate (Piper: 22,050 Hz); clients ask for
one of ``SUPPORTED_SAMPLE_RATES`` in one of ``SUPPORTED_FORMATS``. A context's audio goes through one
``StreamingResampler`` and then ``float_to_pcm16`` chunk by chunk, so the client hears the same signal
a one-pass conversion of the whole utterance would give, without clicks at the chunk seams.
"""

from __future__ import annotations

from typing import Final, Literal

import numpy as np
import numpy.typing as npt
import soxr

FloatAudio = npt.NDArray[np.float32]
"""Mono float32 samples, nominally in [-1, 1]."""

SUPPORTED_SAMPLE_RATES: Final = (8000, 16000, 22050, 24000, 44100, 48000)
"""Output rates in Hz a client may ask for (docs/protocol.md)."""

SUPPORTED_FORMATS: Final = ("pcm_s16le", "ulaw_8000", "alaw_8000", "mp3", "opus")
"""Formats of the native protocol's binary frames (``realtime.codecs`` encodes them). Only
``pcm_s16le`` takes the ``sample_rate`` asked for; the others have the rate their name fixes."""
"""Audio formats of binary frames: ``pcm_s16le`` is little-endian signed 16-bit mono."""

_PCM16_SCALE: Final = 32767.0
"""Full scale both ways, so that 1.0 -> 32767 and -1.0 -> -32767 (symmetric; -32768 is never made)."""

ResampleQuality = Literal["HQ", "VHQ"]


def float_to_pcm16(samples: npt.ArrayLike) -> bytes:
    """Encode mono float samples as little-endian int16 bytes (``pcm_s16le``).

    Values outside [-1, 1] are clipped, NaN becomes silence, and each sample is rounded to the
    nearest step. Raises ``ValueError`` for anything but a 1-D array.
    """
    x = _mono_float32(samples)
    x = np.clip(np.nan_to_num(x, nan=0.0, posinf=1.0, neginf=-1.0), -1.0, 1.0)
    pcm: bytes = np.rint(x * _PCM16_SCALE).astype("<i2").tobytes()
    return pcm


def pcm16_to_float(data: bytes) -> FloatAudio:
    """Decode little-endian int16 bytes into float32 samples (the inverse of ``float_to_pcm16``).

    Raises ``ValueError`` when ``data`` has an odd length (a torn sample).
    """
    if len(data) % 2:
        raise ValueError(f"pcm_s16le data must have an even length, got {len(data)} bytes")
    samples: FloatAudio = np.frombuffer(data, dtype="<i2").astype(np.float32)
    samples /= np.float32(_PCM16_SCALE)
    return samples


class StreamingResampler:
    """Resample one mono signal that arrives in chunks of any size (empty ones included).

    Concatenating every ``process`` output and the final ``flush`` gives the same samples as
    ``soxr.resample`` of the whole signal at the same quality: the filter state carries over chunk
    seams, so there are no clicks there. Output lags input by the filter's delay; ``flush`` returns
    the held-back tail. When both rates are equal the samples pass through unchanged.

    One instance serves one signal at a time (e.g. one context); after ``flush`` it is ready for the
    next. Not thread-safe.
    """

    def __init__(
        self, in_rate_hz: int, out_rate_hz: int, *, quality: ResampleQuality = "HQ"
    ) -> None:
        if in_rate_hz <= 0 or out_rate_hz <= 0:
            raise ValueError(f"sample rates must be positive, got {in_rate_hz} -> {out_rate_hz}")
        self.in_rate_hz = in_rate_hz
        self.out_rate_hz = out_rate_hz
        self._stream = (
            None
            if in_rate_hz == out_rate_hz
            else soxr.ResampleStream(in_rate_hz, out_rate_hz, 1, dtype="float32", quality=quality)
        )

    def process(self, chunk: npt.ArrayLike) -> FloatAudio:
        """Feed the next input chunk (1-D, at ``in_rate_hz``); returns the output ready so far."""
        x = _mono_float32(chunk)
        if self._stream is None:
            return x.copy()  # the caller's buffer may be reused; never hand it back aliased
        out: FloatAudio = self._stream.resample_chunk(x)
        return out

    def flush(self) -> FloatAudio:
        """End the signal: returns the rest of the output and resets for a new signal."""
        if self._stream is None:
            return np.zeros(0, dtype=np.float32)
        out: FloatAudio = self._stream.resample_chunk(np.zeros(0, dtype=np.float32), last=True)
        self._stream.clear()
        return out


def _mono_float32(samples: npt.ArrayLike) -> FloatAudio:
    x = np.ascontiguousarray(samples, dtype=np.float32)
    if x.ndim != 1:
        raise ValueError(f"expected mono 1-D samples, got shape {x.shape}")
    return x
