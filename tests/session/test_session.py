"""Session and context lifecycle on a real scheduler thread with the fake engine."""

from __future__ import annotations

import asyncio

import pytest

from session.context import (
    ContextAudio,
    ContextError,
    ContextEvent,
    ContextFinished,
    ContextState,
    ContextWords,
    InvalidContextState,
)
from session.errors import (
    ContextClosed,
    ServerBusy,
    SlowConsumer,
    TextTooLong,
    TooManyContexts,
    UnknownContext,
    UnknownVoice,
)
from session.output import OutputBuffer
from session.segment import SegmenterConfig
from session.session import Session, SessionConfig, SessionDefaults
from session.voices import VoiceCatalog


def make_session(catalog: VoiceCatalog, **config) -> tuple[Session, list[ContextEvent]]:
    events: list[ContextEvent] = []
    config.setdefault("segmenter", SegmenterConfig(first_unit_max_words=3))
    cfg = SessionConfig(default_voice="fake:v", **config)
    session = Session(catalog, cfg, SessionDefaults(catalog.resolve("fake:v")), events.append,
                      asyncio.get_running_loop())
    return session, events


async def until_finished(events: list[ContextEvent], context_id: str, timeout_s: float = 5):
    for _ in range(int(timeout_s / 0.01)):
        if any(isinstance(e, ContextFinished) and e.context_id == context_id for e in events):
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"{context_id} did not finish")


def spoken_words(events: list[ContextEvent], context_id: str) -> list[str]:
    return [w.word for e in events if isinstance(e, ContextWords) and e.context_id == context_id
            for w in e.words]


async def test_streamed_text_is_segmented_normalised_and_spoken_in_order(catalog) -> None:
    session, events = make_session(catalog)
    ctx = session.start_context("a")
    for token in ["I ", "have ", "3 ", "apples", ", and ", "more. ", "Done"]:
        ctx.add_text(token)
    ctx.close()
    await until_finished(events, "a")
    assert spoken_words(events, "a") == ["I", "have", "three", "apples,", "and", "more.", "Done"]
    finished = next(e for e in events if isinstance(e, ContextFinished))
    assert finished.reason == "completed"
    assert finished.characters == len("I have 3 apples, and more. Done")
    assert finished.samples == sum(len(e.audio) for e in events if isinstance(e, ContextAudio))
    assert ctx.state is ContextState.DONE


async def test_word_times_are_relative_to_the_context_start(catalog) -> None:
    session, events = make_session(catalog)
    ctx = session.start_context("a")
    ctx.add_text("one two three. four five six.")
    ctx.close()
    await until_finished(events, "a")
    starts = [w.start_ms for e in events if isinstance(e, ContextWords) for w in e.words]
    assert starts == [0, 100, 200, 300, 400, 500]


async def test_cancel_finishes_at_once_and_ignores_late_audio(catalog) -> None:
    session, events = make_session(catalog)
    ctx = session.start_context("a")
    ctx.add_text(" ".join(["word"] * 200) + " ")
    ctx.cancel()
    assert isinstance(events[-1], ContextFinished) and events[-1].reason == "cancelled"
    n = len(events)
    await asyncio.sleep(0.2)
    assert len(events) == n
    with pytest.raises(ContextClosed):
        ctx.add_text("more")
    ctx.cancel()  # idempotent


async def test_flush_speaks_a_partial_sentence(catalog) -> None:
    session, events = make_session(catalog, segmenter=SegmenterConfig(first_unit_max_words=30))
    ctx = session.start_context("a")
    ctx.add_text("no punctuation here yet ")
    await asyncio.sleep(0.1)
    assert spoken_words(events, "a") == []
    ctx.flush()
    for _ in range(100):
        if len(spoken_words(events, "a")) == 4:
            break
        await asyncio.sleep(0.01)
    assert spoken_words(events, "a") == ["no", "punctuation", "here", "yet"]
    assert ctx.state is ContextState.ACTIVE


async def test_limits_and_refusals(catalog) -> None:
    session, _ = make_session(catalog, max_contexts=2, max_context_chars=10)
    with pytest.raises(UnknownVoice):
        catalog.resolve("nobody")
    a = session.start_context("a")
    session.start_context("b")
    with pytest.raises(TooManyContexts):
        session.start_context("c")
    with pytest.raises(TextTooLong):
        a.add_text("x" * 11)
    with pytest.raises(UnknownContext):
        session.context("zzz")
    other, _ = make_session(catalog)
    other.start_context("c")
    with pytest.raises(ServerBusy):  # the scheduler admits 3 streams at most
        other.start_context("d")
    session.close()


async def test_close_after_close_is_a_bug_not_a_silent_success(catalog) -> None:
    session, events = make_session(catalog)
    ctx = session.start_context("a")
    ctx.add_text("hi.")
    ctx.close()
    with pytest.raises(ContextClosed):
        ctx.close()
    await until_finished(events, "a")
    with pytest.raises(InvalidContextState):
        ctx._move(ContextState.ACTIVE)


async def test_failed_unit_is_reported_and_the_context_goes_on(catalog) -> None:
    session, events = make_session(catalog)
    ctx = session.start_context("a")
    ctx.add_text("FAIL now, ")
    ctx.add_text("after that.")
    ctx.close()
    await until_finished(events, "a")
    errors = [e for e in events if isinstance(e, ContextError)]
    assert errors and errors[0].error.code == "synthesis_failed"
    assert spoken_words(events, "a") == ["after", "that."]  # the unit "FAIL now," failed


async def test_output_buffer_is_bounded_and_drops_a_cancelled_context() -> None:
    out = OutputBuffer(max_bytes=100)
    out.put(b"x" * 40, "a")
    out.put(b"y" * 40, "b")
    with pytest.raises(SlowConsumer) as info:
        out.put(b"z" * 40, "a")
    assert info.value.close_code == 4001
    assert out.drop("a") == 1
    assert out.queued_bytes == 40
    assert await out.get() == b"y" * 40
    out.close()
    assert await out.get() is None
