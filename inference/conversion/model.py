"""The conversion parameters and how they are fitted from a reference and its transcript.

Fitting (parallel data, nothing learned but from the reference itself):

1. The base voice says the reference's transcript (sentence by sentence, at its normal speed).
2. Pitch: the median log F0 of clearly voiced frames (``mean_f0``) of both gives
   ``pitch_ratio``, clipped to ``pitch_range``. The default [1, 1] keeps the base's pitch: on
   the benchmark, moving a Kokoro female voice down by 0.74 or 0.85 lost similarity and words
   (0.662/0.45 and 0.693/0.66 against 0.768/0.71 unmoved), so pitch moves are opt-in. The base
   audio is resampled by the ratio, as the applier will do (pitch and formants move together);
   the envelope ``warp`` starts from ``1 / ratio`` (formants moved back) and the fit estimates
   what is left. Measured again with YIN F0 and that restoration (festival slt on jf_gongitsune):
   ratio 0.73 gave 0.690/0.23, clipped to 0.85-1.2 0.715/0.57, still below unmoved. ``base_speed`` asks the base voice to speak
   ``pitch_ratio`` times slower (so durations come back) and matches the reference's speaking
   rate (speech-frame durations), clipped to [0.7, 1.4].
3. Frames: log-mel envelopes (``dsp``) of the resampled base and the reference (resampled to the
   base's rate); silence removed; DTW on per-speaker normalised cepstra pairs each reference frame
   with base frames.
4. Classes: k-means over the base frames' cepstra (``classes`` centres, shared diagonal
   variance). A frame's soft class posterior, at temperature 1, weights per-class offsets.
5. Offsets: per class, the mean log-mel difference (reference - base) over the aligned pairs,
   weighted by the base frame's posterior and shrunk toward the global mean difference when a
   class has little evidence; the overall level difference is removed (the stage only shapes
   timbre, it does not change loudness). The alignment is redone once on the converted base
   features and the offsets refitted.

Serialisation: ``to_bytes``/``from_bytes`` (an ``npz`` archive holding the arrays and a JSON header)
so a profile can store the model as one blob.
"""

from __future__ import annotations

import io
import json
import re
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import soxr

from inference.conversion import dsp
from inference.conversion.align import dtw_path
from inference.conversion.resample import resample_once
from inference.engine import F0Shift

F32 = npt.NDArray[np.float32]
F64 = npt.NDArray[np.float64]

Synthesize = Callable[[str], tuple[F32, int]]
"""The base voice at its normal speed: text -> (mono float audio, sample rate)."""

FORMAT_VERSION = 1
_SILENCE_DB = 40.0
"""Frames this far under the loudest (95th percentile) frame are silence."""


