"""The XTTS-v2 model as coqui-tts lays it out: ``gpt``, ``hifigan_decoder`` and ``mel_stats``.

:func:`load_model` builds it from an operator-supplied checkpoint directory (``config.json``,
``model.pth``; weights are never downloaded) or, without one, with seeded random weights of the
given sizes (tests, benchmarks).
"""

from __future__ import annotations

import logging
from pathlib import Path

import torch
from torch import nn

from inference.xtts.config import XttsConfig
from inference.xtts.gpt import XttsGpt
from inference.xtts.hifigan import HifiDecoder

log = logging.getLogger(__name__)

_IGNORED_PREFIXES = ("torch_mel_spectrogram_style_encoder", "torch_mel_spectrogram_dvae", "dvae")
"""Training-only modules a coqui trainer checkpoint may carry (coqui drops them too)."""


class CheckpointMismatch(ValueError):
    """A checkpoint's tensors do not fit this model (wrong file, or a config.json that lies)."""


class XttsModel(nn.Module):
    def __init__(self, config: XttsConfig) -> None:
        super().__init__()
        self.config = config
        self.gpt = XttsGpt(config)
        self.hifigan_decoder = HifiDecoder(config)
        self.register_buffer("mel_stats", torch.ones(config.cond_mel_channels))


def _is_alias(key: str) -> bool:
    """Keys that duplicate or derive from others: HF GPT-2's causal-mask buffers, the inference
    wrapper coqui builds around the same modules, and ``gpt.gpt.wte`` (= ``gpt.mel_embedding``)."""
    return (
        key.endswith((".attn.bias", ".attn.masked_bias"))
        or key.startswith(("gpt.gpt_inference.", "gpt.gpt.wte."))
    )


def normalize_state_dict(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """coqui's ``get_compatible_checkpoint_state_dict``: strip a trainer's ``xtts.`` prefix, drop
    training-only modules and aliases."""
    out: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        key = key.removeprefix("xtts.")
        if key.split(".")[0] in _IGNORED_PREFIXES or _is_alias(key):
            continue
        out[key] = value
    return out


def load_state(model: XttsModel, state: dict[str, torch.Tensor]) -> None:
    """Load a coqui XTTS state dict strictly (after :func:`normalize_state_dict`). Legacy weight-norm
    keys (``weight_g``/``weight_v``) are mapped by torch's weight-norm parametrisation."""
    result = model.load_state_dict(normalize_state_dict(state), strict=False)
    missing = [k for k in result.missing_keys if not _is_alias(k)]
    if missing or result.unexpected_keys:
        raise CheckpointMismatch(
            f"checkpoint does not match the XTTS model: missing {missing[:8]} "
            f"({len(missing)}), unexpected {result.unexpected_keys[:8]} "
            f"({len(result.unexpected_keys)})"
        )


def load_model(
    checkpoint_dir: str | Path | None = None,
    *,
    config: XttsConfig | None = None,
    seed: int = 0,
) -> XttsModel:
    """Build the model on the CPU in float32, in eval mode.

    With ``checkpoint_dir``: sizes from its ``config.json``, weights from ``model.pth`` (a coqui
    checkpoint: ``{"model": state_dict}`` or a bare state dict). Raises ``FileNotFoundError`` when
    a file is missing and :class:`CheckpointMismatch` when the tensors do not fit. Without it:
    ``config`` (default XTTS-v2 sizes) with random weights drawn from ``seed``.
    """
    if checkpoint_dir is not None:
        directory = Path(checkpoint_dir)
        config = XttsConfig.from_checkpoint_json(directory / "config.json")
        model = XttsModel(config)
        raw = torch.load(directory / "model.pth", map_location="cpu", weights_only=True)
        load_state(model, raw.get("model", raw))
        log.info("loaded XTTS checkpoint from %s", directory)
    else:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            model = XttsModel(config or XttsConfig.xtts_v2())
    model.hifigan_decoder.fuse()
    return model.eval().requires_grad_(False)
