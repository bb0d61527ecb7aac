"""A cloned XTTS voice: GPT conditioning latents plus the decoder's speaker d-vector.

Computed once from reference audio (:func:`clone_voice`) and stored with the voice profile
(:meth:`VoiceConditioning.to_bytes`), so synthesis never re-reads the reference.
"""

from __future__ import annotations

import io
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import torch

from inference.xtts.config import XttsConfig
from inference.xtts.features import cloning_mel
from inference.xtts.model import XttsModel

_COND_CHUNK_S = 6.0
"""coqui's ``gpt_cond_chunk_len``: style latents are averaged over 6 s chunks."""
_COND_MAX_S = 30.0


@dataclass(frozen=True)
class VoiceConditioning:
    gpt_latents: npt.NDArray[np.float32]
    """[perceiver_latents, gpt dim]"""
    speaker_embedding: npt.NDArray[np.float32]
    """[d_vector_dim], L2-normalised"""

    def to_bytes(self) -> bytes:
        buf = io.BytesIO()
        np.savez(buf, gpt_latents=self.gpt_latents, speaker_embedding=self.speaker_embedding)
        return buf.getvalue()

    @classmethod
    def from_bytes(cls, data: bytes) -> VoiceConditioning:
        with np.load(io.BytesIO(data)) as npz:
            return cls(npz["gpt_latents"].astype(np.float32),
                       npz["speaker_embedding"].astype(np.float32))

    def fits(self, config: XttsConfig) -> bool:
        return (self.gpt_latents.shape == (config.perceiver_latents, config.gpt_n_model_channels)
                and self.speaker_embedding.shape == (config.d_vector_dim,))


def random_voice(config: XttsConfig, seed: int) -> VoiceConditioning:
    """A deterministic stand-in speaker for random-weight models (tests, benchmarks)."""
    rng = np.random.default_rng(seed)
    latents = rng.standard_normal((config.perceiver_latents, config.gpt_n_model_channels))
    embedding = rng.standard_normal(config.d_vector_dim)
    return VoiceConditioning(latents.astype(np.float32),
                             (embedding / np.linalg.norm(embedding)).astype(np.float32))


def _resample(audio: npt.NDArray[np.float32], rate_hz: int, target_hz: int) -> torch.Tensor:
    import soxr

    out = audio if rate_hz == target_hz else soxr.resample(audio, rate_hz, target_hz)
    return torch.from_numpy(np.ascontiguousarray(out, dtype=np.float32))


@torch.inference_mode()
def clone_voice(
    model: XttsModel, audio: npt.NDArray[np.float32], sample_rate_hz: int
) -> VoiceConditioning:
    """Conditioning from mono reference audio (coqui's ``get_conditioning_latents``): style latents
    averaged over 6 s chunks of the first 30 s at 22.05 kHz, d-vector from the 16 kHz audio. The
    conditioning modules and the speaker encoder must be float32 (the engine keeps them so); they
    run on the model's device. Raises ``ValueError`` for under 0.33 s of audio."""
    device = model.mel_stats.device
    wav22 = _resample(audio, sample_rate_hz, 22050)[: int(22050 * _COND_MAX_S)].to(device)
    chunk = int(22050 * _COND_CHUNK_S)
    styles = []
    for start in range(0, wav22.shape[0], chunk):
        piece = wav22[start:start + chunk]
        if piece.shape[0] < 22050 * 0.33:
            continue
        mel = cloning_mel(piece[None], model.mel_stats)
        styles.append(model.gpt.style_latents(mel)[0])
    if not styles:
        raise ValueError("reference audio is shorter than 0.33 s")
    wav16 = _resample(audio, sample_rate_hz, 16000).to(device)
    embedding = model.hifigan_decoder.speaker_encoder(wav16[None])[0]
    return VoiceConditioning(torch.stack(styles).mean(dim=0).float().cpu().numpy(),
                             embedding.float().cpu().numpy())
