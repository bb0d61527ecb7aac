"""``timbre clone`` against a real server (embedded SecantusDB, auth, Piper, the real clone job):
the happy path as a subprocess of the console entry point (stdout's last line is a ready voice
id, plain progress lines on a piped stderr), the redrawn bar on a real terminal (a pty), and every
refusal a user can meet, each reported with the server's status, code and message.

The refusal tests call ``realtime.cli.main`` in-process (the function the ``timbre`` script runs):
a subprocess costs several seconds of imports on this machine and adds nothing to them."""

from __future__ import annotations

import dataclasses
import json
import os
import pty
import re
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from realtime.cli import main
from realtime.clone_cli import EXIT_FAILED, EXIT_TIMEOUT, EXIT_USAGE, default_statement
from session.db import Stores, open_database
from session.tiers import TierTable
from tests.server import RunningServer, ServerThread, free_port
from tests.services import run_sync
from tests.session.test_voice_service import reference_speech

MAX_UPLOAD_BYTES = 1_200_000
"""The test server's upload limit: above the ~0.75 MB reference, so that 413 is cheap to reach."""
VOICE_ID = re.compile(r"^v_[0-9a-f]{16}$")
CONSENT = ["--owner", "Ada Lovelace", "--purpose", "audiobook narration"]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    thread = ServerThread(tmp_path_factory.mktemp("clone"),
                          reference={"max_upload_bytes": MAX_UPLOAD_BYTES})
    thread.config = dataclasses.replace(thread.config, tiers=TierTable.from_mapping({
        "listener": {"characters_per_month": 1000, "max_profiles": 0,
                     "max_concurrent_streams": 1}}))  # its tenants may not make profiles
    yield thread.start()
    thread.stop()


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """About 17 s of stock-Piper speech as a WAV file."""
    folder = tmp_path_factory.mktemp("reference")
    path = folder / "ref.wav"
    path.write_bytes(reference_speech(folder))
    return path


def timbre_command() -> list[str]:
    """The installed ``timbre`` console script beside this interpreter, else ``python -m``."""
    script = Path(sys.executable).with_name("timbre")
    return [str(script)] if script.exists() else [sys.executable, "-m", "realtime.cli"]


