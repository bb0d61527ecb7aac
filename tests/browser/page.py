"""Opening the demo page in the test browser and reading its own counters (``window.timbreStats``)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from tests.server import RunningServer

UTTERANCE_TIMEOUT_MS = 30_000


@dataclass
class DemoPage:
    """A page on ``/`` with every console error and uncaught exception it produced."""

    page: Any
    errors: list[str] = field(default_factory=list)

    def close(self) -> None:
        """Close the tab the way a person does (the page hangs up its call on ``pagehide``),
        then its context: a call left up would keep loading the server for the next test."""
        self.page.close(run_before_unload=True)
        self.page.context.close()

    def stats(self) -> dict[str, Any]:
        result: dict[str, Any] = self.page.evaluate("() => JSON.parse(JSON.stringify(window.timbreStats))")
        return result

    def wait_played_out(self, timeout_ms: int = UTTERANCE_TIMEOUT_MS) -> dict[str, Any]:
        """The last utterance's figures once it has played to its end."""
        try:
            self.page.wait_for_function(
                "() => { const u = window.timbreStats.lastUtterance; return u && u.done && u.playedOut; }",
                timeout=timeout_ms)
        except Exception as exc:
            raise AssertionError(f"the utterance did not play out: {self.stats()}") from exc
        utterance: dict[str, Any] = self.stats()["lastUtterance"]
        return utterance

    def speak(self, text: str) -> dict[str, Any]:
        """Speak ``text`` with the Speak button (words streamed as text messages)."""
        self.page.uncheck("#live")
        self.page.fill("#text", text)
        self.page.click("#speak")
        return self.wait_played_out()


def open_demo(browser: Any, server: RunningServer, *, width: int = 1280,
              height: int = 900) -> DemoPage:
    context = browser.new_context(viewport={"width": width, "height": height})
    page = context.new_page()
    demo = DemoPage(page)
    page.on("console", lambda msg: demo.errors.append(msg.text) if msg.type == "error" else None)
    page.on("pageerror", lambda exc: demo.errors.append(str(exc)))
    page.on("response", lambda r: demo.errors.append(f"HTTP {r.status} {r.url}")
            if r.status >= 400 else None)
    page.goto(server.url + "/")
    page.wait_for_selector("body[data-ready=true]", timeout=30_000)
    return demo