@dataclass(frozen=True)
class ConversionParams:
    """A fitted conversion: everything the streaming applier needs, plus ``base_speed`` for the
    engine. ``centres``/``inv_var`` (classes x N_CEPS) classify a frame's cepstrum; ``offsets``
    (classes x N_MELS) are log-power gains per mel band; ``log_priors`` (classes,)."""

    sample_rate_hz: int
    pitch_ratio: float
    base_speed: float
    centres: F64
    inv_var: F64
    log_priors: F64
    offsets: F64
    warp: float = 1.0
    """Formant (envelope) frequency factor the filter applies after the resampling."""
    smoothing_frames: int = 9
    strength: float = 1.0
    """Scales the offsets: 0 leaves timbre alone, 1 applies the fitted mapping."""
    f0_ratio: float = 1.0
    """The pitch contour change the base voice was asked for when it said the transcript, and is
    asked for whenever the profile speaks (``F0Shift``; only on engines that shift F0 at their
    source). Ratio 1, spread 1 and pivot 0: none."""
    f0_spread: float = 1.0
    f0_pivot_hz: float = 0.0

    def f0_shift(self) -> F0Shift | None:
        """The pitch contour change the base voice speaks with, or None."""
        if self.f0_pivot_hz <= 0:
            return None
        return F0Shift(self.f0_ratio, self.f0_spread, self.f0_pivot_hz)

    def to_bytes(self) -> bytes:
        header = {"version": FORMAT_VERSION, "sample_rate_hz": self.sample_rate_hz,
                  "pitch_ratio": self.pitch_ratio, "base_speed": self.base_speed,
                  "smoothing_frames": self.smoothing_frames, "strength": self.strength,
                  "warp": self.warp, "f0_ratio": self.f0_ratio, "f0_spread": self.f0_spread,
                  "f0_pivot_hz": self.f0_pivot_hz}
        buf = io.BytesIO()
        np.savez_compressed(buf, header=np.frombuffer(json.dumps(header).encode(), dtype=np.uint8),
                            centres=self.centres, inv_var=self.inv_var,
                            log_priors=self.log_priors, offsets=self.offsets)
        return buf.getvalue()

    @classmethod
    def from_bytes(cls, blob: bytes) -> ConversionParams:
        """Raises ``ValueError`` for a blob of another format version or with wrong shapes."""
        with np.load(io.BytesIO(blob), allow_pickle=False) as npz:
            header = json.loads(npz["header"].tobytes().decode())
            arrays = {k: np.asarray(npz[k], dtype=np.float64)
                      for k in ("centres", "inv_var", "log_priors", "offsets")}
        if header.get("version") != FORMAT_VERSION:
            raise ValueError(f"unsupported conversion format {header.get('version')}")
        k = arrays["centres"].shape[0]
        if (arrays["centres"].shape != (k, dsp.N_CEPS) or arrays["inv_var"].shape != (dsp.N_CEPS,)
                or arrays["log_priors"].shape != (k,) or arrays["offsets"].shape != (k, dsp.N_MELS)):
            raise ValueError("conversion arrays have the wrong shapes")
        return cls(sample_rate_hz=int(header["sample_rate_hz"]),
                   pitch_ratio=float(header["pitch_ratio"]), base_speed=float(header["base_speed"]),
                   smoothing_frames=int(header["smoothing_frames"]), warp=float(header["warp"]),
                   strength=float(header["strength"]),
                   f0_ratio=float(header.get("f0_ratio", 1.0)),
                   f0_spread=float(header.get("f0_spread", 1.0)),
                   f0_pivot_hz=float(header.get("f0_pivot_hz", 0.0)), **arrays)

    def posteriors(self, ceps: F64) -> F64:
        """Soft class memberships (frames x classes) of cepstra rows."""
        diff = ceps[:, None, :] - self.centres[None, :, :]
        logp = self.log_priors[None, :] - 0.5 * (diff * diff * self.inv_var).sum(axis=2)
        logp -= logp.max(axis=1, keepdims=True)
        p = np.exp(logp)
        out: F64 = p / p.sum(axis=1, keepdims=True)
        return out


@dataclass(frozen=True)
class FitReport:
    """What fitting measured, for logs and benchmarks."""

    reference_f0_hz: float
    base_f0_hz: float
    aligned_pairs: int
    reference_speech_s: float
    base_speech_s: float


