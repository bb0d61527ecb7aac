"""Speaker embeddings: resemblyzer's pretrained GE2E voice encoder, without resemblyzer's imports.

The ``resemblyzer`` package ships the weights (``pretrained.pt``, 17 MB); nothing is downloaded.
Importing the package itself would import librosa (numba, llvmlite, scikit-learn, ...) and webrtcvad
only for its mel spectrogram and silence trimming, so this module reads the weights from the
installed distribution without importing it and computes the same features with numpy:

* audio at 16 kHz, raised (never lowered) to -30 dBFS RMS, as ``resemblyzer.normalize_volume``;
* a power (not log) mel spectrogram: 25 ms Hann window (400-point FFT), 10 ms hop, centred frames
  with zero padding, 40 Slaney-style mel bands from 0 to 8 kHz (librosa's defaults);
* partial utterances of 160 frames (1.6 s), one every 77 frames (resemblyzer's rate of 1.3 per
  second; a last partial that covers less than 75 % of its frames is dropped unless it is the only
  one), each through LSTM 3x256 -> linear 256 -> ReLU -> L2 norm; the utterance embedding is the
  L2-normalised mean of its partials' embeddings.

``tests/inference/test_speaker.py`` checks the result against resemblyzer's own ``VoiceEncoder``
when resemblyzer's dependencies are installed. Silence is not trimmed here: pass speech (the
reference-audio checks trim long silences first).
"""

from __future__ import annotations

import importlib.metadata
from functools import lru_cache
from pathlib import Path

import numpy as np
import numpy.typing as npt
import soxr
import torch
from torch import nn

SAMPLE_RATE_HZ = 16000
"""The rate the encoder works at; other rates are resampled (soxr, high quality)."""
EMBEDDING_DIM = 256

_N_FFT = 400
_HOP = 160
_N_MELS = 40
PARTIAL_FRAMES = 160
"""Mel frames (10 ms each) in one partial utterance: the encoder's unit of 1.6 s."""
_PARTIAL_STEP = 77
_MIN_COVERAGE = 0.75
_TARGET_DBFS = -30.0

_F32 = npt.NDArray[np.float32]


def weights_path() -> Path:
    """``pretrained.pt`` inside the installed ``resemblyzer`` distribution. Found through the
    distribution's metadata: ``importlib.resources.files("resemblyzer")`` would import the package
    and with it librosa. Raises ``FileNotFoundError`` when resemblyzer is not installed."""
    try:
        dist = importlib.metadata.distribution("resemblyzer")
    except importlib.metadata.PackageNotFoundError as exc:
        raise FileNotFoundError("the resemblyzer package (speaker encoder weights) is not "
                                "installed") from exc
    path = Path(str(dist.locate_file("resemblyzer/pretrained.pt")))
    if not path.is_file():
        raise FileNotFoundError(f"resemblyzer is installed but has no weights at {path}")
    return path


class _Network(nn.Module):
    """resemblyzer's ``VoiceEncoder`` network, with the same parameter names."""

    def __init__(self) -> None:
        super().__init__()
        self.lstm = nn.LSTM(_N_MELS, EMBEDDING_DIM, 3, batch_first=True)
        self.linear = nn.Linear(EMBEDDING_DIM, EMBEDDING_DIM)

    def forward(self, mels: torch.Tensor) -> torch.Tensor:
        """[batch, frames, 40] power mel -> [batch, 256] L2-normalised embeddings."""
        _, (hidden, _) = self.lstm(mels)
        raw: torch.Tensor = torch.relu(self.linear(hidden[-1]))
        norm = torch.linalg.vector_norm(raw, dim=1, keepdim=True).clamp_min(1e-12)
        unit: torch.Tensor = raw / norm
        return unit


class SpeakerEncoder:
    """Embeds speech into resemblyzer's 256-dim speaker space (CPU). Load once and share:
    construction reads 17 MB of weights; calls hold no state and may come from any thread. A call
    takes about 30 ms per 4 s of audio on 2 cores (torch's own threads): keep it off the event
    loop.

    Raises ``FileNotFoundError`` from construction when resemblyzer's weights are not installed.
    """

    def __init__(self, path: Path | None = None) -> None:
        checkpoint = torch.load(path or weights_path(), map_location="cpu", weights_only=True)
        state = {k: v for k, v in checkpoint["model_state"].items()
                 if k.startswith(("lstm.", "linear."))}  # drop GE2E's training-only similarity
        self._network = _Network()
        self._network.load_state_dict(state)
        self._network.eval()

    def embed(self, audio: _F32, sample_rate_hz: int) -> _F32:
        """One L2-normalised embedding, shape (256,), for mono float audio in [-1, 1]. Audio
        shorter than 1.6 s is zero-padded to one partial. Raises ``ValueError`` for empty audio."""
        row: _F32 = self.embed_windows(audio, sample_rate_hz, window_s=None)[0]
        return row

    def embed_windows(self, audio: _F32, sample_rate_hz: int, window_s: float | None = 3.0,
                      hop_s: float = 1.5) -> _F32:
        """One embedding per window, shape (n, 256): windows of ``window_s`` seconds every
        ``hop_s`` seconds (the last one ends at the end of the audio), each embedded as ``embed``
        would embed it alone, except that quiet audio is raised once for the whole (a quiet window
        in loud audio is not raised on its own). Audio no longer than one window gives one row;
        ``window_s`` None embeds the whole audio as one window. All partials go through the
        network as one batch. Raises ``ValueError`` for empty audio, a window shorter than one
        partial (1.6 s) or a hop that is not positive."""
        wav = _prepare(audio, sample_rate_hz)
        spans = _window_spans(len(wav), window_s, hop_s)
        partials: list[_F32] = []
        owners: list[int] = []
        for index, (start, end) in enumerate(spans):
            chunks = _partial_mels(wav[start:end])
            partials.extend(chunks)
            owners.extend([index] * len(chunks))
        with torch.inference_mode():
            embeds = self._network(torch.from_numpy(np.stack(partials))).numpy()
        sums = np.zeros((len(spans), EMBEDDING_DIM), dtype=np.float64)
        np.add.at(sums, np.asarray(owners), embeds)
        return _normalise(sums).astype(np.float32)


