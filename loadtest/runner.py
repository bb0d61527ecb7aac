"""The load test: N simulated voice agents against one server, and the report of what they saw.

``await run_loadtest(config)`` returns the summary dict (what ``--json`` writes); a benchmark that
steps N upward calls it once per N. ``await execute(config)`` returns the raw ``LoadTestRun`` as well,
for plots.

Definitions (per utterance, i.e. per context):

* ``ttfa_ms``: from the send of the text that completed the first speakable unit (the server
  segmenter's rule) to the first audio frame; ``ttfa_from_first_text_ms`` from the first text sent;
  ``ttfs_ms`` (time to first speech) to the first audible sample's playout. See ``loadtest.timing``.
* ``gap_ms``: time between consecutive audio frames of one context.
* ``underruns``: playout starvation after first audio, simulated with a jitter buffer of
  ``jitter_buffer_ms`` (default 100 ms; see ``loadtest.playout``): count and total starved ms.
* ``audio_s_per_s``: audio seconds received by all sessions per wall-clock second of the run (from
  the first connection attempt until the last agent finished).

The generator connects only to ``config.url``; all randomness comes from ``config.seed``.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from typing import Any

from loadtest.agent import Agent, AgentConfig, AgentOutcome, UtteranceResult
from loadtest.monitor import ServerMonitor, ServerSample, find_server_pid
from loadtest.stats import distribution, percentile
from loadtest.timing import FirstUnitRule, segmenter_rule

_GRACE_S = 60.0
"""How long after the deadline the last turns may take to play out before the run is cut off."""


@dataclass(frozen=True)
class LoadTestConfig:
    """One load-test run. ``api_key`` is never written to reports."""

    url: str
    sessions: int = 1
    duration_s: float = 30.0
    words_per_s: float = 8.0
    api_key: str | None = None
    voice: str = "joe"
    sample_rate_hz: int = 24000
    server_pid: int | None = None
    jitter_buffer_ms: float = 100.0
    stagger_s: float = 0.1
    """Session ``i`` starts ``i * stagger_s`` after the first."""
    seed: int = 0
    pause_s: tuple[float, float] = (0.5, 1.5)
    done_timeout_s: float = 30.0
    retry_s: float = 1.0
    connect_timeout_s: float = 10.0
    monitor_interval_s: float = 0.5

    def __post_init__(self) -> None:
        if self.sessions < 1:
            raise ValueError(f"sessions must be >= 1, got {self.sessions}")
        if self.duration_s <= 0:
            raise ValueError(f"duration_s must be > 0, got {self.duration_s}")
        if not 0 <= self.pause_s[0] <= self.pause_s[1]:
            raise ValueError(
                f"pause_s must be an increasing pair of non-negative s: {self.pause_s}"
            )

    def public(self) -> dict[str, Any]:
        """The configuration as reported (the API key left out)."""
        fields = asdict(self)
        fields.pop("api_key")
        fields["pause_s"] = list(self.pause_s)
        return fields


@dataclass
class LoadTestRun:
    """Raw results of one run; times are seconds since ``started_s`` (monotonic)."""

    config: LoadTestConfig
    started_s: float
    wall_s: float
    outcomes: list[AgentOutcome]
    server_pid: int | None
    server_samples: list[ServerSample] = field(default_factory=list)
    server_summary: dict[str, Any] = field(default_factory=dict)
    cut_off: bool = False

    @property
    def utterances(self) -> list[UtteranceResult]:
        return [u for outcome in self.outcomes for u in outcome.utterances]

    @property
    def errors(self) -> Counter[str]:
        total: Counter[str] = Counter()
        for outcome in self.outcomes:
            total.update(outcome.errors)
        if self.cut_off:
            total["run_cut_off"] += 1
        return total


async def run_loadtest(config: LoadTestConfig) -> dict[str, Any]:
    """Run the load test and return its summary (see ``summarize``)."""
    return summarize(await execute(config))


async def execute(config: LoadTestConfig, rule: FirstUnitRule | None = None) -> LoadTestRun:
    """Run ``config.sessions`` agents until ``config.duration_s`` has passed and their last turns
    have played out (bounded: the run is cut off ``_GRACE_S`` + ``done_timeout_s`` after the
    deadline). ``rule`` defaults to the server segmenter's first-unit rule."""
    first_unit = rule if rule is not None else segmenter_rule()
    pid = config.server_pid if config.server_pid is not None else find_server_pid(config.url)
    monitor = ServerMonitor(pid, config.monitor_interval_s) if pid is not None else None
    monitor_task = asyncio.create_task(monitor.run()) if monitor else None

    start = time.monotonic()
    deadline = start + config.duration_s
    agents = [
        Agent(
            i,
            _agent_config(config),
            first_unit,
            random.Random(config.seed * 1_000_003 + i),
            run_start_s=start,
            deadline_s=deadline,
        )
        for i in range(config.sessions)
    ]
    tasks = [
        asyncio.create_task(_staggered(agent, i * config.stagger_s))
        for i, agent in enumerate(agents)
    ]
    _, pending = await asyncio.wait(
        tasks, timeout=config.duration_s + config.done_timeout_s + _GRACE_S
    )
    for task in pending:
        task.cancel()
    await asyncio.gather(*pending, return_exceptions=True)
    wall = time.monotonic() - start

    if monitor is not None and monitor_task is not None:
        monitor.stop()
        await monitor_task
    for task in tasks:
        if task.done() and not task.cancelled() and (bug := task.exception()) is not None:
            raise bug  # agents count failures; anything raised is a bug in the harness
    return LoadTestRun(
        config=config,
        started_s=start,
        wall_s=wall,
        outcomes=[agent.outcome for agent in agents],
        server_pid=pid,
        server_samples=list(monitor.samples) if monitor else [],
        server_summary=monitor.summary() if monitor else {},
        cut_off=bool(pending),
    )


