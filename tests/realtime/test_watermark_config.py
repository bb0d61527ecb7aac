"""The watermark key is configuration: ``[watermark] key`` in the TOML file or env
``TIMBRE_WATERMARK_KEY``, used by the app's stamper for embedding and by detection, never shown."""

from __future__ import annotations

from pathlib import Path

import pytest
import soundfile

from realtime.cli import main as cli_main
from realtime.config import load_config
from session.watermark.detect import detect
from session.watermark.pattern import DEFAULT_KEY
from session.watermark.stamp import Stamper, WatermarkSettings
from tests.session.test_watermark import RATE, voice_like


def test_the_key_comes_from_the_file_and_the_environment_wins(tmp_path: Path) -> None:
    assert load_config(env={}).watermark.key_bytes == DEFAULT_KEY  # `make serve` works as is
    toml = tmp_path / "timbre.toml"
    toml.write_text('[watermark]\nkey = "from-the-file"\n')
    assert load_config(env={}, toml_path=toml).watermark.key == "from-the-file"
    config = load_config(env={"TIMBRE_WATERMARK_KEY": "from-env"}, toml_path=toml)
    assert config.watermark.key == "from-env"
    assert "from-env" not in repr(config)  # logging the config cannot leak it
    toml.write_text('[watermark]\nkey = ""\n')
    with pytest.raises(ValueError):
        load_config(env={}, toml_path=toml)


def test_the_stamper_marks_under_its_configured_key() -> None:
    host = voice_like(4.0, seed=21)
    stream = Stamper(None, WatermarkSettings(key="tenant-deployment")).mark(None, "v", RATE)
    marked = stream.process(host)
    assert detect(marked, RATE, key=b"tenant-deployment").detected
    assert not detect(marked, RATE).detected


def test_the_cli_detects_under_the_configured_key(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    host = voice_like(4.0, seed=22)
    marked = Stamper(None, WatermarkSettings(key="cli-key")).mark(None, "v", RATE).process(host)
    clip = tmp_path / "clip.wav"
    soundfile.write(clip, marked, RATE)
    monkeypatch.delenv("TIMBRE_CONFIG", raising=False)
    monkeypatch.setenv("TIMBRE_WATERMARK_KEY", "cli-key")
    assert cli_main(["watermark", "detect", str(clip)]) == 0
    monkeypatch.setenv("TIMBRE_WATERMARK_KEY", "another-key")
    assert cli_main(["watermark", "detect", str(clip)]) == 1
