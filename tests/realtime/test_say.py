"""``timbre say`` against a real server (embedded SecantusDB, auth, Piper), run in-process through
``realtime.cli.main``: the voice options reach the server and change what it speaks, a language the
voice does not speak ends the command with the server's reason, and out-of-range options are usage
errors before any connection."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import soundfile as sf

from realtime.cli import build_parser, main, subcommand_parser
from realtime.client import StreamClient
from realtime.protocol_fields import MAX_SPEED, MIN_SPEED
from session.pitch import MAX_PITCH, MIN_PITCH
from tests.server import RunningServer, ServerThread

TEXT = "The quick brown fox jumps over the lazy dog."


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    thread = ServerThread(tmp_path_factory.mktemp("say"))
    yield thread.start()
    thread.stop()


def say(server: RunningServer, capsys: pytest.CaptureFixture[str], out: Path,
        *options: str) -> tuple[int, dict[str, Any] | None, str]:
    """Run ``timbre say --json`` in-process; returns (exit status, report or None, stderr)."""
    capsys.readouterr()
    status = main(["say", "--url", server.ws_url, "--key", server.key, "--text", TEXT,
                   "--out", str(out), "--json", "--words-per-s", "0", *options])
    stdout, stderr = capsys.readouterr()
    return status, json.loads(stdout) if stdout.strip() else None, stderr


def test_voice_options_reach_the_server_and_change_the_speech(
        server: RunningServer, capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    status, plain, _ = say(server, capsys, tmp_path / "plain.wav")
    assert status == 0 and plain is not None
    assert (plain["voice"], plain["speed"], plain["pitch"], plain["language"]) == (
        "piper:joe", 1.0, 0.0, None)

    status, fast, err = say(server, capsys, tmp_path / "fast.wav",
                            "--speed", "2", "--pitch", "-3", "--language", "en_US")
    assert status == 0, err
    assert fast is not None
    assert (fast["speed"], fast["pitch"], fast["language"]) == (2.0, -3.0, "en-us")
    # twice the rate: clearly less audio for the same words, and the WAV holds what was sent
    assert fast["audio_s"] < 0.75 * plain["audio_s"]
    info = sf.info(str(tmp_path / "fast.wav"))
    assert info.samplerate == fast["sample_rate"]
    assert info.frames == fast["samples"]


def test_a_language_the_voice_does_not_speak_is_refused(
        server: RunningServer, capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    status, report, err = say(server, capsys, tmp_path / "fr.wav", "--language", "fr")
    assert status == 1 and report is None
    assert "unsupported_language" in err and "'fr'" in err
    assert not (tmp_path / "fr.wav").exists()


@pytest.mark.parametrize("option, value", [
    ("--speed", "0.4"), ("--speed", "2.5"), ("--speed", "nan"), ("--pitch", "6.5"),
    ("--pitch", "-7"), ("--pitch", "up"), ("--language", "not a code"), ("--language", "e"),
])
def test_out_of_range_options_are_usage_errors(
        capsys: pytest.CaptureFixture[str], option: str, value: str) -> None:
    with pytest.raises(SystemExit) as exit_:
        main(["say", "--url", "ws://127.0.0.1:9", "--text", TEXT, f"{option}={value}"])
    assert exit_.value.code == 2
    assert f"argument {option}" in capsys.readouterr().err


def test_help_states_the_protocol_ranges() -> None:
    """The help text is written out (it must not import the protocol stack); keep it honest."""
    text = subcommand_parser(build_parser(), "say").format_help()
    text = " ".join(text.split())
    assert f"{MIN_SPEED} to {MAX_SPEED}" in text
    assert f"{MIN_PITCH:g} to {MAX_PITCH:g}" in text


def test_a_context_refused_for_its_options_finishes_at_once(server: RunningServer) -> None:
    """Options in a ``text`` message (not the query) that the server refuses end the client's wait
    for that context right away: the server never starts it, so no ``context_done`` will come."""

    async def run() -> list[tuple[bool, list[str]]]:
        outcomes = []
        async with await StreamClient.connect(server.ws_url, server.key) as client:
            for context, options in [("fr", {"language": "fr"}), ("who", {"voice": "nobody"}),
                                     ("ok", {})]:
                await client.send_text(context, "Hello there.", **options)
                if context == "ok":  # closing a refused context would only add unknown_context
                    await client.close_context(context)
                record = await client.wait_done(context, 20.0)
                outcomes.append((record.refused, [e.code for e in record.errors]))
        return outcomes

    fr, who, ok = asyncio.run(asyncio.wait_for(run(), 60.0))
    assert fr == (True, ["unsupported_language"])
    assert who == (True, ["unknown_voice"])
    assert ok == (False, [])