def summarize(run: LoadTestRun) -> dict[str, Any]:
    """The report of a run: ``ttfa_ms``/``ttfa_from_first_text_ms``/``ttfs_ms``
    ``{n,p50,p95,p99,mean,max}``, ``gap_ms_p99``, ``underruns {count, starved_ms,
    utterances_with_underruns}``, ``errors`` (count by code), ``per_utterance`` (each turn's
    session, start, words, audio, TTFA, time to first speech and underruns as ``[s after the
    turn's first text, starved s]`` and its distinct errors as ``code: message``),
    ``sessions``, ``utterances``, ``audio_s_per_s``, ``server {cpu_mean_pct, cpu_max_pct,
    rss_max_mb, ...}`` and ``config``."""
    utterances = run.utterances
    ttfa = [u.ttfa_ms for u in utterances if u.ttfa_ms is not None]
    ttfa_first = [
        u.ttfa_from_first_text_ms for u in utterances if u.ttfa_from_first_text_ms is not None
    ]
    ttfs = [u.ttfs_ms for u in utterances if u.ttfs_ms is not None]
    gaps = [g for u in utterances for g in u.gaps_ms]
    audio_s = sum(u.audio_s for u in utterances)
    gap_p99 = percentile(gaps, 99)
    server = {"pid": run.server_pid, "cpu_mean_pct": None, "cpu_max_pct": None, "rss_max_mb": None}
    server.update(run.server_summary)
    return {
        "sessions": run.config.sessions,
        "sessions_connected": sum(1 for o in run.outcomes if o.connected),
        "utterances": len(utterances),
        "utterances_completed": sum(1 for u in utterances if u.completed),
        "ttfa_ms": distribution(ttfa),
        "ttfa_from_first_text_ms": distribution(ttfa_first),
        "ttfs_ms": distribution(ttfs),
        "gap_ms_p99": None if gap_p99 is None else round(gap_p99, 1),
        "gap_ms": distribution(gaps),
        "underruns": {
            "count": sum(len(u.underruns) for u in utterances),
            "starved_ms": round(sum(u.starved_s for u in utterances) * 1000.0, 1),
            "utterances_with_underruns": sum(1 for u in utterances if u.underruns),
        },
        "errors": dict(sorted(run.errors.items())),
        "per_utterance": [
            {"session": u.session, "turn": u.turn, "started_s": round(u.started_s, 3),
             "words": u.words, "audio_s": round(u.audio_s, 2), "completed": u.completed,
             "ttfa_ms": None if u.ttfa_ms is None else round(u.ttfa_ms, 1),
             "ttfs_ms": None if u.ttfs_ms is None else round(u.ttfs_ms, 1),
             "underruns": [[round(at - u.started_s, 3), round(starved, 3)]
                           for at, starved in u.underruns],
             "errors": list(u.error_messages)}
            for u in utterances],
        "audio_s": round(audio_s, 2),
        "wall_s": round(run.wall_s, 2),
        "audio_s_per_s": round(audio_s / run.wall_s, 3) if run.wall_s > 0 else None,
        "server": server,
        "config": run.config.public(),
    }


def summary_text(summary: dict[str, Any]) -> str:
    """A few human-readable lines of a summary."""
    t, f, u, s = (
        summary["ttfa_ms"],
        summary["ttfa_from_first_text_ms"],
        summary["underruns"],
        summary["server"],
    )
    errors = ", ".join(f"{code}={n}" for code, n in summary["errors"].items()) or "none"
    lines = [
        (
            f"sessions {summary['sessions_connected']}/{summary['sessions']}, "
            f"utterances {summary['utterances_completed']}/{summary['utterances']} completed, "
            f"{summary['wall_s']} s"
        ),
        f"TTFA (first unit) ms: p50 {t['p50']}  p95 {t['p95']}  p99 {t['p99']}",
        f"TTFA (first text) ms: p50 {f['p50']}  p95 {f['p95']}  p99 {f['p99']}",
        (f"first speech (first unit) ms: p50 {summary['ttfs_ms']['p50']}  "
         f"p95 {summary['ttfs_ms']['p95']}"),
        (
            f"inter-chunk gap p99 {summary['gap_ms_p99']} ms; underruns {u['count']} "
            f"({u['starved_ms']} ms starved, {u['utterances_with_underruns']} utterances)"
        ),
        f"audio {summary['audio_s']} s = {summary['audio_s_per_s']} audio-s/s; errors: {errors}",
        (
            f"server pid {s['pid']}: CPU mean {s['cpu_mean_pct']} % max {s['cpu_max_pct']} %, "
            f"RSS max {s['rss_max_mb']} MB"
        ),
    ]
    return "\n".join(lines)


async def _staggered(agent: Agent, delay_s: float) -> AgentOutcome:
    await asyncio.sleep(delay_s)
    return await agent.run()


def _agent_config(config: LoadTestConfig) -> AgentConfig:
    return AgentConfig(
        url=config.url,
        api_key=config.api_key,
        voice=config.voice,
        sample_rate_hz=config.sample_rate_hz,
        words_per_s=config.words_per_s,
        jitter_buffer_s=config.jitter_buffer_ms / 1000.0,
        pause_s=config.pause_s,
        done_timeout_s=config.done_timeout_s,
        retry_s=config.retry_s,
        connect_timeout_s=config.connect_timeout_s,
    )
