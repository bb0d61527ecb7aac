"""The voice-conversion stage on short synthetic "speakers": streaming equals one pass, parameters
survive serialisation, and a fitted mapping moves a base voice toward a target's pitch and
envelope.

A synthetic speaker is a pulse train (its F0, with slow vibrato) through formant resonators (its
vowels), vowel after vowel: two speakers say the same vowel sequence with different F0, formants
and timing, like a base voice and a reference saying one transcript.
"""

from __future__ import annotations

import io
import json

import numpy as np
import numpy.typing as npt
import pytest

from inference.conversion import (
    ConversionParams,
    StreamingConverter,
    blend_f0_shift,
    convert,
    dsp,
    fit,
)
from inference.conversion.align import dtw_path
from inference.conversion.model import mean_f0
from inference.conversion.resample import StreamResampler, resample_once
from inference.engine import F0Shift

RATE = 16000
F32 = npt.NDArray[np.float32]

# first three formants (Hz) of a few vowels, a male-ish and a female-ish vocal tract
VOWELS_A = [(730, 1090, 2440), (270, 2290, 3010), (300, 870, 2240), (530, 1840, 2480),
            (570, 840, 2410)]
VOWELS_B = [(850, 1220, 2810), (310, 2790, 3310), (370, 950, 2670), (610, 2330, 2990),
            (590, 920, 2710)]
SEQUENCE = [0, 1, 2, 3, 4, 1, 0, 3, 2, 4, 0, 2, 1, 4, 3, 0, 1, 3]


def speaker(f0: float, vowels: list[tuple[int, int, int]], vowel_s: float, seed: int) -> F32:
    rng = np.random.default_rng(seed)
    parts = []
    for k, v in enumerate(SEQUENCE):
        n = int(vowel_s * RATE * (0.8 + 0.4 * rng.random()))
        t = np.arange(n) / RATE
        inst = f0 * (1 + 0.05 * np.sin(2 * np.pi * 3 * t + k))
        phase = np.cumsum(inst) / RATE
        pulses = np.diff(np.floor(phase), prepend=0.0)
        voiced = _formants(pulses + 0.01 * rng.standard_normal(n), vowels[v])
        fade = np.minimum(1.0, np.minimum(np.arange(n), n - 1 - np.arange(n)) / (0.02 * RATE))
        parts.append(voiced * fade)
        parts.append(np.zeros(int(0.05 * RATE)))
    audio = np.concatenate(parts)
    return (0.3 * audio / np.abs(audio).max()).astype(np.float32)


def _formants(source: npt.NDArray[np.float64], formants: tuple[int, int, int],
              ) -> npt.NDArray[np.float64]:
    """``source`` through a glottal tilt and three two-pole resonators (applied as their
    frequency response on the FFT of the zero-padded segment)."""
    size = 2 * len(source)
    z = np.exp(-2j * np.pi * np.fft.rfftfreq(size))  # z^-1 on the unit circle
    response = 1.0 / (1.0 - 0.97 * z)
    for formant, bandwidth in zip(formants, (80, 100, 140), strict=True):
        r = np.exp(-np.pi * bandwidth / RATE)
        theta = 2 * np.pi * formant / RATE
        response *= (1 - r) / (1.0 - 2 * r * np.cos(theta) * z + r * r * z * z)
    out: npt.NDArray[np.float64] = np.fft.irfft(np.fft.rfft(source, size) * response, size)
    return out[: len(source)]


@pytest.fixture(scope="module")
def pair() -> tuple[F32, F32]:
    """(base, target): the same vowels, different speakers and timing."""
    return speaker(110.0, VOWELS_A, 0.22, seed=1), speaker(165.0, VOWELS_B, 0.26, seed=2)


@pytest.fixture(scope="module")
def fitted(pair: tuple[F32, F32]) -> ConversionParams:
    base, target = pair
    params, _ = fit(target, RATE, "unused when base audio is given.", _no_synth,
                    classes=8, base_audio=(base, RATE), pitch_range=(0.7, 1.45))
    return params


def _no_synth(text: str) -> tuple[F32, int]:
    raise AssertionError("fit must use the base audio it was given")


def stream_in_chunks(params: ConversionParams, audio: F32, seed: int) -> F32:
    rng = np.random.default_rng(seed)
    converter = StreamingConverter(params)
    parts, i = [], 0
    while i < len(audio):
        n = int(rng.integers(1, 2500))
        parts.append(converter.feed(audio[i:i + n]))
        i += n
    parts.append(converter.flush())
    return np.concatenate(parts)