def clone(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    """Run ``timbre clone ARGV`` in-process; returns (exit status, stdout, stderr)."""
    capsys.readouterr()
    status = main(["clone", *argv])
    out, err = capsys.readouterr()
    return status, out, err


def get(server: RunningServer, path: str, key: str) -> dict[str, Any]:
    request = urllib.request.Request(server.url + path,
                                     headers={"Authorization": f"Bearer {key}"})
    with urllib.request.urlopen(request, timeout=10) as response:
        body: dict[str, Any] = json.load(response)
        return body


def new_key(server: RunningServer, tenant: str, tier: str) -> str:
    """An API key of a new tenant on ``tier``."""
    async def create() -> str:
        db = open_database(server.mongo_url)
        try:
            stores = Stores.over(db)
            record = await stores.tenants.create(tenant, tier)
            key, _ = await stores.api_keys.create(record.tenant_id)
            return key
        finally:
            db.client.close()

    return run_sync(create())


def test_the_command_prints_the_ready_voice_id_last_and_plain_progress_on_a_pipe(
        server: RunningServer, reference: Path, tmp_path: Path) -> None:
    env = {**os.environ, "TIMBRE_API_KEY": server.key}
    result = subprocess.run(
        [*timbre_command(), "clone", "--url", server.url, "--name", "Narrator",
         "--audio", str(reference), "--transcript", "The quick brown fox jumps over the lazy dog.",
         *CONSENT, "--expires", "2099-12-31"],
        check=False, capture_output=True, text=True, env=env, cwd=tmp_path, timeout=300)
    assert result.returncode == 0, result.stderr
    voice_id = result.stdout.splitlines()[-1]
    assert VOICE_ID.match(voice_id), result.stdout

    voice = get(server, f"/v1/voices/{voice_id}", server.key)
    assert (voice["status"], voice["name"]) == ("ready", "Narrator")
    statement = default_statement("Ada Lovelace", "Narrator", "audiobook narration")
    assert voice["consent"]["statement"] == statement
    assert (voice["consent"]["owner_name"], voice["consent"]["purpose"],
            voice["consent"]["expires_at"]) == ("Ada Lovelace", "audiobook narration",
                                                "2100-01-01T00:00:00Z")
    assert voice["job"]["status"] == "succeeded"

    stderr = result.stderr
    assert statement in stderr  # the statement the command accepted is shown
    assert "\r" not in stderr  # not a terminal: lines, no redraws
    progress = [line for line in stderr.splitlines()
                if re.match(r"timbre clone: voice 'Narrator' \w+ \d+% \(", line)]
    assert progress[-1].startswith("timbre clone: voice 'Narrator' succeeded 100%"), stderr
    assert len(progress) >= 2, stderr  # at least the accepted job and its end
    assert f"voice {voice_id} ('Narrator') is ready" in stderr


def test_on_a_terminal_the_bar_is_redrawn_in_place(
        server: RunningServer, reference: Path, capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    master, replica = pty.openpty()
    terminal = os.fdopen(replica, "w", encoding="utf-8")
    monkeypatch.setattr(sys, "stderr", terminal)
    try:
        status, out, _ = clone(capsys, "--url", server.url, "--api-key", server.key,
                               "--name", "On a terminal", "--audio", str(reference), *CONSENT)
        terminal.flush()
        os.set_blocking(master, False)
        drawn = b""
        while True:
            try:
                chunk = os.read(master, 65536)
            except BlockingIOError:
                break
            drawn += chunk
    finally:
        terminal.close()
        os.close(master)
    assert status == 0
    assert get(server, f"/v1/voices/{out.splitlines()[-1]}", server.key)["status"] == "ready"
    screen = drawn.decode()
    assert "\r" in screen  # the bar is redrawn in place
    assert f"[{'#' * 30}] 100% succeeded" in screen, screen


def test_a_bad_key_is_refused_clearly(server: RunningServer, reference: Path,
                                      capsys: pytest.CaptureFixture[str]) -> None:
    status, out, err = clone(capsys, "--url", server.url, "--api-key", "not-a-key",
                             "--name", "Nobody", "--audio", str(reference), *CONSENT)
    assert (status, out) == (EXIT_FAILED, "")
    assert "the server refused the voice: HTTP 401 unauthorized:" in err, err
    assert "TIMBRE_API_KEY" in err  # says what to do


def test_garbage_audio_gets_the_servers_422_message(
        server: RunningServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    garbage = tmp_path / "take.wav"
    garbage.write_bytes(b"RIFF....WAVE but nothing that decodes" * 100)
    status, out, err = clone(capsys, "--url", server.url, "--api-key", server.key,
                             "--name", "Garbage", "--audio", str(garbage), *CONSENT)
    assert (status, out) == (EXIT_FAILED, "")
    assert re.search(r"HTTP 422 undecodable_audio: .*take\.wav", err), err


def test_an_unreadable_file_is_a_usage_error_and_nothing_is_sent(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    port = free_port()  # nobody listens: the command must stop before it connects
    status, out, err = clone(capsys, "--url", f"http://127.0.0.1:{port}", "--name", "Missing",
                             "--audio", str(tmp_path / "missing.wav"), *CONSENT)
    assert (status, out) == (EXIT_USAGE, "")
    assert "cannot read" in err and "missing.wav" in err, err


def test_missing_consent_flags_are_refused_by_argparse(
        reference: Path, capsys: pytest.CaptureFixture[str]) -> None:
    for missing in ("--owner", "--purpose"):
        argv = ["--name", "X", "--audio", str(reference), *CONSENT]
        at = argv.index(missing)
        del argv[at:at + 2]
        with pytest.raises(SystemExit) as exit_info:
            clone(capsys, *argv)
        assert exit_info.value.code == EXIT_USAGE
        assert f"the following arguments are required: {missing}" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exit_info:
        clone(capsys, "--name", "X", "--audio", str(reference), "--transcript", "one",
              "--transcript", "two", *CONSENT)
    assert exit_info.value.code == EXIT_USAGE
    assert "more --transcript than --audio" in capsys.readouterr().err


def test_consent_the_server_cannot_accept_is_reported(
        server: RunningServer, reference: Path, capsys: pytest.CaptureFixture[str]) -> None:
    status, _, err = clone(capsys, "--url", server.url, "--api-key", server.key, "--name", "Old",
                           "--audio", str(reference), *CONSENT, "--expires", "2001-01-01")
    assert status == EXIT_FAILED
    assert "HTTP 422 consent_required: consent_expires_at is in the past" in err, err


def test_an_upload_over_the_limit_gets_413(
        server: RunningServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    big = tmp_path / "long.wav"
    big.write_bytes(bytes(MAX_UPLOAD_BYTES + 300_000))
    status, _, err = clone(capsys, "--url", server.url, "--api-key", server.key, "--name", "Big",
                           "--audio", str(big), *CONSENT)
    assert status == EXIT_FAILED
    assert "HTTP 413 file_too_large:" in err and "send less reference audio" in err, err


def test_the_tier_profile_limit_gets_402(server: RunningServer, reference: Path,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    key = new_key(server, "listener-only", "listener")
    status, out, err = clone(capsys, "--url", server.url, "--api-key", key, "--name", "First",
                             "--audio", str(reference), *CONSENT)
    assert (status, out) == (EXIT_FAILED, "")
    assert "HTTP 402 profile_limit:" in err, err


def test_an_unreachable_server_and_a_timeout_are_told_apart(
        server: RunningServer, reference: Path, capsys: pytest.CaptureFixture[str]) -> None:
    status, _, err = clone(capsys, "--url", f"http://127.0.0.1:{free_port()}", "--name", "X",
                           "--audio", str(reference), *CONSENT)
    assert status == EXIT_FAILED
    assert "no answer from http://127.0.0.1:" in err, err
    status, out, err = clone(capsys, "--url", server.url, "--api-key", server.key, "--name", "X",
                             "--audio", str(reference), *CONSENT, "--timeout", "0.01")
    assert (status, out) == (EXIT_TIMEOUT, "")
    assert "gave up after 0.01 s" in err, err
