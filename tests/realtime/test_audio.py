"""realtime.audio: PCM16 conversion and the streaming resampler against one-pass soxr."""

from __future__ import annotations

import struct

import numpy as np
import numpy.typing as npt
import pytest
import soxr

from realtime.audio import (
    SUPPORTED_SAMPLE_RATES,
    StreamingResampler,
    float_to_pcm16,
    pcm16_to_float,
)

ENGINE_RATES = (22050, 24000)  # Piper's native rate and the protocol's default output rate


def stream(
    resampler: StreamingResampler, signal: npt.NDArray[np.float32], sizes: list[int]
) -> npt.NDArray[np.float32]:
    """Feed ``signal`` in chunks of ``sizes`` (cycled) and return everything that came out."""
    out, start, i = [], 0, 0
    while start < len(signal):
        size = sizes[i % len(sizes)]
        out.append(resampler.process(signal[start : start + size]))
        start, i = start + size, i + 1
    out.append(resampler.flush())
    return np.concatenate(out)


def irregular_sizes(seed: int) -> list[int]:
    """Tiny, empty, odd and large chunks, like a model's first small chunk then bigger ones."""
    rng = np.random.default_rng(seed)
    return [0, 1, 2, 0, 3, 17, 1, 511] + [int(n) for n in rng.integers(0, 2000, size=40)]


def speechlike_signal(rate_hz: int, seconds: float = 0.8) -> npt.NDArray[np.float32]:
    """Speech-like test material: a chirp across the band plus some noise."""
    t = np.arange(int(rate_hz * seconds)) / rate_hz
    chirp = 0.5 * np.sin(2 * np.pi * (100 + 4000 * t) * t)
    noise = 0.1 * np.random.default_rng(rate_hz).standard_normal(t.size)
    return (chirp + noise).astype(np.float32)


def snr_db(reference: npt.NDArray[np.float32], actual: npt.NDArray[np.float32]) -> float:
    n = min(len(reference), len(actual))
    error = np.sum((reference[:n].astype(np.float64) - actual[:n]) ** 2)
    return float(10 * np.log10(np.sum(reference[:n].astype(np.float64) ** 2) / max(error, 1e-30)))


# --- PCM16 ---------------------------------------------------------------------------------------


def test_float_to_pcm16_clips_rounds_and_is_little_endian() -> None:
    samples = np.array([0.0, 1.0, -1.0, 0.5, 2.0, -2.0, np.nan, 0.4 / 32767], dtype=np.float32)
    expected = struct.pack("<8h", 0, 32767, -32767, 16384, 32767, -32767, 0, 0)
    assert float_to_pcm16(samples) == expected
    assert float_to_pcm16(np.array([1.0 / 32767])) == b"\x01\x00"
    assert float_to_pcm16(np.array([-1.0 / 32767])) == b"\xff\xff"


def test_pcm16_round_trip_is_within_half_a_step() -> None:
    x = np.random.default_rng(1).uniform(-1, 1, 10_000).astype(np.float32)
    back = pcm16_to_float(float_to_pcm16(x))
    assert back.dtype == np.float32 and back.shape == x.shape
    assert np.max(np.abs(back - x)) <= 0.5 / 32767 + 1e-7


def test_pcm16_to_float_decodes_full_scale() -> None:
    decoded = pcm16_to_float(struct.pack("<3h", 0, 32767, -32767))
    np.testing.assert_array_equal(decoded, np.array([0.0, 1.0, -1.0], dtype=np.float32))


def test_pcm16_rejects_torn_samples_and_non_mono_input() -> None:
    with pytest.raises(ValueError, match="even"):
        pcm16_to_float(b"\x00\x01\x02")
    with pytest.raises(ValueError, match="mono"):
        float_to_pcm16(np.zeros((2, 4), dtype=np.float32))


def test_empty_audio_converts_to_empty() -> None:
    assert float_to_pcm16(np.zeros(0, dtype=np.float32)) == b""
    assert pcm16_to_float(b"").size == 0


# --- StreamingResampler --------------------------------------------------------------------------


