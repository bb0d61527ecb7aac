"""Fixtures of the browser tests: a real Timbre server and Debian's Chromium driven by Playwright.

Chromium is the system package (``apt-get install chromium``), never a Playwright download. A
missing Chromium or Playwright skips these tests locally with the reason, and fails them under CI
(``CI`` set), where every test must run (the same rule as ``tests/services.py``).

The server offers loopback ICE candidates (aioice leaves 127.0.0.1 out of its host addresses), so
Chromium's WebRTC call reaches aiortc on this machine without any network. Its reference-audio
check asks for 3 s of speech instead of 10 s, so the fake microphone records for seconds, not
half a minute. Its scheduler admits every new utterance: on a busy shared machine admission control
would answer ``server_busy`` (which the page shows; tests/realtime cover admission), and these tests
are about the page. Only the Piper engine runs (Kokoro off): the clone job compares the reference
with every stock voice, and a dozen Kokoro voices make that minutes on a busy 2-core machine
instead of seconds. Everything else is the default configuration.
"""

from __future__ import annotations

import io
import os
import shutil
import wave
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aioice.ice
import numpy as np
import pytest

from inference.piper import PiperEngine
from tests.server import RunningServer, ServerThread
from tests.services import missing

CHROMIUM = os.environ.get("TIMBRE_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_FLAGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--autoplay-policy=no-user-gesture-required", "--use-fake-ui-for-media-stream",
    "--use-fake-device-for-media-stream", "--allow-loopback-in-peer-connection",
]
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "browser"

REFERENCE_SENTENCES = (
    "The quick brown fox jumps over the lazy dog near the river bank.",
    "Please call Stella and ask her to bring these things with her from the store.",
    "Six spoons of fresh snow peas, five thick slabs of blue cheese, and a snack for Bob.",
)


@pytest.fixture(scope="session")
def chromium_path() -> str:
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        missing("playwright", "pip install -e '.[test]'")
    if not (os.path.isfile(CHROMIUM) and os.access(CHROMIUM, os.X_OK)):
        found = shutil.which("chromium")
        if found is None:
            missing("chromium", "apt-get install chromium")
        return found
    return CHROMIUM


@pytest.fixture(scope="session")
def reference_wav(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """About 12 s of the stock Piper voice as a 48 kHz mono WAV: the upload fixture, and the
    fake microphone's input (Chromium plays the file in a loop as the microphone)."""
    root = tmp_path_factory.mktemp("reference")
    engine = PiperEngine(cache_dir=root / "cache")
    audio = np.concatenate([engine.synthesize_one_pass(s) for s in REFERENCE_SENTENCES])
    audio = 0.8 * audio / np.abs(audio).max()
    # 48 kHz 16-bit: the format Chromium's fake capture device reads without surprises
    ratio = 48000 / engine.sample_rate_hz
    positions = np.arange(int(len(audio) * ratio)) / ratio
    resampled = np.interp(positions, np.arange(len(audio)), audio)
    path = root / "reference.wav"
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(48000)
        out.writeframes((resampled * 32767).astype("<i2").tobytes())
    path.write_bytes(buffer.getvalue())
    return path


@pytest.fixture(scope="session")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(aioice.ice, "get_host_addresses", lambda use_ipv4, use_ipv6: ["127.0.0.1"])
        thread = ServerThread(tmp_path_factory.mktemp("browser"),
                              reference={"min_speech_s": 3.0, "recommended_speech_s": 3.0},
                              scheduler={"admission_utilization": None, "late_window_s": 0.0},
                              kokoro={"enabled": False})
        yield thread.start()
        thread.stop()


@pytest.fixture(scope="package")
def browser(chromium_path: str, reference_wav: Path) -> Iterator[Any]:
    """One Chromium for this package (Playwright gives it a fresh profile directory).

    Package scope, not session: Playwright's sync API keeps an event loop running on the main
    thread while it is open, which would break every asyncio test collected after this package.
    """
    from playwright.sync_api import sync_playwright

    flags = [*CHROMIUM_FLAGS, f"--use-file-for-fake-audio-capture={reference_wav}"]
    with sync_playwright() as pw:
        chromium = pw.chromium.launch(executable_path=chromium_path, headless=True, args=flags)
        yield chromium
        chromium.close()


@pytest.fixture
def artifacts() -> Path:
    """Where screenshots go (``test-artifacts/browser/``, kept by CI, ignored by git)."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    return ARTIFACTS