def test_streaming_equals_one_pass(fitted: ConversionParams, pair: tuple[F32, F32]) -> None:
    base = pair[0]
    one = convert(fitted, base)
    for seed in (0, 1):
        streamed = stream_in_chunks(fitted, base, seed)
        assert len(streamed) == len(one)
        np.testing.assert_allclose(streamed, one, atol=1e-6)


def test_output_length_follows_pitch_ratio(fitted: ConversionParams, pair: tuple[F32, F32]) -> None:
    base = pair[0]
    assert len(convert(fitted, base)) == int(np.ceil(len(base) / fitted.pitch_ratio))


def test_neutral_params_pass_audio_through(pair: tuple[F32, F32], fitted: ConversionParams) -> None:
    from dataclasses import replace

    neutral = replace(fitted, pitch_ratio=1.0, strength=0.0)
    base = pair[0]
    np.testing.assert_allclose(convert(neutral, base), base, atol=1e-5)


def test_serialisation_round_trip(fitted: ConversionParams, pair: tuple[F32, F32]) -> None:
    blob = fitted.to_bytes()
    back = ConversionParams.from_bytes(blob)
    assert back.pitch_ratio == fitted.pitch_ratio and back.warp == fitted.warp
    assert back.base_speed == fitted.base_speed and back.sample_rate_hz == RATE
    np.testing.assert_array_equal(back.offsets, fitted.offsets)
    np.testing.assert_array_equal(convert(back, pair[0]), convert(fitted, pair[0]))


def test_serialisation_rejects_wrong_shapes(fitted: ConversionParams) -> None:
    from dataclasses import replace

    broken = replace(fitted, offsets=fitted.offsets[:, :5])
    with pytest.raises(ValueError):
        ConversionParams.from_bytes(broken.to_bytes())


def test_fit_moves_pitch_toward_target(fitted: ConversionParams, pair: tuple[F32, F32]) -> None:
    base, target = pair
    assert fitted.pitch_ratio == pytest.approx(165.0 / 110.0, rel=0.05)
    assert mean_f0(convert(fitted, base), RATE) == pytest.approx(mean_f0(target, RATE), rel=0.05)


def test_fit_moves_envelope_toward_target(fitted: ConversionParams,
                                          pair: tuple[F32, F32]) -> None:
    """Distance of aligned, level-free log-mel frames to the target's: the converted base is
    much closer than the base shifted in pitch alone."""
    base, target = pair
    target_mel = _speech_logmel(target)

    def distance(audio: F32) -> float:
        mel = _speech_logmel(audio)
        ia, ib = dtw_path(dsp.cepstra(target_mel), dsp.cepstra(mel))
        return float(np.sqrt(np.mean((target_mel[ia] - mel[ib]) ** 2)))

    shifted_only = resample_once(base, fitted.pitch_ratio)
    assert distance(convert(fitted, base)) < 0.7 * distance(shifted_only)


def _speech_logmel(audio: F32) -> npt.NDArray[np.float64]:
    mel = dsp.log_mel(dsp.power_spectra(audio), RATE)
    energy = mel.max(axis=1)
    mel = mel[energy > energy.max() - 8.0]
    out: npt.NDArray[np.float64] = mel - mel.mean(axis=1, keepdims=True)
    return out


@pytest.mark.parametrize("ratio", [0.8, 1.0, 1.3])
def test_resampler_streams_exactly(ratio: float, pair: tuple[F32, F32]) -> None:
    audio = pair[0][:20000]
    stream = StreamResampler(ratio)
    parts = [stream.feed(audio[i:i + 777]) for i in range(0, len(audio), 777)] + [stream.flush()]
    np.testing.assert_array_equal(np.concatenate(parts), resample_once(audio, ratio))


def test_resampler_moves_a_tone() -> None:
    t = np.arange(RATE) / RATE
    tone = np.sin(2 * np.pi * 200 * t).astype(np.float32)
    moved = resample_once(tone, 1.25)
    spectrum = np.abs(np.fft.rfft(moved[2000:-2000] * np.hanning(len(moved) - 4000)))
    peak_hz = np.argmax(spectrum) * RATE / (len(moved) - 4000)
    assert peak_hz == pytest.approx(250, abs=3)


