"""XTTS's ``hifigan_decoder``: GPT latents -> 24 kHz waveform, conditioned on a speaker d-vector.

Same names as coqui-tts (``hifigan_decoder.waveform_decoder.ups.0.parametrizations.weight.original0``,
``hifigan_decoder.speaker_encoder.layer1...``). Weight norm is a parametrisation while loading (torch
maps legacy ``weight_g``/``weight_v`` keys onto it) and is folded into plain weights by
:meth:`HifiDecoder.fuse` before inference.

The decoder first stretches the latents to the vocoder's frame rate by two linear interpolations
(x4: 1024 -> 256 samples per frame; x24000/22050: 22.05 -> 24 kHz) and then runs a convolutional
HiFi-GAN generator (x256 upsampling). Both are local, which is what lets
``inference.xtts.vocoder_stream`` decode an utterance window by window with the one-pass result.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.parametrizations import weight_norm
from torch.nn.utils.parametrize import is_parametrized, remove_parametrizations

from inference.xtts.config import XttsConfig
from inference.xtts.speaker_encoder import ResNetSpeakerEncoder

LRELU_SLOPE = 0.1


def _padding(kernel: int, dilation: int) -> int:
    return (kernel * dilation - dilation) // 2


class ResBlock1(nn.Module):
    def __init__(self, channels: int, kernel: int, dilations: tuple[int, ...]) -> None:
        super().__init__()
        self.convs1 = nn.ModuleList(
            weight_norm(nn.Conv1d(channels, channels, kernel, 1, dilation=d,
                                  padding=_padding(kernel, d)))
            for d in dilations
        )
        self.convs2 = nn.ModuleList(
            weight_norm(nn.Conv1d(channels, channels, kernel, 1, dilation=1,
                                  padding=_padding(kernel, 1)))
            for _ in dilations
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for c1, c2 in zip(self.convs1, self.convs2):
            x = c2(F.leaky_relu(c1(F.leaky_relu(x, LRELU_SLOPE)), LRELU_SLOPE)) + x
        return x

    def context_frames(self) -> int:
        """How many frames on each side one output frame depends on."""
        total = 0
        for c1, c2 in zip(self.convs1, self.convs2):
            total += _padding(c1.kernel_size[0], c1.dilation[0]) + _padding(c2.kernel_size[0], 1)
        return total


class HifiganGenerator(nn.Module):
    def __init__(self, config: XttsConfig) -> None:
        super().__init__()
        c = config
        ch0 = c.upsample_initial_channel
        self.num_kernels = len(c.resblock_kernel_sizes)
        self.conv_pre = nn.Conv1d(c.decoder_input_dim, ch0, 7, 1, padding=3)
        self.ups = nn.ModuleList(
            weight_norm(nn.ConvTranspose1d(ch0 // 2**i, ch0 // 2 ** (i + 1), k, u,
                                           padding=(k - u) // 2))
            for i, (u, k) in enumerate(zip(c.upsample_rates, c.upsample_kernel_sizes))
        )
        self.resblocks = nn.ModuleList(
            ResBlock1(ch0 // 2 ** (i + 1), k, d)
            for i in range(len(c.upsample_rates))
            for k, d in zip(c.resblock_kernel_sizes, c.resblock_dilation_sizes)
        )
        last = ch0 // 2 ** len(c.upsample_rates)
        self.conv_post = nn.Conv1d(last, 1, 7, 1, padding=3, bias=False)
        self.cond_layer = nn.Conv1d(c.d_vector_dim, ch0, 1)
        self.cond_in_each_up_layer = c.cond_d_vector_in_each_upsampling_layer
        if self.cond_in_each_up_layer:
            self.conds = nn.ModuleList(
                nn.Conv1d(c.d_vector_dim, ch0 // 2 ** (i + 1), 1)
                for i in range(len(c.upsample_rates))
            )

    def forward(self, x: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
        """``x`` [B, C, frames], ``g`` [B, d_vector, 1] -> waveform [B, 1, frames * upsample]."""
        o = self.conv_pre(x) + self.cond_layer(g)
        for i, up in enumerate(self.ups):
            o = up(F.leaky_relu(o, LRELU_SLOPE))
            if self.cond_in_each_up_layer:
                o = o + self.conds[i](g)
            blocks = self.resblocks[i * self.num_kernels:(i + 1) * self.num_kernels]
            z_sum = blocks[0](o)
            for block in blocks[1:]:
                z_sum = z_sum + block(o)
            o = z_sum / self.num_kernels
        return torch.tanh(self.conv_post(F.leaky_relu(o)))

    def context_frames(self) -> float:
        """Input frames on each side that one output sample depends on (an upper bound)."""
        total = float(self.conv_pre.padding[0])
        rate = 1
        for i, up in enumerate(self.ups):
            stride, kernel = int(up.stride[0]), int(up.kernel_size[0])
            total += (kernel // stride + 1) / rate
            rate *= stride
            blocks = self.resblocks[i * self.num_kernels:(i + 1) * self.num_kernels]
            total += max(block.context_frames() for block in blocks) / rate
        return total + float(self.conv_post.padding[0]) / rate


class HifiDecoder(nn.Module):
    def __init__(self, config: XttsConfig) -> None:
        super().__init__()
        self.config = config
        self.waveform_decoder = HifiganGenerator(config)
        self.speaker_encoder = ResNetSpeakerEncoder(config, proj_dim=config.d_vector_dim)

    @property
    def latent_scale(self) -> float:
        return self.config.gpt_code_stride_len / self.config.output_hop_length

    @property
    def rate_scale(self) -> float:
        return self.config.output_sample_rate / self.config.input_sample_rate

    def forward(self, latents: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
        """One pass over a whole utterance, as coqui does it: ``latents`` [B, N, C] -> [B, 1, S]."""
        z = F.interpolate(latents.transpose(1, 2), scale_factor=[self.latent_scale], mode="linear")
        if self.config.output_sample_rate != self.config.input_sample_rate:
            z = F.interpolate(z, scale_factor=[self.rate_scale], mode="linear")
        return self.waveform_decoder(z, g=g)

    def fuse(self) -> None:
        """Fold weight norm into plain weights (inference only; idempotent)."""
        for module in self.waveform_decoder.modules():
            if is_parametrized(module, "weight"):
                remove_parametrizations(module, "weight")
