"""Choosing the next audio code for a batch of requests, each independent of its batch-mates.

Greedy (temperature 0) is an argmax. Sampling uses the Gumbel-max trick with noise that is a hash of
(request seed, step, code), not a shared generator's stream: a request draws the same codes whether
it is decoded alone or beside others, at any batch position, which keeps batching invisible.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

_MASK32 = 0xFFFFFFFF


@dataclass(frozen=True)
class SamplingConfig:
    temperature: float = 0.0
    """0 picks the most likely code (greedy); coqui's XTTS default is 0.75."""
    top_k: int = 50
    top_p: float = 0.85
    repetition_penalty: float = 1.0
    """HuggingFace-style penalty on codes already generated (coqui's default is 10.0)."""


def _hash32(x: torch.Tensor) -> torch.Tensor:
    # Multipliers below 2**31 keep every product of 32-bit values inside int64.
    x = ((x >> 16) ^ x) * 0x45D9F3B & _MASK32
    x = ((x >> 16) ^ x) * 0x45D9F3B & _MASK32
    return (x >> 16) ^ x


def gumbel_noise(seeds: torch.Tensor, steps: torch.Tensor, vocab: int) -> torch.Tensor:
    """[B, vocab] Gumbel(0, 1) noise, a pure function of each row's (seed, step)."""
    row = _hash32((seeds * 0x9E3779B + steps) & _MASK32)
    codes = torch.arange(vocab, device=seeds.device, dtype=torch.int64)
    bits = _hash32((row[:, None] ^ (codes[None, :] * 0x2545F49)) & _MASK32)
    u = (bits.double() + 0.5) / 2.0**32
    return -torch.log(-torch.log(u)).float()


def choose(
    logits: torch.Tensor,
    config: SamplingConfig,
    *,
    seeds: torch.Tensor,
    steps: torch.Tensor,
    history: torch.Tensor | None = None,
    banned: int | None = None,
) -> torch.Tensor:
    """Next code per row of ``logits`` [B, V]. ``history`` [B, H] holds each row's earlier codes
    (-1 where none) for the repetition penalty; ``banned`` is a code never to pick (the stop code
    in fixed-length mode)."""
    logits = logits.float()
    if banned is not None:
        logits[:, banned] = float("-inf")
    if config.repetition_penalty != 1.0 and history is not None:
        logits = _penalise(logits, history, config.repetition_penalty)
    if config.temperature <= 0.0:
        return logits.argmax(dim=-1)
    logits = _filter_top(logits / config.temperature, config.top_k, config.top_p)
    noise = gumbel_noise(seeds, steps, logits.shape[-1])
    return (logits + noise).argmax(dim=-1)


def _penalise(logits: torch.Tensor, history: torch.Tensor, penalty: float) -> torch.Tensor:
    seen = torch.zeros_like(logits, dtype=torch.bool)
    valid = history >= 0
    seen.scatter_(1, history.clamp(min=0), valid)
    penalised = torch.where(logits > 0, logits / penalty, logits * penalty)
    return torch.where(seen, penalised, logits)


def _filter_top(logits: torch.Tensor, top_k: int, top_p: float) -> torch.Tensor:
    if 0 < top_k < logits.shape[-1]:
        kth = logits.topk(top_k, dim=-1).values[:, -1:]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    if top_p < 1.0:
        ordered, order = logits.sort(dim=-1, descending=True)
        cumulative = ordered.softmax(dim=-1).cumsum(dim=-1)
        drop = cumulative - ordered.softmax(dim=-1) > top_p  # keep the code that crosses top_p
        logits = logits.masked_fill(drop.scatter(1, order, drop), float("-inf"))
    return logits
