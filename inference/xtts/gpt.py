"""XTTS's GPT: a GPT-2 decoder over audio codes, prefixed by conditioning latents and text.

Module and parameter names are those of coqui-tts (``gpt.gpt.h.N.attn.c_attn.weight``,
``gpt.text_embedding``, ``gpt.mel_head``, ...), so a coqui XTTS-v2 ``model.pth`` loads as is. The
transformer blocks are HuggingFace GPT-2's (``Conv1D`` weights stored ``[in, out]``, tanh GELU,
LayerNorm eps 1e-5, no learned token positions: XTTS adds its own text and audio position
embeddings).

Three ways through the stack, all computing the same function:

* :meth:`GptStack.forward_full` - a plain causal pass (reference and tests);
* :meth:`GptStack.forward_prefill` - a padded batch of prompts, writing every position's keys and
  values into the request's KV-cache slot;
* :meth:`GptStack.forward_decode` - one new position for each request of a batch, each attending to
  its own slot over its own length (requests of different lengths side by side).

A latent (what the HiFi-GAN decoder hears) is ``final_norm(ln_f(h))`` at the position that predicted
the audio code; the code's logits are ``mel_head(latent)``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from inference.xtts.conditioning import ConditioningEncoder, PerceiverResampler
from inference.xtts.config import XttsConfig
from inference.xtts.kv_cache import KvCache


class Conv1D(nn.Module):
    """HuggingFace GPT-2's linear layer: ``weight`` is ``[in, out]``."""

    def __init__(self, nf: int, nx: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.empty(nx, nf).normal_(std=0.02))
        self.bias = nn.Parameter(torch.zeros(nf))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = torch.addmm(self.bias, x.reshape(-1, x.shape[-1]), self.weight)
        return out.view(*x.shape[:-1], out.shape[-1])


