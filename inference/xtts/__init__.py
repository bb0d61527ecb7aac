"""XTTS-v2 on the step interface: batched GPT decoding with per-request KV caches and streamed
HiFi-GAN audio. Needs ``torch`` (and ``tokenizers`` for a real checkpoint's ``vocab.json``)."""

from inference.xtts.config import XttsConfig
from inference.xtts.engine import XttsEngine, XttsEngineConfig
from inference.xtts.model import CheckpointMismatch, XttsModel, load_model
from inference.xtts.sampling import SamplingConfig
from inference.xtts.voices import VoiceConditioning, clone_voice, random_voice

__all__ = [
    "CheckpointMismatch",
    "SamplingConfig",
    "VoiceConditioning",
    "XttsConfig",
    "XttsEngine",
    "XttsEngineConfig",
    "XttsModel",
    "clone_voice",
    "load_model",
    "random_voice",
]