@pytest.mark.parametrize("out_rate", SUPPORTED_SAMPLE_RATES)
@pytest.mark.parametrize("in_rate", ENGINE_RATES)
def test_streaming_matches_one_pass(in_rate: int, out_rate: int) -> None:
    signal = speechlike_signal(in_rate)
    streamed = stream(StreamingResampler(in_rate, out_rate), signal, irregular_sizes(out_rate))
    one_pass = soxr.resample(signal, in_rate, out_rate, quality="HQ")
    assert streamed.dtype == np.float32
    assert abs(len(streamed) - len(one_pass)) <= 2
    assert abs(len(streamed) - len(signal) * out_rate / in_rate) <= 2
    assert snr_db(one_pass, streamed) > 60


def test_equal_rates_pass_samples_through_unchanged() -> None:
    signal = speechlike_signal(24000)
    resampler = StreamingResampler(24000, 24000)
    np.testing.assert_array_equal(stream(resampler, signal, irregular_sizes(0)), signal)
    chunk = signal[:100]
    out = resampler.process(chunk)
    out[:] = 0  # the output is the caller's own: it must not alias the input
    assert np.any(chunk != 0)


def test_very_high_quality_also_matches_one_pass() -> None:
    signal = speechlike_signal(22050)
    resampler = StreamingResampler(22050, 48000, quality="VHQ")
    streamed = stream(resampler, signal, irregular_sizes(7))
    assert snr_db(soxr.resample(signal, 22050, 48000, quality="VHQ"), streamed) > 60


def test_flush_resets_for_the_next_signal() -> None:
    first, second = speechlike_signal(24000, 0.3), speechlike_signal(22050, 0.5)
    resampler = StreamingResampler(24000, 16000)
    stream(resampler, first, [300])
    again = stream(resampler, second, irregular_sizes(3))
    fresh = stream(StreamingResampler(24000, 16000), second, irregular_sizes(3))
    np.testing.assert_allclose(again, fresh, atol=1e-6)


def test_float64_and_list_chunks_are_accepted() -> None:
    resampler = StreamingResampler(24000, 48000)
    out = np.concatenate([resampler.process([0.0] * 480), resampler.process(np.zeros(480))])
    out = np.concatenate([out, resampler.flush()])
    assert out.dtype == np.float32 and abs(len(out) - 1920) <= 2


def faded_sine(
    rate_hz: int, frequency: float = 440.0, amplitude: float = 0.8
) -> npt.NDArray[np.float32]:
    """One second of sine with 50 ms raised-cosine fades, so the signal itself has no edge to ring
    on and its steepest sample-to-sample step is the sine's own (the fade adds under 0.01 %)."""
    t = np.arange(rate_hz) / rate_hz
    fade = np.minimum(1.0, np.minimum(t, t[-1] - t) / 0.05)
    window = 0.5 - 0.5 * np.cos(np.pi * fade)
    sine: npt.NDArray[np.float32] = (window * amplitude * np.sin(2 * np.pi * frequency * t)).astype(
        np.float32
    )
    return sine


def max_sine_step(out_rate: int, frequency: float = 440.0, amplitude: float = 0.8) -> float:
    return 2 * np.pi * frequency * amplitude / out_rate


@pytest.mark.parametrize(("in_rate", "out_rate"), [(22050, 48000), (24000, 8000), (24000, 44100)])
def test_no_clicks_at_chunk_seams(in_rate: int, out_rate: int) -> None:
    """A streamed sine never jumps between two samples by more than the sine's own steepest step."""
    out = stream(
        StreamingResampler(in_rate, out_rate), faded_sine(in_rate), irregular_sizes(in_rate)
    )
    assert np.max(np.abs(np.diff(out))) <= max_sine_step(out_rate) * 1.02 + 1e-4


def test_the_click_check_catches_chunk_by_chunk_resampling() -> None:
    """Control: resampling each chunk on its own (no carried state) clicks, and the check sees it."""
    sine, sizes = faded_sine(24000), [480, 37, 1000, 5]
    chunks, start, i = [], 0, 0
    while start < len(sine):
        chunk = sine[start : start + sizes[i % len(sizes)]]
        chunks.append(soxr.resample(chunk, 24000, 44100, quality="HQ"))
        start, i = start + len(chunk), i + 1
    naive = np.concatenate(chunks)
    assert np.max(np.abs(np.diff(naive))) > max_sine_step(44100) * 1.02 + 1e-4


def test_bad_rates_are_refused() -> None:
    with pytest.raises(ValueError):
        StreamingResampler(0, 24000)
