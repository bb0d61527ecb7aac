"""Model sizes of XTTS-v2 and of a tiny twin for CPU tests.

The field names follow coqui-tts's ``XttsArgs`` (``model_args`` in a checkpoint's ``config.json``), so
an operator-supplied checkpoint directory is read with :func:`XttsConfig.from_checkpoint_json`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class XttsConfig:
    # GPT over audio codes
    gpt_layers: int = 30
    gpt_n_model_channels: int = 1024
    gpt_n_heads: int = 16
    gpt_number_text_tokens: int = 6681
    gpt_start_text_token: int = 261
    gpt_stop_text_token: int = 0
    gpt_num_audio_tokens: int = 1026
    gpt_start_audio_token: int = 1024
    gpt_stop_audio_token: int = 1025
    gpt_max_audio_tokens: int = 605
    gpt_max_text_tokens: int = 402
    gpt_max_prompt_tokens: int = 70
    gpt_code_stride_len: int = 1024
    """Samples at ``input_sample_rate`` per GPT latent (one audio code)."""
    # conditioning: encoder over an 80-band mel, perceiver resampler to fixed latents
    cond_mel_channels: int = 80
    cond_encoder_blocks: int = 6
    perceiver_latents: int = 32
    perceiver_depth: int = 2
    perceiver_heads: int = 8
    perceiver_dim_head: int = 64
    # HiFi-GAN decoder over GPT latents
    input_sample_rate: int = 22050
    output_sample_rate: int = 24000
    output_hop_length: int = 256
    decoder_input_dim: int = 1024
    d_vector_dim: int = 512
    cond_d_vector_in_each_upsampling_layer: bool = True
    upsample_initial_channel: int = 512
    upsample_rates: tuple[int, ...] = (8, 8, 2, 2)
    upsample_kernel_sizes: tuple[int, ...] = (16, 16, 4, 4)
    resblock_kernel_sizes: tuple[int, ...] = (3, 7, 11)
    resblock_dilation_sizes: tuple[tuple[int, ...], ...] = ((1, 3, 5), (1, 3, 5), (1, 3, 5))
    # speaker encoder (H/ASP ResNet over a 64-band mel at 16 kHz)
    speaker_layers: tuple[int, ...] = (3, 4, 6, 3)
    speaker_filters: tuple[int, ...] = (32, 64, 128, 256)
    speaker_input_dim: int = 64

    # derived sizes -------------------------------------------------------------------------------

    @property
    def head_dim(self) -> int:
        return self.gpt_n_model_channels // self.gpt_n_heads

    @property
    def mel_positions(self) -> int:
        """Rows of ``gpt.mel_pos_embedding`` (coqui: max_mel_tokens + 2 + max_conditioning_inputs)."""
        return self.gpt_max_audio_tokens + 3

    @property
    def text_positions(self) -> int:
        """Rows of ``gpt.text_pos_embedding`` (coqui: max_text_tokens + 2)."""
        return self.gpt_max_text_tokens + 2

    @property
    def max_context(self) -> int:
        """Longest GPT sequence: conditioning latents, framed text, start token and audio codes."""
        return self.perceiver_latents + self.text_positions + self.mel_positions

    @property
    def decoder_upsample(self) -> int:
        """Waveform samples per decoder input frame (the product of the upsampling rates)."""
        out = 1
        for rate in self.upsample_rates:
            out *= rate
        return out

    # constructors --------------------------------------------------------------------------------

    @classmethod
    def xtts_v2(cls) -> XttsConfig:
        """The published XTTS-v2 sizes (about 441M GPT parameters)."""
        return cls()

    @classmethod
    def tiny(cls) -> XttsConfig:
        """A few-hundred-kilobyte twin with the same structure, for CPU tests."""
        return cls(
            gpt_layers=2,
            gpt_n_model_channels=64,
            gpt_n_heads=4,
            gpt_number_text_tokens=300,
            gpt_num_audio_tokens=66,
            gpt_start_audio_token=64,
            gpt_stop_audio_token=65,
            gpt_max_audio_tokens=120,
            gpt_max_text_tokens=60,
            cond_encoder_blocks=1,
            perceiver_latents=4,
            perceiver_depth=1,
            perceiver_heads=2,
            perceiver_dim_head=16,
            decoder_input_dim=64,
            d_vector_dim=16,
            upsample_initial_channel=32,
            speaker_layers=(1, 1, 1, 1),
            speaker_filters=(8, 8, 16, 16),
        )

    @classmethod
    def from_checkpoint_json(cls, path: str | Path) -> XttsConfig:
        """Read a coqui-tts XTTS ``config.json``: its ``model_args`` override the defaults."""
        raw: dict[str, Any] = json.loads(Path(path).read_text())
        args = raw.get("model_args", raw)
        known = {f.name for f in fields(cls)}
        updates: dict[str, Any] = {}
        for name, value in args.items():
            if name in known and value is not None:
                updates[name] = _tupled(value)
        return replace(cls(), **updates)


def _tupled(value: Any) -> Any:
    if isinstance(value, list):
        return tuple(_tupled(v) for v in value)
    return value
