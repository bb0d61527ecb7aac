"""Mel spectrograms as torchaudio computes them, without torchaudio (its PyPI wheel is a CUDA build).

``MelSpectrogram`` keeps torchaudio's submodule and buffer names (``spectrogram.window``,
``mel_scale.fb``) because XTTS checkpoints store those buffers under the speaker encoder.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
from torch import nn


def _hz_to_mel(freq: np.ndarray, scale: str) -> np.ndarray:
    if scale == "htk":
        return 2595.0 * np.log10(1.0 + freq / 700.0)
    f_sp, min_log_hz, logstep = 200.0 / 3, 1000.0, np.log(6.4) / 27.0
    log_region = freq >= min_log_hz
    safe = np.maximum(freq, min_log_hz)
    return np.where(log_region, min_log_hz / f_sp + np.log(safe / min_log_hz) / logstep, freq / f_sp)


def _mel_to_hz(mels: np.ndarray, scale: str) -> np.ndarray:
    if scale == "htk":
        return 700.0 * (10.0 ** (mels / 2595.0) - 1.0)
    f_sp, min_log_hz, logstep = 200.0 / 3, 1000.0, np.log(6.4) / 27.0
    min_log_mel = min_log_hz / f_sp
    return np.where(mels >= min_log_mel, min_log_hz * np.exp(logstep * (mels - min_log_mel)),
                    f_sp * mels)


def mel_filterbank(
    n_freqs: int, f_min: float, f_max: float, n_mels: int, sample_rate: int,
    norm: str | None = None, mel_scale: str = "htk",
) -> torch.Tensor:
    """``torchaudio.functional.melscale_fbanks`` (in numpy, so it also works under a meta device
    context): ``[n_freqs, n_mels]`` float32."""
    all_freqs = np.linspace(0, sample_rate // 2, n_freqs)
    m_min, m_max = _hz_to_mel(np.array([f_min, f_max], dtype=np.float64), mel_scale)
    f_pts = _mel_to_hz(np.linspace(m_min, m_max, n_mels + 2), mel_scale)
    f_diff = f_pts[1:] - f_pts[:-1]
    slopes = f_pts[None, :] - all_freqs[:, None]
    down = -slopes[:, :-2] / f_diff[:-1]
    up = slopes[:, 2:] / f_diff[1:]
    fb = np.maximum(np.minimum(down, up), 0.0)
    if norm == "slaney":
        fb = fb * (2.0 / (f_pts[2: n_mels + 2] - f_pts[:n_mels]))
    return torch.from_numpy(fb.astype(np.float32))


class _Spectrogram(nn.Module):
    def __init__(self, n_fft: int, win_length: int, hop_length: int,
                 window_fn: Callable[[int], torch.Tensor]) -> None:
        super().__init__()
        self.n_fft, self.win_length, self.hop_length = n_fft, win_length, hop_length
        self.register_buffer("window", window_fn(win_length))

    def forward(self, wav: torch.Tensor) -> torch.Tensor:
        spec = torch.stft(wav, self.n_fft, self.hop_length, self.win_length, self.window,
                          center=True, pad_mode="reflect", return_complex=True)
        return spec.abs().pow(2.0)


class _MelScale(nn.Module):
    def __init__(self, fb: torch.Tensor) -> None:
        super().__init__()
        self.register_buffer("fb", fb)

    def forward(self, spec: torch.Tensor) -> torch.Tensor:
        return torch.matmul(spec.transpose(-1, -2), self.fb).transpose(-1, -2)


class MelSpectrogram(nn.Module):
    """Power mel spectrogram ``[..., n_mels, frames]`` of ``wav`` ``[..., samples]``."""

    def __init__(
        self, *, sample_rate: int, n_fft: int, win_length: int, hop_length: int, n_mels: int,
        f_min: float = 0.0, f_max: float | None = None, norm: str | None = None,
        window_fn: Callable[[int], torch.Tensor] = torch.hann_window,
    ) -> None:
        super().__init__()
        self.spectrogram = _Spectrogram(n_fft, win_length, hop_length, window_fn)
        fb = mel_filterbank(n_fft // 2 + 1, f_min, f_max or sample_rate / 2, n_mels, sample_rate,
                            norm)
        self.mel_scale = _MelScale(fb)

    def forward(self, wav: torch.Tensor) -> torch.Tensor:
        return self.mel_scale(self.spectrogram(wav))


def cloning_mel(wav_22k: torch.Tensor, mel_stats: torch.Tensor) -> torch.Tensor:
    """coqui's ``wav_to_mel_cloning`` for XTTS-v2: ``[B, samples]`` at 22.05 kHz -> ``[B, 80, S]``
    normalised log-mel (n_fft 2048, hop 256, window 1024, 0-8 kHz, slaney-normalised filters)."""
    mel = MelSpectrogram(sample_rate=22050, n_fft=2048, win_length=1024, hop_length=256,
                         n_mels=mel_stats.shape[0], f_max=8000.0, norm="slaney")
    spec = mel.to(wav_22k.device)(wav_22k.float())
    return torch.log(torch.clamp(spec, min=1e-5)) / mel_stats.float()[None, :, None]
