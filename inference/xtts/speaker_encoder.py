"""XTTS's speaker encoder (coqui ``ResNetSpeakerEncoder``, H/ASP): 16 kHz audio -> 512-dim d-vector
that conditions every upsampling stage of the HiFi-GAN decoder."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from inference.xtts.config import XttsConfig
from inference.xtts.features import MelSpectrogram


class PreEmphasis(nn.Module):
    def __init__(self, coefficient: float = 0.97) -> None:
        super().__init__()
        self.register_buffer("filter", torch.tensor([[[-coefficient, 1.0]]]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.pad(x.unsqueeze(1), (1, 0), "reflect")
        return F.conv1d(x, self.filter).squeeze(1)


class SELayer(nn.Module):
    def __init__(self, channel: int, reduction: int = 8) -> None:
        super().__init__()
        self.avg_pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Sequential(
            nn.Linear(channel, channel // reduction), nn.ReLU(inplace=True),
            nn.Linear(channel // reduction, channel), nn.Sigmoid(),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c = x.shape[:2]
        return x * self.fc(self.avg_pool(x).view(b, c)).view(b, c, 1, 1)


class SEBasicBlock(nn.Module):
    def __init__(self, inplanes: int, planes: int, stride: int = 1,
                 downsample: nn.Module | None = None) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(inplanes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.se = SELayer(planes)
        self.downsample = downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.bn1(self.relu(self.conv1(x)))
        out = self.se(self.bn2(self.conv2(out)))
        residual = x if self.downsample is None else self.downsample(x)
        return self.relu(out + residual)


class ResNetSpeakerEncoder(nn.Module):
    def __init__(self, config: XttsConfig, proj_dim: int) -> None:
        super().__init__()
        filters, input_dim = config.speaker_filters, config.speaker_input_dim
        self.conv1 = nn.Conv2d(1, filters[0], kernel_size=3, stride=1, padding=1)
        self.relu = nn.ReLU(inplace=True)
        self.bn1 = nn.BatchNorm2d(filters[0])
        self._inplanes = filters[0]
        self.layer1 = self._layer(filters[0], config.speaker_layers[0], 1)
        self.layer2 = self._layer(filters[1], config.speaker_layers[1], 2)
        self.layer3 = self._layer(filters[2], config.speaker_layers[2], 2)
        self.layer4 = self._layer(filters[3], config.speaker_layers[3], 2)
        self.instancenorm = nn.InstanceNorm1d(input_dim)
        self.torch_spec = nn.Sequential(
            PreEmphasis(0.97),
            MelSpectrogram(sample_rate=16000, n_fft=512, win_length=400, hop_length=160,
                           n_mels=input_dim, window_fn=torch.hamming_window),
        )
        channels = filters[3] * (input_dim // 8)
        self.attention = nn.Sequential(
            nn.Conv1d(channels, 128, kernel_size=1), nn.ReLU(), nn.BatchNorm1d(128),
            nn.Conv1d(128, channels, kernel_size=1), nn.Softmax(dim=2),
        )
        self.fc = nn.Linear(channels * 2, proj_dim)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def _layer(self, planes: int, blocks: int, stride: int) -> nn.Sequential:
        downsample = None
        if stride != 1 or self._inplanes != planes:
            downsample = nn.Sequential(
                nn.Conv2d(self._inplanes, planes, kernel_size=1, stride=stride, bias=False),
                nn.BatchNorm2d(planes),
            )
        layers = [SEBasicBlock(self._inplanes, planes, stride, downsample)]
        self._inplanes = planes
        layers += [SEBasicBlock(planes, planes) for _ in range(1, blocks)]
        return nn.Sequential(*layers)

    def forward(self, wav_16k: torch.Tensor) -> torch.Tensor:
        """``wav_16k`` [B, samples] -> L2-normalised d-vectors [B, proj_dim]."""
        x = (self.torch_spec(wav_16k) + 1e-6).log()
        x = self.instancenorm(x).unsqueeze(1)
        x = self.bn1(self.relu(self.conv1(x)))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        x = x.reshape(x.shape[0], -1, x.shape[-1])
        w = self.attention(x)
        mu = torch.sum(x * w, dim=2)
        sg = torch.sqrt((torch.sum(x**2 * w, dim=2) - mu**2).clamp(min=1e-5))
        return F.normalize(self.fc(torch.cat([mu, sg], dim=1)), p=2, dim=1)
