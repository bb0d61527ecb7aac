"""Cloning from the demo page: a reference uploaded as a file or recorded through the (fake)
microphone, the consent statement, the live progress bar to the end, the new voice selected and
speaking; refusals (no consent, undecodable audio) shown as readable messages."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.browser.page import DemoPage, open_demo
from tests.server import RunningServer

CLONE_TIMEOUT_MS = 60_000


@pytest.fixture
def demo(browser: Any, server: RunningServer) -> Iterator[DemoPage]:
    page = open_demo(browser, server)
    yield page
    page.close()


def give_consent(page: Any, name: str) -> None:
    page.fill("#owner", name)
    assert name in page.text_content("#statement")
    page.check("#consent")


def clone_and_wait(demo: DemoPage) -> str:
    """Press Clone; the progress bar moves to 1 and the new voice ends up selected."""
    page = demo.page
    page.evaluate("""() => {
        window.progressSeen = [];
        const bar = document.getElementById('clone-progress');
        new MutationObserver(() => window.progressSeen.push(bar.value))
            .observe(bar, {attributes: true, childList: true});
    }""")
    page.click("#clone")
    try:
        page.wait_for_function(
            "() => document.getElementById('clone-status').textContent.startsWith('Ready')",
            timeout=CLONE_TIMEOUT_MS)
    except Exception as exc:
        raise AssertionError(
            f"clone not ready: status {page.text_content('#clone-status')!r}, error "
            f"{page.text_content('#clone-error')!r}, progress {page.evaluate('() => window.progressSeen')}"
        ) from exc
    assert page.eval_on_selector("#clone-progress", "bar => bar.value") == 1
    seen = page.evaluate("() => window.progressSeen")
    assert seen[-1] == 1 and len(seen) >= 2  # updated while the job ran, not only at the end
    voice = page.eval_on_selector("#voice", "s => s.value")
    assert voice.startswith("v_")
    return str(voice)


def test_clone_from_uploaded_file_then_speak_with_it(demo: DemoPage, reference_wav: Path,
                                                      artifacts: Path) -> None:
    page = demo.page
    page.check("#src-upload")
    page.set_input_files("#file", str(reference_wav))
    page.fill("#transcript", "The quick brown fox jumps over the lazy dog near the river bank.")
    page.fill("#voice-name", "Uploaded voice")
    give_consent(page, "Ada Lovelace")
    voice = clone_and_wait(demo)
    page.screenshot(path=str(artifacts / "cloned.png"), full_page=True)
    utterance = demo.speak("This is my cloned voice speaking.")
    assert utterance["reason"] == "completed" and utterance["framesPlayed"] > 0
    assert utterance["underruns"] == 0, str(demo.stats())
    assert voice in page.text_content("#voice")
    assert demo.errors == []


def test_clone_from_fake_microphone_recording(demo: DemoPage) -> None:
    """Chromium's fake microphone plays the reference WAV; the page records it with the shown
    script as transcript (the test server asks for 3 s of speech instead of 10)."""
    page = demo.page
    page.click("#record")
    page.wait_for_function("() => parseFloat(document.getElementById('record-time').textContent) >= 5",
                           timeout=15_000)
    page.click("#record")
    page.wait_for_selector("#record-preview:not([hidden])")
    page.fill("#voice-name", "Recorded voice")
    give_consent(page, "Grace Hopper")
    clone_and_wait(demo)
    assert demo.errors == []


def test_refusals_are_readable(demo: DemoPage, tmp_path: Path) -> None:
    page = demo.page
    page.check("#src-upload")
    page.click("#clone")
    assert page.get_attribute("#clone-error", "data-code") == "no_audio_selected"
    not_audio = tmp_path / "notes.wav"
    not_audio.write_bytes(b"this is not audio at all " * 200)
    page.set_input_files("#file", str(not_audio))
    page.click("#clone")  # no consent yet: the page says so before uploading
    assert page.get_attribute("#clone-error", "data-code") == "consent_required"
    assert "consent statement" in page.text_content("#clone-error")
    give_consent(page, "Ada Lovelace")
    page.click("#clone")  # the server refuses the file
    page.wait_for_function("() => document.getElementById('clone-error').dataset.code === 'undecodable_audio'",
                           timeout=CLONE_TIMEOUT_MS)
    assert "could not be read as audio" in page.text_content("#clone-error")
    # HTTP errors of refused requests are expected here; nothing else may fail
    assert [e for e in demo.errors if "HTTP 4" not in e and "status of 4" not in e] == []
