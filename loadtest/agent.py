"""One simulated voice agent: a WebSocket session that speaks turn after turn like an LLM-driven bot.

A turn: pick a response (``loadtest.texts``), open a context, stream it word by word at the
configured rate, ``close_context``, wait for ``context_done``, play the audio out in (simulated) real
time with a jitter buffer (``loadtest.playout``), ``report`` the turn's underruns to the server, pause
0.5-1.5 s (seeded), and go again until the run's deadline. No turn starts after the deadline; every
wait is bounded.

Failures are counted by code, never raised: a refused or lost connection is retried after a short
back-off when retrying can help (``server_busy``, a dropped socket), and ends the agent otherwise
(``unauthorized``).
"""

from __future__ import annotations

import asyncio
import random
import time
from collections import Counter
from dataclasses import dataclass, field

from loadtest.playout import Chunk, Playout, simulate_playout
from loadtest.texts import make_response
from loadtest.timing import FirstUnitRule, utterance_timing
from realtime.client import ClientError, ContextRecord, DoneTimeout, StreamClient


@dataclass(frozen=True)
class AgentConfig:
    """What every agent of a run shares (see ``loadtest.runner.LoadTestConfig``)."""

    url: str
    api_key: str | None
    voice: str
    sample_rate_hz: int
    words_per_s: float
    jitter_buffer_s: float
    pause_s: tuple[float, float]
    done_timeout_s: float
    retry_s: float
    connect_timeout_s: float


@dataclass(frozen=True)
class UtteranceResult:
    """One turn as the client saw it. Times are seconds since the run started."""

    session: int
    turn: int
    started_s: float
    words: int
    completed: bool
    """``context_done`` arrived (with reason ``completed``)."""
    audio_s: float
    ttfa_ms: float | None
    ttfa_from_first_text_ms: float | None
    ttfs_ms: float | None
    """Time to first speech (``loadtest.timing``)."""
    gaps_ms: tuple[float, ...]
    underruns: tuple[tuple[float, float], ...]
    """``(at_s, starved_s)`` of each underrun after first audio."""
    level: tuple[tuple[float, float], ...]
    """The playout buffer level, ``(at_s, buffered_s)`` points of a piecewise-linear curve."""
    error_codes: tuple[str, ...]
    error_messages: tuple[str, ...] = ()
    """Each distinct ``code: message`` the turn got, in order (why a turn was refused)."""

    @property
    def starved_s(self) -> float:
        return sum(starved for _, starved in self.underruns)


@dataclass
class AgentOutcome:
    """What one agent leaves behind: its turns and its failures by code."""

    session: int
    utterances: list[UtteranceResult] = field(default_factory=list)
    errors: Counter[str] = field(default_factory=Counter)
    connected: bool = False


def chunks_of(record: ContextRecord) -> list[Chunk]:
    """The playout chunks of a context: each audio frame's arrival and duration."""
    return [Chunk(f.at_s, record.frame_duration_s(f)) for f in record.frames]


def utterance_result(
    record: ContextRecord,
    playout: Playout | None,
    *,
    session: int,
    turn: int,
    run_start_s: float,
    rule: FirstUnitRule,
) -> UtteranceResult:
    """Reduce a finished context and its simulated playout to the figures the report needs."""
    timing = utterance_timing(record, rule)
    started = record.texts[0].at_s if record.texts else run_start_s
    underruns: tuple[tuple[float, float], ...] = ()
    level: tuple[tuple[float, float], ...] = ()
    if playout is not None:
        underruns = tuple((u.at_s - run_start_s, u.starved_s) for u in playout.underruns)
        level = tuple((t - run_start_s, buffered) for t, buffered in playout.level)
    return UtteranceResult(
        session=session,
        turn=turn,
        started_s=started - run_start_s,
        words=record.word_count,
        completed=record.done is not None and record.done.reason == "completed",
        audio_s=record.audio_s,
        ttfa_ms=timing.ttfa_ms,
        ttfa_from_first_text_ms=timing.ttfa_from_first_text_ms,
        ttfs_ms=timing.ttfs_ms,
        gaps_ms=timing.gaps_ms,
        underruns=underruns,
        level=level,
        error_codes=tuple(e.code for e in record.errors),
        error_messages=tuple(dict.fromkeys(f"{e.code}: {e.message}" for e in record.errors)),
    )


