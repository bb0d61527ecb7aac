"""Build the XTTS engine an operator configured: checkpoint directory plus reference recordings.

The app factory imports this module (and so torch) only when ``[xtts]`` names a checkpoint.
"""

from __future__ import annotations

from pathlib import Path

import soundfile

from inference.voice_registry import VoiceRegistry
from inference.xtts.engine import XttsEngine, XttsEngineConfig
from inference.xtts_settings import XttsSettings


def build_xtts_engine(settings: XttsSettings, voice_source: VoiceRegistry | None = None
                      ) -> XttsEngine:
    """Load the checkpoint and clone the configured voices. Blocking (seconds to minutes): call it
    off the event loop. Raises ``CheckpointMismatch``, ``OSError`` or ``ValueError`` with the cause."""
    if settings.checkpoint_dir is None:
        raise ValueError("xtts.checkpoint_dir is not set")
    if not settings.voices:
        raise ValueError("xtts needs at least one reference voice in [xtts.voices]")
    config = XttsEngineConfig(
        device=settings.device,
        dtype=settings.dtype,
        max_active=settings.max_active,
        cuda_graphs=settings.cuda_graphs and settings.device.startswith("cuda"),
    )
    engine = XttsEngine.from_checkpoint(Path(settings.checkpoint_dir), config,
                                        voice_source=voice_source)
    for name, path in sorted(settings.voices.items()):
        audio, rate = soundfile.read(path, dtype="float32", always_2d=True)
        engine.add_voice(name, engine.clone_voice(audio.mean(axis=1), int(rate)))
    return engine
