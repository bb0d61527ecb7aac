"""Settings of the optional XTTS engine, importable without torch (the engine itself needs it)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path


@dataclass(frozen=True)
class XttsSettings:
    """``[xtts]`` in the TOML configuration. The engine is off while ``checkpoint_dir`` is unset."""

    checkpoint_dir: Path | None = None
    device: str = "cuda"
    dtype: str = "bfloat16"
    max_active: int = 128
    """KV-cache slots: concurrent XTTS streams (about 120 MiB each in bf16 at XTTS-v2 sizes)."""
    cuda_graphs: bool = True
    voices: dict[str, str] = field(default_factory=dict)
    """Voice name -> reference recording (any format soundfile reads); each becomes
    ``xtts:<name>``, cloned once at start-up."""

    @property
    def enabled(self) -> bool:
        return self.checkpoint_dir is not None
