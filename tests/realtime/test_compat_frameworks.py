"""Pipecat and LiveKit Agents, unmodified, against a real Timbre with only their base URL changed.

The frameworks cannot share the main venv (``pipecat-ai`` pins protobuf 6, below what onnx and
onnxruntime here need), so they live in ``.venv-compat`` (``make compat``, pinned in
``requirements/compat.txt``) and are driven by the scripts in ``tests/compat/`` as subprocesses.
Each script uses the framework's public API as its docs show and prints what the framework handed
its caller: audio (saved as PCM), sample rate, duration, and the word timestamps it derived from
Timbre's alignment. Here that audio must be what was asked for, as long as Timbre's own rendering
of the text, and intelligible.

Without ``.venv-compat`` the tests skip locally and fail in CI (``CI`` set), where ``make test``
builds it first.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from realtime.audio import pcm16_to_float
from tests.asr import recognize, word_overlap
from tests.server import RunningServer, ServerThread

ROOT = Path(__file__).resolve().parents[2]
COMPAT_PYTHON = ROOT / ".venv-compat" / "bin" / "python"
SCRIPTS = ROOT / "tests" / "compat"
SENTENCE = "The quick brown fox jumps over the lazy dog near the river bank."
VOICE = "piper:joe"
SCRIPT_TIMEOUT_S = 240

if not COMPAT_PYTHON.exists() and not os.environ.get("CI"):
    pytest.skip(f"{COMPAT_PYTHON} is missing: `make compat` builds it", allow_module_level=True)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    # Admission by measured throughput is not under test here; on a loaded 2-core machine it can
    # refuse a run that starts while the scheduler still winds down the previous one.
    thread = ServerThread(tmp_path_factory.mktemp("compat-frameworks"),
                          scheduler={"admission_utilization": None})
    yield thread.start()
    thread.stop()


def run_script(server: RunningServer, name: str, out_dir: Path) -> dict[str, Any]:
    """Run ``tests/compat/<name>.py`` in ``.venv-compat``; its JSON report."""
    assert COMPAT_PYTHON.exists(), f"{COMPAT_PYTHON} is missing: `make compat` builds it"
    done = subprocess.run(
        [str(COMPAT_PYTHON), str(SCRIPTS / f"{name}.py"), "--base-url", server.url,
         "--api-key", server.key, "--voice", VOICE, "--text", SENTENCE, "--out-dir", str(out_dir)],
        capture_output=True, text=True, timeout=SCRIPT_TIMEOUT_S, check=False,
        env={k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "VIRTUAL_ENV"))})
    sys.stderr.write(done.stderr[-4000:])  # the framework's own log, shown when a test fails
    assert done.stdout.strip(), f"{name} printed no report (exit {done.returncode})"
    report: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return report


@pytest.fixture(scope="module")
def reference_duration_s(server: RunningServer) -> float:
    """How long Timbre's own rendering of SENTENCE lasts (its ElevenLabs HTTP route, raw PCM)."""
    request = urllib.request.Request(
        f"{server.url}/v1/text-to-speech/{VOICE}?output_format=pcm_24000",
        data=json.dumps({"text": SENTENCE}).encode(), method="POST",
        headers={"xi-api-key": server.key, "Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=60) as response:
        return len(response.read()) / 2 / 24000


@pytest.fixture(scope="module")
def pipecat(server: RunningServer, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    return run_script(server, "pipecat_tts", tmp_path_factory.mktemp("pipecat"))


@pytest.fixture(scope="module")
def livekit(server: RunningServer, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    return run_script(server, "livekit_tts", tmp_path_factory.mktemp("livekit"))


def runs_of(report: dict[str, Any]) -> dict[tuple[str, str, int], dict[str, Any]]:
    """The report's runs by (api, output format, utterance)."""
    return {(run["api"], run["output_format"], run["utterance"]): run for run in report["runs"]}


def words(text: str) -> list[str]:
    return re.findall(r"[a-z']+", text.lower())


def check_audio(run: dict[str, Any], reference_s: float) -> None:
    """What every run must have received: audio only, at the rate asked for, as long as Timbre's
    own rendering (MP3 adds at most a frame or two of padding), that says the sentence."""
    assert run["errors"] == [], run["errors"]
    rate = int(run["output_format"].split("_")[1])
    assert (run["sample_rate"], run["num_channels"]) == (rate, 1)
    assert run["audio_bytes"] > 0 and run["frames"] > 0
    assert abs(run["duration_s"] - reference_s) <= 0.1 * reference_s, (run["duration_s"],
                                                                       reference_s)
    pcm = Path(run["audio_file"]).read_bytes()
    assert len(pcm) == run["audio_bytes"]
    heard = recognize(pcm16_to_float(pcm), rate)
    assert word_overlap(SENTENCE, heard) >= 0.5, heard


def check_words(run: dict[str, Any], reference_s: float) -> None:
    """The framework's word timestamps, from Timbre's alignment: every word of the text, in order,
    at times that never go back and fit in the audio."""
    assert [w for item in run["words"] for w in words(item["word"])] == words(SENTENCE)
    starts = [item["start_s"] for item in run["words"]]
    assert all(isinstance(t, float) for t in starts)
    assert starts == sorted(starts)
    assert starts[-1] - starts[0] <= reference_s


@pytest.mark.parametrize("utterance", [1, 2])  # 2: the next context on the same socket
@pytest.mark.parametrize("api", ["websocket", "http"])
def test_pipecat_services_speak_through_timbre(pipecat: dict[str, Any], api: str, utterance: int,
                                               reference_duration_s: float) -> None:
    assert pipecat["framework"] == "pipecat-ai"
    run = runs_of(pipecat)[(api, "pcm_24000", utterance)]
    check_audio(run, reference_duration_s)
    check_words(run, reference_duration_s)


@pytest.mark.parametrize(("api", "utterance"), [("synthesize", 1), ("stream", 1), ("stream", 2)])
@pytest.mark.parametrize("encoding", ["pcm_24000", "mp3_22050_32"])
def test_livekit_plugin_speaks_through_timbre(livekit: dict[str, Any], api: str, utterance: int,
                                              encoding: str, reference_duration_s: float) -> None:
    assert livekit["framework"] == "livekit-plugins-elevenlabs"
    run = runs_of(livekit)[(api, encoding, utterance)]
    check_audio(run, reference_duration_s)
    if api == "stream":  # the WebSocket carries alignment; the plugin's HTTP path has none
        # Every word arrives; LiveKit's plugin reads each message's times as if they counted
        # from the start of the context, where ElevenLabs' (and Timbre's) restart per message,
        # so only the words are checked, not their order in time.
        assert [w for item in run["words"] for w in words(item["word"])] == words(SENTENCE)