def fit(reference: F32, reference_rate_hz: int, transcript: str, synthesize: Synthesize,
        classes: int = 24, shrink: float = 20.0, base_audio: tuple[F32, int] | None = None,
        warps: bool = True, pitch_range: tuple[float, float] = (1.0, 1.0),
        ) -> tuple[ConversionParams, FitReport]:
    """Fit a conversion from the base voice behind ``synthesize`` to the speaker of ``reference``
    (mono float audio) that says ``transcript``. ``base_audio`` may pass the base voice's
    rendering of the transcript when the caller already has it. Raises ``ValueError`` when the
    transcript is empty or the two renderings cannot be aligned (very different lengths)."""
    base, rate = base_audio if base_audio is not None else say(synthesize, transcript)
    ref = np.asarray(reference, dtype=np.float32).reshape(-1)
    if reference_rate_hz != rate:
        ref = soxr.resample(ref, reference_rate_hz, rate).astype(np.float32)
    f0_ref, f0_base = mean_f0(ref, rate), mean_f0(base, rate)
    ratio = float(np.clip(f0_ref / f0_base, *pitch_range))
    shifted = resample_once(base, ratio)
    ref_mel = dsp.log_mel(dsp.power_spectra(ref), rate)
    base_mel = dsp.log_mel(dsp.power_spectra(shifted), rate)
    ref_speech, base_speech = _speech(ref_mel), _speech(base_mel)
    speed = base_speech.sum() / max(ref_speech.sum(), 1)  # shifted base is already 1/ratio long
    ref_mel, base_mel = ref_mel[ref_speech], base_mel[base_speech]

    base_ceps = dsp.cepstra(base_mel)
    centres, inv_var, log_priors = _kmeans(base_ceps, classes)
    zeros = np.zeros((len(centres), dsp.N_MELS))
    params = ConversionParams(rate, ratio, float(np.clip(speed, 0.7, 1.4)), centres, inv_var,
                              log_priors, zeros)
    post = params.posteriors(base_ceps)
    ref_ceps = _normalised(dsp.cepstra(ref_mel))
    ia, ib = dtw_path(ref_ceps, _normalised(base_ceps))
    # resampling moved the formants with the pitch: start from them moved back (1 / ratio), then
    # estimate what is left to match the reference's vocal tract
    restore = 1.0 / ratio
    restored = base_mel + base_mel @ dsp.warp_operator(rate, restore).T
    warp = restore * (_best_warp(ref_mel[ia], restored[ib], rate) if warps else 1.0)
    warped = base_mel + base_mel @ dsp.warp_operator(rate, warp).T
    converted = warped
    for _ in range(2):
        ia, ib = dtw_path(ref_ceps, _normalised(dsp.cepstra(converted)))
        offsets = _offsets(ref_mel[ia] - warped[ib], post[ib], shrink)
        converted = warped + post @ offsets
    params = ConversionParams(rate, ratio, params.base_speed, centres, inv_var, log_priors,
                              offsets, warp=warp)
    pairs = len(ia)
    report = FitReport(f0_ref, f0_base, pairs, ref_speech.sum() * dsp.HOP / rate,
                       base_speech.sum() * dsp.HOP / rate)
    return params, report


def say(synthesize: Synthesize, transcript: str, gap_s: float = 0.2) -> tuple[F32, int]:
    """The base voice saying ``transcript`` sentence by sentence, joined by short pauses."""
    sentences = [s for s in re.split(r"(?<=[.!?])\s+", transcript.strip()) if s]
    if not sentences:
        raise ValueError("the transcript is empty")
    parts: list[F32] = []
    rate = 0
    for sentence in sentences:
        audio, rate = synthesize(sentence)
        parts.append(np.asarray(audio, dtype=np.float32).reshape(-1))
        parts.append(np.zeros(int(gap_s * rate), dtype=np.float32))
    return np.concatenate(parts[:-1]), rate


def mean_f0(audio: F32, rate: int) -> float:
    """Geometric mean F0 (Hz, 60-400) of clearly voiced frames (``voiced_log_f0``); the median
    of log F0 guards against the odd octave error. Raises ``ValueError`` when fewer than 10 frames
    are voiced."""
    return float(np.exp(np.median(voiced_log_f0(audio, rate))))


def f0_stats(audio: F32, rate: int) -> tuple[float, float]:
    """(typical F0 in Hz, spread) of a speaker's clearly voiced frames: the median of log F0 and
    half the distance between its 16th and 84th percentiles (a standard deviation that an octave
    error or two cannot move). Raises ``ValueError`` when fewer than 10 frames are voiced."""
    low, mid, high = np.percentile(voiced_log_f0(audio, rate), [16, 50, 84])
    return float(np.exp(mid)), float((high - low) / 2)


