"""A context normalises its text in its own language: digits become English words only in English
(and with no language, the voice's own: English), so "3時" reaches a Japanese voice as "3時" and
"3 pommes" a French one as "3 pommes". Observed as the unit text the scheduler's engine receives
(the fake engine speaks each whitespace-separated word of a unit as one aligned word)."""

from __future__ import annotations

import asyncio

import pytest

from session.context import ContextEvent, ContextFinished, ContextWords
from session.segment import SegmenterConfig
from session.session import Session, SessionConfig, SessionDefaults
from session.voices import VoiceCatalog


async def spoken(catalog: VoiceCatalog, text: str, language: str | None) -> list[str]:
    """The words the engine was given for ``text`` streamed into one context in ``language``."""
    events: list[ContextEvent] = []
    config = SessionConfig(default_voice="fake:v", segmenter=SegmenterConfig())
    session = Session(catalog, config, SessionDefaults(catalog.resolve("fake:v")), events.append,
                      asyncio.get_running_loop())
    context = session.start_context("c", language=language)
    for piece in text.split("|"):
        context.add_text(piece)
    context.close()
    for _ in range(500):
        if any(isinstance(e, ContextFinished) for e in events):
            break
        await asyncio.sleep(0.01)
    finished = [e for e in events if isinstance(e, ContextFinished)]
    assert finished and finished[0].reason == "completed"
    return [w.word for e in events if isinstance(e, ContextWords) for w in e.words]


@pytest.mark.parametrize("language", [None, "en", "en-gb"])
async def test_english_reads_digits_as_words(catalog: VoiceCatalog, language: str | None) -> None:
    assert await spoken(catalog, "I have |3 |apples.", language) == ["I", "have", "three",
                                                                      "apples."]


async def test_french_keeps_its_digits_for_the_engine(catalog: VoiceCatalog) -> None:
    assert await spoken(catalog, "J'ai |3 |pommes et |12 |poires.", "fr") == [
        "J'ai", "3", "pommes", "et", "12", "poires."]


async def test_japanese_keeps_its_digits_for_the_engine(catalog: VoiceCatalog) -> None:
    assert await spoken(catalog, "3時に|会いましょう。", "ja") == ["3時に会いましょう。"]
    assert await spoken(catalog, "3時に|会いましょう。", None) == ["three", "時に会いましょう。"]
