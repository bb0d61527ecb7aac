"""What every compat script prints: one JSON object per run describing the audio a framework handed
its caller. Runs inside ``.venv-compat`` (no timbre imports; standard library only).

The PCM itself goes to a file beside the report (``<out_dir>/<name>.pcm``, 16-bit little-endian
mono), so the main suite can check it with its recogniser.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any


@dataclass
class Run:
    """One synthesis through a framework's public API, as the framework's caller saw it."""

    name: str
    framework: str
    api: str
    output_format: str
    text: str
    utterance: int = 1
    """Which utterance of the same service instance (and connection) this is, from 1."""
    audio_bytes: int = 0
    sample_rate: int = 0
    num_channels: int = 0
    frames: int = 0
    duration_s: float = 0.0
    words: list[dict[str, Any]] = field(default_factory=list)
    """Word timestamps the framework derived from the server's alignment: word, start_s, end_s."""
    errors: list[str] = field(default_factory=list)
    audio_file: str = ""

    def add_audio(self, pcm: bytes, sample_rate: int, num_channels: int) -> None:
        if self.sample_rate and sample_rate != self.sample_rate:
            self.errors.append(f"sample rate changed from {self.sample_rate} to {sample_rate}")
        self.sample_rate, self.num_channels = sample_rate, num_channels
        self.audio_bytes += len(pcm)
        self.frames += 1
        self._pcm.append(pcm)

    def save(self, out_dir: Path) -> None:
        path = out_dir / f"{self.name}.pcm"
        path.write_bytes(b"".join(self._pcm))
        self.audio_file = str(path)
        if self.sample_rate and self.num_channels:
            self.duration_s = self.audio_bytes / (2 * self.num_channels * self.sample_rate)

    def __post_init__(self) -> None:
        self._pcm: list[bytes] = []


def arguments(description: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--base-url", required=True, help="Timbre's HTTP base, http://host:port")
    parser.add_argument("--api-key", required=True)
    parser.add_argument("--voice", default="piper:joe")
    parser.add_argument("--text", required=True)
    parser.add_argument("--out-dir", type=Path, required=True)
    return parser.parse_args()


def emit(framework: str, version: str, runs: list[Run], out_dir: Path) -> None:
    """Save each run's audio and print the report (one JSON object on stdout)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    for run in runs:
        run.save(out_dir)
    report = {"framework": framework, "version": version,
              "runs": [{k: v for k, v in asdict(run).items() if not k.startswith("_")}
                       for run in runs]}
    json.dump(report, sys.stdout)
    sys.stdout.write("\n")
    sys.stdout.flush()