def voiced_log_f0(audio: F32, rate: int) -> F64:
    """Natural log F0 (Hz, 60-400) of each clearly voiced frame, by YIN (de Cheveigne &
    Kawahara 2002) at 16 kHz: 25 ms windows every 10 ms, the cumulative-mean-normalised
    difference, the first dip under 0.15 (refined to its local minimum) in frames within 30 dB
    of the loudest. Raises ``ValueError`` when fewer than 10 frames are voiced."""
    wav = soxr.resample(audio, rate, 16000).astype(np.float64) if rate != 16000 else audio.astype(
        np.float64)
    size, hop = 400, 160
    lo, hi = 16000 // 400, 16000 // 60
    count = max(0, 1 + (len(wav) - 2 * size) // hop)
    if count == 0:
        raise ValueError("no voiced speech found")
    frames = wav[np.arange(count)[:, None] * hop + np.arange(2 * size)[None, :]]
    frames = frames - frames.mean(axis=1, keepdims=True)
    head = frames[:, :size]
    # d(tau) = E(0) + E(tau) - 2 r(tau) over a window of ``size`` samples
    n = 4 * size
    r = np.fft.irfft(np.conj(np.fft.rfft(head, n, axis=1)) * np.fft.rfft(frames, n, axis=1),
                     n, axis=1)[:, :size]
    sq = np.concatenate([np.zeros((count, 1)), np.cumsum(frames * frames, axis=1)], axis=1)
    e_tau = sq[:, size:2 * size] - sq[:, :size]
    d = e_tau[:, :1] + e_tau - 2 * r
    cum = np.cumsum(d[:, 1:], axis=1)
    cmnd = np.ones_like(d)
    cmnd[:, 1:] = d[:, 1:] * np.arange(1, size) / np.maximum(cum, 1e-12)
    energy = (head * head).sum(axis=1)
    loud = 10 * np.log10(energy + 1e-12) > 10 * np.log10(energy.max() + 1e-12) - 30.0
    lags = []
    for row in np.nonzero(loud)[0]:
        below = np.nonzero(cmnd[row, lo:hi] < 0.15)[0]
        if below.size == 0:
            continue
        tau = lo + int(below[0])
        while tau + 1 < hi and cmnd[row, tau + 1] < cmnd[row, tau]:
            tau += 1
        lags.append(tau)
    if len(lags) < 10:
        raise ValueError("no voiced speech found")
    out: F64 = np.log(16000.0 / np.asarray(lags, dtype=np.float64))
    return out


_WARPS = np.exp(np.linspace(np.log(0.8), np.log(1.25), 13))


def _best_warp(ref: F64, base: F64, rate: int) -> float:
    """The envelope warp (of ``_WARPS``) that brings aligned base frames closest to the
    reference's, both with their frame level removed (vocal-tract-length estimate)."""
    ref = ref - ref.mean(axis=1, keepdims=True)
    errors = []
    for w in _WARPS:
        moved = base + base @ dsp.warp_operator(rate, float(w)).T
        moved -= moved.mean(axis=1, keepdims=True)
        errors.append(float(np.mean((moved - ref) ** 2)))
    return float(_WARPS[int(np.argmin(errors))])


def _speech(logmel: F64) -> npt.NDArray[np.bool_]:
    energy = np.log(np.exp(logmel).sum(axis=1)) * (10 / np.log(10))
    mask: npt.NDArray[np.bool_] = energy > np.percentile(energy, 95) - _SILENCE_DB
    return mask


def _normalised(x: F64) -> F64:
    out: F64 = (x - x.mean(axis=0)) / (x.std(axis=0) + 1e-8)
    return out


def _kmeans(x: F64, k: int, iterations: int = 20) -> tuple[F64, F64, F64]:
    """Centres, shared inverse variance, log priors of ``k`` clusters (deterministic init:
    frames spread evenly in time)."""
    k = max(1, min(k, len(x) // 20))
    centres = x[np.linspace(0, len(x) - 1, k).astype(np.int64)].copy()
    labels = np.zeros(len(x), dtype=np.int64)
    for _ in range(iterations):
        dist = ((x[:, None, :] - centres[None, :, :]) ** 2).sum(axis=2)
        labels = dist.argmin(axis=1)
        for c in range(k):
            members = x[labels == c]
            if len(members):
                centres[c] = members.mean(axis=0)
    var = ((x - centres[labels]) ** 2).mean(axis=0) + 1e-6
    counts = np.bincount(labels, minlength=k) + 1.0
    return centres, 1.0 / var, np.log(counts / counts.sum())


def _offsets(diff: F64, post: F64, shrink: float) -> F64:
    """Per-class posterior-weighted mean differences, shrunk toward the global mean; the mean
    level change is removed."""
    level = diff.mean()
    diff = diff - level
    global_mean = diff.mean(axis=0)
    weights = post.sum(axis=0)
    out: F64 = (post.T @ diff + shrink * global_mean[None, :]) / (weights[:, None] + shrink)
    return out