def test_dtw_recovers_a_known_stretch() -> None:
    rng = np.random.default_rng(0)
    a = np.cumsum(rng.standard_normal((200, 3)), axis=0)
    source = (np.arange(225) / 1.5).astype(np.int64)  # a[:150] slowed down by 1.5
    ia, ib = dtw_path(a[:150], a[source])
    assert ia[0] == 0 and ib[0] == 0 and ia[-1] == 149 and ib[-1] == 224
    assert np.all(np.abs(source[ib] - ia) <= 1)


def test_rank_bases_prefers_the_same_speaker(pair: tuple[F32, F32]) -> None:
    from inference.conversion.select import rank_bases
    from inference.speaker import SpeakerEncoder

    target = pair[1]
    candidates = {
        "like-base": lambda text: (speaker(110.0, VOWELS_A, 0.2, seed=5), RATE),
        "like-target": lambda text: (speaker(165.0, VOWELS_B, 0.2, seed=6), RATE),
    }
    ranking = rank_bases(target, RATE, candidates, "One probe sentence.", SpeakerEncoder())
    assert [name for name, _ in ranking] == ["like-target", "like-base"]
    assert ranking[0][1] > ranking[1][1]


def test_a_pitch_shift_survives_serialisation_and_old_blobs_have_none(
        fitted: ConversionParams) -> None:
    from dataclasses import replace

    assert fitted.f0_shift() is None
    assert ConversionParams.from_bytes(fitted.to_bytes()).f0_shift() is None
    shifted = replace(fitted, f0_ratio=0.8, f0_spread=0.6, f0_pivot_hz=230.0)
    assert ConversionParams.from_bytes(shifted.to_bytes()).f0_shift() == F0Shift(0.8, 0.6, 230.0)
    # a blob written before pitch shifts existed (no f0 fields in its header) reads as none
    with np.load(io.BytesIO(fitted.to_bytes())) as npz:
        arrays = {k: npz[k] for k in npz.files}
    header = json.loads(arrays.pop("header").tobytes())
    for key in ("f0_ratio", "f0_spread", "f0_pivot_hz"):
        del header[key]
    old = io.BytesIO()
    np.savez(old, header=np.frombuffer(json.dumps(header).encode(), dtype=np.uint8), **arrays)
    assert ConversionParams.from_bytes(old.getvalue()).f0_shift() is None


def test_f0_shift_moves_voiced_frames_around_the_pivot() -> None:
    shift = F0Shift(ratio=0.8, spread=0.5, pivot_hz=200.0)
    f0 = np.array([0.0, 5.0, 60.0, 100.0, 200.0, 400.0], dtype=np.float32)
    out = shift.apply(f0)
    assert out[0] == 0.0 and out[1] == 5.0  # unvoiced frames are left alone
    assert out[4] == pytest.approx(160.0)  # the pivot moves by the ratio
    assert out[5] == pytest.approx(0.8 * 200.0 * 2.0 ** 0.5, rel=1e-5)  # an octave up: half one
    # under half the pivot the factor stays at that point's: dips move, they are not flattened
    assert out[2] / 60.0 == pytest.approx(out[3] / 100.0, rel=1e-5)
    assert np.array_equal(F0Shift().apply(f0), f0)
    with pytest.raises(ValueError):
        F0Shift(ratio=0.0)


def test_a_blend_shifts_pitch_by_its_parts_weights(fitted: ConversionParams) -> None:
    from dataclasses import replace

    low = replace(fitted, f0_ratio=0.5, f0_spread=0.5, f0_pivot_hz=200.0)
    high = replace(fitted, f0_ratio=2.0, f0_spread=1.5, f0_pivot_hz=50.0)
    assert blend_f0_shift([(fitted, 1.0)]) is None
    even = blend_f0_shift([(low, 0.5), (high, 0.5)])
    assert even is not None
    assert (even.ratio, even.spread, even.pivot_hz) == pytest.approx((1.0, 1.0, 100.0))
    # a part without a shift (a stock voice's share) counts as no change
    half = blend_f0_shift([(low, 0.5), (fitted, 0.5)])
    assert half is not None and half.ratio == pytest.approx(0.5 ** 0.5)
    assert half.spread == pytest.approx(0.75) and half.pivot_hz == pytest.approx(200.0)
