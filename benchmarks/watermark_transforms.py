"""The channel transforms of the watermark benchmark: what a clip goes through before detection.

Each transform takes mono float audio and its rate and returns the audio a listener (or an
investigator) would get back, and its rate. Codecs run through PyAV's FFmpeg (libopus, libmp3lame,
pcm_mulaw), so they are the real encoders, not simulations.
"""

from __future__ import annotations

import io
from collections.abc import Callable

import av
import numpy as np
import numpy.typing as npt
import soxr

Audio = npt.NDArray[np.float64]
Transform = Callable[[Audio, int, np.random.Generator], tuple[Audio, int]]


def _codec_round_trip(x: Audio, rate: int, container: str, codec: str, bitrate: int | None,
                      codec_rate: int) -> tuple[Audio, int]:
    """Encode ``x`` with ``codec`` (at ``codec_rate``) into ``container`` and decode it back."""
    samples = soxr.resample(x.astype(np.float32), rate, codec_rate) if rate != codec_rate else x
    pcm = np.clip(np.asarray(samples, dtype=np.float32), -1.0, 1.0)
    buffer = io.BytesIO()
    with av.open(buffer, mode="w", format=container) as out:
        stream = out.add_stream(codec, rate=codec_rate, layout="mono")
        assert isinstance(stream, av.AudioStream)
        if bitrate is not None:
            stream.bit_rate = bitrate
        frame_size = stream.codec_context.frame_size or 1024
        fmt = stream.codec_context.format.name
        resampler = av.AudioResampler(format=fmt, layout="mono", rate=codec_rate)
        for start in range(0, len(pcm), frame_size):
            block = pcm[start:start + frame_size]
            frame = av.AudioFrame.from_ndarray(block[np.newaxis, :], format="flt", layout="mono")
            frame.sample_rate = codec_rate
            for converted in resampler.resample(frame):
                out.mux(stream.encode(converted))
        for converted in resampler.resample(None):
            out.mux(stream.encode(converted))
        out.mux(stream.encode(None))
    buffer.seek(0)
    chunks = []
    with av.open(buffer, mode="r", format=container) as media:
        to_float = av.AudioResampler(format="flt", layout="mono", rate=codec_rate)
        for frame in media.decode(media.streams.audio[0]):
            for converted in to_float.resample(frame):
                chunks.append(converted.to_ndarray().reshape(-1))
    return np.concatenate(chunks).astype(np.float64), codec_rate


def opus(bitrate: int) -> Transform:
    def apply(x: Audio, rate: int, rng: np.random.Generator) -> tuple[Audio, int]:
        return _codec_round_trip(x, rate, "ogg", "libopus", bitrate, 48000)
    return apply


def mp3(bitrate: int) -> Transform:
    def apply(x: Audio, rate: int, rng: np.random.Generator) -> tuple[Audio, int]:
        return _codec_round_trip(x, rate, "mp3", "libmp3lame", bitrate, rate)
    return apply


def mulaw_8k(x: Audio, rate: int, rng: np.random.Generator) -> tuple[Audio, int]:
    """G.711 mu-law at 8 kHz (the telephone path: resample, 8-bit companding, back)."""
    narrow = soxr.resample(x.astype(np.float32), rate, 8000).astype(np.float64)
    mu = 255.0
    companded = np.sign(narrow) * np.log1p(mu * np.minimum(np.abs(narrow), 1.0)) / np.log1p(mu)
    quantised = np.round(companded * 127.0) / 127.0
    return np.sign(quantised) * ((1.0 + mu) ** np.abs(quantised) - 1.0) / mu, 8000


def resample_16k(x: Audio, rate: int, rng: np.random.Generator) -> tuple[Audio, int]:
    return soxr.resample(x.astype(np.float32), rate, 16000).astype(np.float64), 16000


def gain(db: float) -> Transform:
    def apply(x: Audio, rate: int, rng: np.random.Generator) -> tuple[Audio, int]:
        return x * 10.0 ** (db / 20.0), rate
    return apply


def white_noise(snr_db: float) -> Transform:
    def apply(x: Audio, rate: int, rng: np.random.Generator) -> tuple[Audio, int]:
        power = float(np.mean(x**2))
        return x + rng.normal(0.0, np.sqrt(power / 10.0 ** (snr_db / 10.0)), len(x)), rate
    return apply


def crop(seconds: float) -> Transform:
    def apply(x: Audio, rate: int, rng: np.random.Generator) -> tuple[Audio, int]:
        n = int(seconds * rate)
        start = int(rng.integers(0, max(1, len(x) - n + 1)))
        return x[start:start + n], rate
    return apply


def identity(x: Audio, rate: int, rng: np.random.Generator) -> tuple[Audio, int]:
    return x, rate


TRANSFORMS: dict[str, Transform] = {
    "none": identity,
    "mulaw_8k": mulaw_8k,
    "opus_24k": opus(24000),
    "opus_32k": opus(32000),
    "mp3_64k": mp3(64000),
    "resample_16k": resample_16k,
    "gain_+6dB": gain(6.0),
    "gain_-6dB": gain(-6.0),
    "noise_20dB": white_noise(20.0),
    "crop_3s": crop(3.0),
}
"""Every transform the issue names; ``crop_3s`` alone, the others on the whole clip."""