def cosine(a: npt.ArrayLike, b: npt.ArrayLike) -> float:
    """Cosine similarity of two embeddings (1.0: same direction). For this encoder, speech of one
    speaker scores about 0.9-0.99, two different speakers about 0.45-0.75."""
    x, y = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    return float(x @ y / max(float(np.linalg.norm(x) * np.linalg.norm(y)), 1e-12))


def _prepare(audio: _F32, sample_rate_hz: int) -> _F32:
    wav = np.asarray(audio, dtype=np.float32).reshape(-1)
    if wav.size == 0:
        raise ValueError("cannot embed empty audio")
    if sample_rate_hz != SAMPLE_RATE_HZ:
        wav = soxr.resample(wav, sample_rate_hz, SAMPLE_RATE_HZ).astype(np.float32)
    rms = float(np.sqrt(np.mean(np.square(wav, dtype=np.float64))))
    if rms == 0.0:
        return wav
    gain_db = _TARGET_DBFS - 20.0 * np.log10(rms)
    return wav * np.float32(10.0 ** (gain_db / 20.0)) if gain_db > 0 else wav


def _window_spans(samples: int, window_s: float | None, hop_s: float) -> list[tuple[int, int]]:
    if window_s is None:
        return [(0, samples)]
    if window_s < PARTIAL_FRAMES * _HOP / SAMPLE_RATE_HZ or hop_s <= 0:
        raise ValueError("window_s must be at least 1.6 s and hop_s positive")
    window, hop = round(window_s * SAMPLE_RATE_HZ), round(hop_s * SAMPLE_RATE_HZ)
    if samples <= window:
        return [(0, samples)]
    starts = list(range(0, samples - window, hop)) + [samples - window]
    return [(s, s + window) for s in starts]


def _partial_mels(wav: _F32) -> list[_F32]:
    """The mel spectrograms of the partial utterances of ``wav``, as resemblyzer's
    ``compute_partial_slices`` cuts them (zero-padding the audio that the last one needs)."""
    frames = int(np.ceil((len(wav) + 1) / _HOP))
    starts = list(range(0, max(1, frames - PARTIAL_FRAMES + _PARTIAL_STEP + 1), _PARTIAL_STEP))
    coverage = (len(wav) - starts[-1] * _HOP) / (PARTIAL_FRAMES * _HOP)
    if coverage < _MIN_COVERAGE and len(starts) > 1:
        starts.pop()
    needed = (starts[-1] + PARTIAL_FRAMES) * _HOP
    mel = _mel_spectrogram(np.pad(wav, (0, max(0, needed - len(wav)))))
    return [mel[s:s + PARTIAL_FRAMES] for s in starts]


def _mel_spectrogram(wav: _F32) -> _F32:
    """[frames, 40] power mel spectrogram, as ``librosa.feature.melspectrogram`` with resemblyzer's
    settings (centred frames, zero padding, periodic Hann window)."""
    padded = np.pad(wav.astype(np.float64), _N_FFT // 2)
    count = 1 + (len(padded) - _N_FFT) // _HOP
    frames = np.lib.stride_tricks.as_strided(
        padded, shape=(count, _N_FFT), strides=(padded.strides[0] * _HOP, padded.strides[0]))
    power = np.abs(np.fft.rfft(frames * _hann(), axis=1)) ** 2
    return (power @ _mel_filterbank().T).astype(np.float32)


@lru_cache(maxsize=1)
def _hann() -> npt.NDArray[np.float64]:
    n = np.arange(_N_FFT)
    return 0.5 - 0.5 * np.cos(2.0 * np.pi * n / _N_FFT)


def _hz_to_mel(hz: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    """Slaney's mel scale: linear below 1 kHz, logarithmic above."""
    linear = hz / (200.0 / 3)
    log = 15.0 + np.log(np.maximum(hz, 1e-10) / 1000.0) / (np.log(6.4) / 27.0)
    return np.where(hz >= 1000.0, log, linear)


def _mel_to_hz(mel: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    linear = mel * (200.0 / 3)
    log = 1000.0 * np.exp((np.log(6.4) / 27.0) * (mel - 15.0))
    return np.where(mel >= 15.0, log, linear)


@lru_cache(maxsize=1)
def _mel_filterbank() -> npt.NDArray[np.float64]:
    """[40, 201] triangular filters with Slaney area normalisation (librosa ``filters.mel``)."""
    fft_hz = np.linspace(0.0, SAMPLE_RATE_HZ / 2, 1 + _N_FFT // 2)
    top_mel = float(_hz_to_mel(np.array([SAMPLE_RATE_HZ / 2]))[0])
    mel_hz = _mel_to_hz(np.linspace(0.0, top_mel, _N_MELS + 2))
    widths = np.diff(mel_hz)
    ramps = mel_hz[:, np.newaxis] - fft_hz[np.newaxis, :]
    lower = -ramps[:-2] / widths[:-1, np.newaxis]
    upper = ramps[2:] / widths[1:, np.newaxis]
    weights = np.maximum(0.0, np.minimum(lower, upper))
    filters: npt.NDArray[np.float64] = weights * (2.0 / (mel_hz[2:] - mel_hz[:-2]))[:, np.newaxis]
    return filters


def _normalise(x: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    unit: npt.NDArray[np.float64] = x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)
    return unit
