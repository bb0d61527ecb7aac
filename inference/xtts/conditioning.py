"""XTTS-v2 speaker conditioning: a mel encoder and a perceiver resampler to a fixed set of latents.

Names follow coqui-tts (``gpt.conditioning_encoder.attn.N.qkv``,
``gpt.conditioning_perceiver.layers.N.0.to_kv``, ...). Quirks kept on purpose because the
checkpoint was trained with them: the encoder's attention block adds its output to the *normalised*
input, and the perceiver attends over its own latents concatenated with the context.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


class GroupNorm32(nn.GroupNorm):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(x.float()).type(x.dtype)


def _groups(channels: int) -> int:
    groups = 32 if channels > 64 else 16 if channels > 16 else 8
    while channels % groups:
        groups //= 2
    return groups


class AttentionBlock(nn.Module):
    def __init__(self, channels: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.norm = GroupNorm32(_groups(channels), channels)
        self.qkv = nn.Conv1d(channels, channels * 3, 1)
        self.proj_out = nn.Conv1d(channels, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x_norm = self.norm(x)
        qkv = self.qkv(x_norm)
        b, width, length = qkv.shape
        ch = width // (3 * self.heads)
        # heads are split before q/k/v (tortoise's "legacy" layout)
        q, k, v = qkv.reshape(b * self.heads, ch * 3, length).split(ch, dim=1)
        scale = 1 / math.sqrt(math.sqrt(ch))
        weight = torch.einsum("bct,bcs->bts", q * scale, k * scale)
        weight = torch.softmax(weight.float(), dim=-1).type(weight.dtype)
        h = torch.einsum("bts,bcs->bct", weight, v).reshape(b, -1, length)
        return x_norm + self.proj_out(h)


class ConditioningEncoder(nn.Module):
    def __init__(self, spec_dim: int, dim: int, blocks: int, heads: int) -> None:
        super().__init__()
        self.init = nn.Conv1d(spec_dim, dim, kernel_size=1)
        self.attn = nn.Sequential(*(AttentionBlock(dim, heads) for _ in range(blocks)))

    def forward(self, mel: torch.Tensor) -> torch.Tensor:
        """``mel`` [B, 80, S] -> [B, D, S]."""
        return self.attn(self.init(mel))


class PerceiverAttention(nn.Module):
    def __init__(self, dim: int, dim_head: int, heads: int) -> None:
        super().__init__()
        inner = dim_head * heads
        self.heads = heads
        self.to_q = nn.Linear(dim, inner, bias=False)
        self.to_kv = nn.Linear(dim, inner * 2, bias=False)
        self.to_out = nn.Linear(inner, dim, bias=False)

    def forward(self, latents: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        context = torch.cat([latents, context], dim=-2)
        q = self.to_q(latents)
        k, v = self.to_kv(context).chunk(2, dim=-1)
        q, k, v = (t.unflatten(-1, (self.heads, -1)).transpose(1, 2) for t in (q, k, v))
        out = F.scaled_dot_product_attention(q, k, v)
        return self.to_out(out.transpose(1, 2).flatten(2))


class GEGLU(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x, gate = x.chunk(2, dim=-1)
        return F.gelu(gate) * x


class RMSNorm(nn.Module):
    def __init__(self, dim: int) -> None:
        super().__init__()
        self.scale = dim ** 0.5
        self.gamma = nn.Parameter(torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.normalize(x, dim=-1) * self.scale * self.gamma


def _feed_forward(dim: int, mult: int = 4) -> nn.Sequential:
    inner = int(dim * mult * 2 / 3)
    return nn.Sequential(nn.Linear(dim, inner * 2), GEGLU(), nn.Linear(inner, dim))


class PerceiverResampler(nn.Module):
    def __init__(self, dim: int, *, depth: int, num_latents: int, dim_head: int, heads: int) -> None:
        super().__init__()
        self.latents = nn.Parameter(torch.empty(num_latents, dim).normal_(std=0.02))
        self.layers = nn.ModuleList(
            nn.ModuleList([PerceiverAttention(dim, dim_head, heads), _feed_forward(dim)])
            for _ in range(depth)
        )
        self.norm = RMSNorm(dim)

    def forward(self, context: torch.Tensor) -> torch.Tensor:
        """``context`` [B, S, D] -> [B, num_latents, D]."""
        latents = self.latents.expand(context.shape[0], -1, -1)
        for attn, ff in self.layers:  # type: ignore[misc]
            latents = attn(latents, context) + latents
            latents = ff(latents) + latents
        return self.norm(latents)
