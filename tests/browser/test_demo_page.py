"""The demo page in a real browser (Debian's Chromium, headless) against a real server: it loads
clean, speaks over WebSocket and over WebRTC with audio actually played by the page (its own
counters), stops on barge-in, and is usable by keyboard and at phone width."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.browser.page import DemoPage, open_demo
from tests.server import RunningServer

SENTENCE = "The quick brown fox jumps over the lazy dog near the river bank."


@pytest.fixture
def demo(browser: Any, server: RunningServer) -> Iterator[DemoPage]:
    page = open_demo(browser, server)
    yield page
    page.close()


def test_page_loads_signed_in_without_console_errors(demo: DemoPage, artifacts: Path) -> None:
    page = demo.page
    assert "demo tenant" in page.text_content("#signin")
    voices = page.eval_on_selector_all("#voice option", "opts => opts.map(o => o.value)")
    assert "piper:joe" in voices
    assert page.eval_on_selector("#voice", "s => s.value") == "piper:joe"  # the server default
    stats = demo.stats()
    assert stats["connected"] is True and stats["transport"] == "websocket"
    page.screenshot(path=str(artifacts / "desktop.png"), full_page=True)
    assert demo.errors == []


def test_speaks_over_websocket(demo: DemoPage, artifacts: Path) -> None:
    utterance = demo.speak(SENTENCE)
    demo.page.screenshot(path=str(artifacts / "spoken-websocket.png"), full_page=True)
    assert utterance["reason"] == "completed"
    assert utterance["ttfaMs"] is not None and utterance["ttfaMs"] > 0
    assert utterance["framesPlayed"] > 100  # 128-sample quanta at 24 kHz: over half a second
    assert utterance["underruns"] == 0, str(demo.stats())
    stats = demo.stats()
    assert stats["firstAudioMs"] is not None and stats["lastTtfaMs"] == utterance["ttfaMs"]
    assert demo.page.text_content("#st-ttfa") == f"{utterance['ttfaMs']} ms"
    assert demo.errors == []


def test_speaks_over_webrtc(demo: DemoPage) -> None:
    page = demo.page
    page.check("#tr-rtc")
    page.wait_for_function(
        "() => timbreStats.transport === 'webrtc' && timbreStats.connected", timeout=20_000)
    utterance = demo.speak(SENTENCE)
    assert utterance["reason"] == "completed"
    assert utterance["ttfaMs"] is not None and utterance["ttfaMs"] > 0
    assert utterance["framesPlayed"] > 100  # quanta with speech heard on the call's track
    assert demo.errors == []


def test_first_webrtc_utterance_plays_without_concealment(demo: DemoPage) -> None:
    """The call's first utterance has the jitter-buffer margin of later ones: the server's track
    runs ``lead_s`` ahead from the first packet, and only concealment while speech plays counts
    (the call's start-up conceals silence, which Chromium reports as non-silent)."""
    page = demo.page
    page.check("#tr-rtc")
    page.wait_for_function(
        "() => timbreStats.transport === 'webrtc' && timbreStats.connected", timeout=20_000)
    utterance = demo.speak(SENTENCE)
    assert utterance["underruns"] == 0, str(demo.stats())  # the jitter buffer concealed nothing


def test_simulated_llm_streams_tokens_and_stop_barges_in(demo: DemoPage) -> None:
    page = demo.page
    page.click("#llm")
    page.wait_for_function("() => timbreStats.lastUtterance && timbreStats.lastUtterance.ttfaMs !== null",
                           timeout=20_000)
    assert page.text_content("#llm-out")  # tokens shown as they stream
    page.click("#stop")
    utterance = demo.wait_played_out()
    assert utterance["reason"] == "cancelled"
    page.wait_for_function("() => timbreStats.bufferedMs === 0", timeout=5_000)
    frames = demo.stats()["framesPlayed"]
    page.wait_for_timeout(300)
    assert demo.stats()["framesPlayed"] == frames  # nothing plays after the barge-in
    assert demo.errors == []


def test_audio_of_a_cancelled_utterance_that_arrives_late_is_not_played(demo: DemoPage) -> None:
    """Frames already on the wire when the page cancels arrive after the cancel: they are dropped,
    not taken for the start of a new utterance (a barge-in that kept talking failed CI once)."""
    played = demo.page.evaluate("""async () => {
        const { ContextOrder } = await import('/web/transports.js');
        const played = [];
        const order = new ContextOrder((pcm) => played.push(pcm));
        order.start('a'); order.audio('a', 'a0');
        order.start('b'); order.audio('b', 'b0');   // held until 'a' ends
        order.done('a');                             // cancelled: 'b' plays on
        order.audio('a', 'a1');                      // late frame of the cancelled one
        order.audio('b', 'b1');
        order.done('b');
        order.audio('b', 'b2');
        order.start('a');                            // its context_started echo: stays ended
        order.audio('c', 'c0');
        return played;
    }""")
    assert played == ["a0", "b0", "b1", "c0"]


def test_typing_speaks_as_you_type_by_keyboard_only(demo: DemoPage) -> None:
    """Walk the page with Tab from the top: every control is reached in reading order and shows a
    focus ring; then type with the keyboard: words stream while typing and Enter ends the
    utterance."""
    page = demo.page
    page.eval_on_selector("#text", "t => { t.value = ''; }")  # nothing focused yet: Tab starts at the top
    order: list[str] = []
    while not order or order[-1] != "stop":
        assert len(order) < 30, order
        page.keyboard.press("Tab")
        focused = page.evaluate("""() => { const e = document.activeElement;
            return [e.id || e.className, getComputedStyle(e).outlineStyle]; }""")
        assert focused[1] != "none", f"{focused[0]} has no visible focus"
        order.append(focused[0])
    assert order == ["skip", "src-record", "record", "voice-name", "owner", "consent", "clone",
                     "voice", "tr-ws", "speed", "pitch", "text", "live", "speak", "llm", "stop"]
    page.focus("#speed")
    page.keyboard.press("ArrowRight")
    assert page.text_content("#speed-out") == "1.1×"
    page.focus("#pitch")
    page.keyboard.press("ArrowRight")
    assert page.text_content("#pitch-out") == "+1 semitones"
    page.focus("#text")
    page.keyboard.type("Good morning, this sentence is typed one key at a time.", delay=15)
    page.keyboard.press("Enter")
    utterance = demo.wait_played_out()
    assert utterance["reason"] == "completed" and utterance["framesPlayed"] > 50
    # (no underrun check: a typist slower than speech leaves gaps that wait for the next words)
    page.keyboard.press("Escape")  # stop from anywhere: nothing is left to cancel, no error
    assert demo.errors == []


def test_phone_width_has_no_horizontal_overflow(browser: Any, server: RunningServer,
                                                artifacts: Path) -> None:
    demo = open_demo(browser, server, width=375, height=800)
    try:
        overflow = demo.page.evaluate(
            "() => document.documentElement.scrollWidth - document.documentElement.clientWidth")
        assert overflow <= 0
        wide = demo.page.evaluate("""() => [...document.querySelectorAll('body *')]
            .filter(e => e.getBoundingClientRect().right > window.innerWidth + 1 && e.offsetParent)
            .map(e => e.id || e.tagName)""")
        assert wide == []
        demo.page.screenshot(path=str(artifacts / "phone.png"), full_page=True)
        assert demo.errors == []
    finally:
        demo.close()


REST_REFUSALS = ("consent_required", "profile_limit", "undecodable_audio", "too_long", "clipped",
                 "too_noisy", "too_short", "multiple_speakers", "file_too_large", "quota_exceeded")
"""The refusals docs/rest.md names for creating voices and synthesis."""


def test_every_documented_error_code_reads_as_a_sentence(demo: DemoPage) -> None:
    """Each error code of docs/protocol.md and each REST refusal of docs/rest.md has its own
    message on the page, not the generic fallback."""
    docs = Path(__file__).resolve().parents[2] / "docs"
    protocol = (docs / "protocol.md").read_text()
    table = protocol[protocol.index("## Errors"):protocol.index("## Close codes")]
    codes = set(re.findall(r"^\| `([a-z_]+)` \|", table, flags=re.MULTILINE))
    assert len(codes) >= 20
    rest = (docs / "rest.md").read_text()
    assert all(f"`{code}`" in rest for code in REST_REFUSALS)
    codes.update(REST_REFUSALS)
    messages = demo.page.evaluate("""async (codes) => {
        const { describe } = await import('/web/errors.js');
        const generic = describe('no_such_code');
        return codes.filter(c => describe(c) === generic);
    }""", sorted(codes))
    assert messages == []