class Attention(nn.Module):
    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.c_attn = Conv1D(3 * dim, dim)
        self.c_proj = Conv1D(dim, dim)

    def qkv(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``x`` [B, T, D] -> q, k, v each [B, H, T, hd]."""
        b, t, d = x.shape
        q, k, v = self.c_attn(x).split(d, dim=-1)
        shape = (b, t, self.heads, d // self.heads)
        return (q.view(shape).transpose(1, 2), k.view(shape).transpose(1, 2),
                v.view(shape).transpose(1, 2))

    def out(self, y: torch.Tensor) -> torch.Tensor:
        """``y`` [B, H, T, hd] -> [B, T, D]."""
        b, h, t, hd = y.shape
        return self.c_proj(y.transpose(1, 2).reshape(b, t, h * hd))


class Mlp(nn.Module):
    def __init__(self, dim: int) -> None:
        super().__init__()
        self.c_fc = Conv1D(4 * dim, dim)
        self.c_proj = Conv1D(dim, 4 * dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.c_proj(F.gelu(self.c_fc(x), approximate="tanh"))


class Block(nn.Module):
    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        self.ln_1 = nn.LayerNorm(dim, eps=1e-5)
        self.attn = Attention(dim, heads)
        self.ln_2 = nn.LayerNorm(dim, eps=1e-5)
        self.mlp = Mlp(dim)


class GptStack(nn.Module):
    """HuggingFace ``GPT2Model`` without ``wte``/``wpe`` (coqui deletes both)."""

    def __init__(self, layers: int, dim: int, heads: int) -> None:
        super().__init__()
        self.h = nn.ModuleList(Block(dim, heads) for _ in range(layers))
        self.ln_f = nn.LayerNorm(dim, eps=1e-5)

    def forward_full(self, x: torch.Tensor, valid: torch.Tensor | None = None) -> torch.Tensor:
        """Causal pass over ``x`` [B, T, D]; ``valid`` [B, T] marks real (not padding) positions."""
        mask = _prefill_mask(x.shape[1], valid, x.device)
        for block in self.h:
            q, k, v = block.attn.qkv(block.ln_1(x))
            x = self._finish_block(block, x, q, k, v, mask)
        return self.ln_f(x)

    def forward_prefill(
        self, x: torch.Tensor, valid: torch.Tensor, cache: KvCache, slots: torch.Tensor
    ) -> torch.Tensor:
        """Like :meth:`forward_full`, also writing positions ``0..T-1`` of every row into the cache
        rows ``slots`` [B]. Keys of padding positions are written too; decode masks them out."""
        t = x.shape[1]
        mask = _prefill_mask(t, valid, x.device)
        for i, block in enumerate(self.h):
            q, k, v = block.attn.qkv(block.ln_1(x))
            cache.k[i, slots, :, :t] = k
            cache.v[i, slots, :, :t] = v
            x = self._finish_block(block, x, q, k, v, mask)
        return self.ln_f(x)

    def forward_decode(
        self,
        x: torch.Tensor,
        cache: KvCache,
        slots: torch.Tensor,
        positions: torch.Tensor,
        context: int,
        contiguous: bool = False,
    ) -> torch.Tensor:
        """One new position per row: ``x`` [B, D] sits at ``positions`` [B] of cache rows ``slots``
        [B]; each row attends to its own first ``positions + 1`` entries. ``context`` (> every
        position) bounds how much of each row is read. ``contiguous`` promises ``slots`` is
        ``0..B-1``: rows are then read in place instead of gathered (a copy per layer)."""
        x = x.unsqueeze(1)
        rows = x.shape[0]
        span = torch.arange(context, device=x.device)
        mask = (span[None, :] <= positions[:, None])[:, None, None, :]
        for i, block in enumerate(self.h):
            q, k, v = block.attn.qkv(block.ln_1(x))
            cache.k[i, slots, :, positions] = k[:, :, 0]
            cache.v[i, slots, :, positions] = v[:, :, 0]
            if contiguous:
                keys, values = cache.k[i, :rows, :, :context], cache.v[i, :rows, :, :context]
            else:
                keys = cache.k[i, :, :, :context].index_select(0, slots)
                values = cache.v[i, :, :, :context].index_select(0, slots)
            x = self._finish_block(block, x, q, keys, values, mask)
        return self.ln_f(x[:, 0])

    @staticmethod
    def _finish_block(
        block: Block, x: torch.Tensor, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
        mask: torch.Tensor,
    ) -> torch.Tensor:
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
        x = x + block.attn.out(y)
        return x + block.mlp(block.ln_2(x))


def _prefill_mask(t: int, valid: torch.Tensor | None, device: torch.device) -> torch.Tensor:
    causal = torch.ones(t, t, dtype=torch.bool, device=device).tril()
    if valid is None:
        return causal
    # A padding query row would attend to nothing (NaN); let it see itself.
    keys = valid[:, None, None, :] | torch.eye(t, dtype=torch.bool, device=device)
    return causal & keys


class LearnedPositionEmbeddings(nn.Module):
    def __init__(self, seq_len: int, dim: int) -> None:
        super().__init__()
        self.emb = nn.Embedding(seq_len, dim)
        nn.init.normal_(self.emb.weight, std=0.02)


class XttsGpt(nn.Module):
    """coqui's ``TTS.tts.layers.xtts.gpt.GPT`` (XTTS-v2: perceiver conditioning), inference only."""

    def __init__(self, config: XttsConfig) -> None:
        super().__init__()
        dim = config.gpt_n_model_channels
        self.config = config
        self.conditioning_encoder = ConditioningEncoder(
            config.cond_mel_channels, dim, config.cond_encoder_blocks, config.gpt_n_heads
        )
        self.text_embedding = nn.Embedding(config.gpt_number_text_tokens, dim)
        self.mel_embedding = nn.Embedding(config.gpt_num_audio_tokens, dim)
        self.gpt = GptStack(config.gpt_layers, dim, config.gpt_n_heads)
        self.mel_pos_embedding = LearnedPositionEmbeddings(config.mel_positions, dim)
        self.text_pos_embedding = LearnedPositionEmbeddings(config.text_positions, dim)
        self.final_norm = nn.LayerNorm(dim)
        self.text_head = nn.Linear(dim, config.gpt_number_text_tokens)
        self.mel_head = nn.Linear(dim, config.gpt_num_audio_tokens)
        self.conditioning_perceiver = PerceiverResampler(
            dim,
            depth=config.perceiver_depth,
            num_latents=config.perceiver_latents,
            dim_head=config.perceiver_dim_head,
            heads=config.perceiver_heads,
        )
        for emb in (self.text_embedding, self.mel_embedding):
            nn.init.normal_(emb.weight, std=0.02)

    # conditioning ------------------------------------------------------------------------------

    def style_latents(self, cond_mel: torch.Tensor) -> torch.Tensor:
        """Normalised log-mel ``[B, 80, S]`` -> conditioning latents ``[B, latents, D]``."""
        conds = self.conditioning_encoder(cond_mel)
        return self.conditioning_perceiver(conds.transpose(1, 2))

    # embeddings --------------------------------------------------------------------------------

    def prompt_embeddings(self, cond_latents: torch.Tensor, text_tokens: torch.Tensor) -> torch.Tensor:
        """One request's prompt: conditioning latents ``[latents, D]``, ``[START] text [STOP]``
        with text positions, then the start audio code at audio position 0 -> ``[P, D]``."""
        c = self.config
        framed = F.pad(F.pad(text_tokens, (0, 1), value=c.gpt_stop_text_token), (1, 0),
                       value=c.gpt_start_text_token)
        text = self.text_embedding(framed) + self.text_pos_embedding.emb.weight[: framed.shape[0]]
        start = torch.tensor([c.gpt_start_audio_token], device=text_tokens.device)
        audio = self.mel_embedding(start) + self.mel_pos_embedding.emb.weight[:1]
        return torch.cat([cond_latents.to(text.dtype), text, audio], dim=0)

    def code_embeddings(self, codes: torch.Tensor, audio_positions: torch.Tensor) -> torch.Tensor:
        """Audio codes ``[...]`` at audio positions ``[...]`` (the start code is position 0)."""
        return self.mel_embedding(codes) + self.mel_pos_embedding.emb(audio_positions)

    def latents_and_logits(self, hidden: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``ln_f`` output -> (latent, audio-code logits)."""
        latent = self.final_norm(hidden)
        return latent, self.mel_head(latent)

    # a plain reference ---------------------------------------------------------------------------

    def reference_latents(
        self, cond_latents: torch.Tensor, text_tokens: torch.Tensor, codes: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Teacher-forced latents and logits of ``codes`` [N] (no cache): the latent at index i is the
        one that predicted ``codes[i]``."""
        prompt = self.prompt_embeddings(cond_latents, text_tokens)
        positions = torch.arange(1, codes.shape[0], device=codes.device)
        fed = self.code_embeddings(codes[:-1], positions)
        hidden = self.gpt.forward_full(torch.cat([prompt, fed], dim=0)[None])[0]
        return self.latents_and_logits(hidden[prompt.shape[0] - 1:])