class Agent:
    """Session ``index`` of a run; ``run()`` returns its ``AgentOutcome`` at the deadline."""

    def __init__(
        self,
        index: int,
        config: AgentConfig,
        rule: FirstUnitRule,
        rng: random.Random,
        run_start_s: float,
        deadline_s: float,
    ) -> None:
        self.index = index
        self.config = config
        self.rule = rule
        self.rng = rng
        self.run_start_s = run_start_s
        self.deadline_s = deadline_s
        self.outcome = AgentOutcome(session=index)
        self._turn = 0

    async def run(self) -> AgentOutcome:
        while time.monotonic() < self.deadline_s:
            try:
                client = await StreamClient.connect(
                    self.config.url,
                    self.config.api_key,
                    voice=self.config.voice,
                    sample_rate_hz=self.config.sample_rate_hz,
                    timeout_s=self.config.connect_timeout_s,
                )
            except ClientError as exc:
                if not await self._failed(exc):
                    break
                continue
            self.outcome.connected = True
            try:
                async with client:
                    await self._turns(client)
                return self.outcome
            except ClientError as exc:
                if not await self._failed(exc):
                    break
            finally:
                self.outcome.errors.update(e.code for e in client.demux.session_errors)
        return self.outcome

    async def _turns(self, client: StreamClient) -> None:
        while time.monotonic() < self.deadline_s:
            await self._turn_once(client)
            pause = self.rng.uniform(*self.config.pause_s)
            if time.monotonic() + pause >= self.deadline_s:
                return
            await asyncio.sleep(pause)

    async def _turn_once(self, client: StreamClient) -> None:
        """One turn; its figures are kept even when the connection drops halfway (then re-raised)."""
        turn = self._turn
        self._turn += 1
        context_id = f"s{self.index}-t{turn}"
        playout: Playout | None = None
        try:
            record = await self._speak(client, context_id, make_response(self.rng))
            playout = simulate_playout(chunks_of(record), self.config.jitter_buffer_s)
            if playout is not None:
                await asyncio.sleep(max(0.0, playout.end_s - time.monotonic()))
            await client.report(underruns=playout.underrun_count if playout else 0)
        finally:
            self._keep(client.context(context_id), playout, turn)

    async def _speak(self, client: StreamClient, context_id: str, text: str) -> ContextRecord:
        """Stream ``text`` into a new context and wait until it is done (cancel it if it is late)."""
        await client.stream_words(context_id, text, self.config.words_per_s)
        if not client.context(context_id).refused:
            await client.close_context(context_id)
        try:
            return await client.wait_done(context_id, self.config.done_timeout_s)
        except DoneTimeout as exc:
            self.outcome.errors[exc.code] += 1
            await client.cancel(context_id)
            return client.context(context_id)

    def _keep(self, record: ContextRecord, playout: Playout | None, turn: int) -> None:
        result = utterance_result(
            record,
            playout,
            session=self.index,
            turn=turn,
            run_start_s=self.run_start_s,
            rule=self.rule,
        )
        self.outcome.utterances.append(result)
        self.outcome.errors.update(result.error_codes)

    async def _failed(self, exc: ClientError) -> bool:
        """Count ``exc``; back off and return True when another connection attempt makes sense."""
        self.outcome.errors[exc.code] += 1
        if not exc.retryable or time.monotonic() + self.config.retry_s >= self.deadline_s:
            return False
        await asyncio.sleep(self.config.retry_s)
        return True
