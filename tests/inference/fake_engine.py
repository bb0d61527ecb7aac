"""A deterministic engine for scheduler tests: no model, exact bookkeeping of what it was asked."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from inference.engine import (
    EnginePlan,
    EngineResult,
    RequestFailure,
    RequestId,
    RequestOutput,
    WordTiming,
)


@dataclass
class FakeEngine:
    """Each unit's text is words; every decode step speaks one word as ``chunk_s`` of audio whose
    samples all equal the request id (so tests can tell whose audio it is). A unit with the word
    "FAIL" fails at prefill; text "CRASH" raises inside execute (an engine bug)."""

    chunk_s: float = 0.1
    sample_rate_hz: int = 1000
    prefill_cost_s: float = 0.01
    decode_cost_s: float = 0.005
    name: str = "fake"
    plans: list[EnginePlan] = field(default_factory=list)
    released: list[RequestId] = field(default_factory=list)
    state: dict[RequestId, list[str]] = field(default_factory=dict)
    done_words: dict[RequestId, int] = field(default_factory=dict)

    def voices(self) -> list[str]:
        return ["v"]

    def warmup(self) -> None:
        pass

    def execute(self, plan: EnginePlan) -> EngineResult:
        self.plans.append(plan)
        outputs: list[RequestOutput] = []
        failures: list[RequestFailure] = []
        for item in plan.prefills:
            if item.unit.text == "CRASH":
                raise RuntimeError("engine bug")
            words = item.unit.text.split()
            if not words or "FAIL" in words:
                failures.append(RequestFailure(item.request_id, "synthesis_failed", "no words"))
                continue
            self.state[item.request_id] = words
            self.done_words[item.request_id] = 0
        for item in plan.decodes:
            words = self.state[item.request_id]
            i = self.done_words[item.request_id]
            self.done_words[item.request_id] = i + 1
            n = int(self.chunk_s * self.sample_rate_hz)
            audio = np.full(n, float(item.request_id), dtype=np.float32)
            start_ms = i * self.chunk_s * 1000
            timing = (WordTiming(words[i], start_ms, start_ms + self.chunk_s * 1000),)
            outputs.append(RequestOutput(item.request_id, audio, timing, i + 1 == len(words)))
        return EngineResult(
            tuple(outputs),
            tuple(failures),
            prefill_s=self.prefill_cost_s * len(plan.prefills),
            decode_s=self.decode_cost_s * len(plan.decodes),
        )

    def release(self, request_id: RequestId) -> None:
        self.released.append(request_id)
        self.state.pop(request_id, None)


@dataclass
class LanedFakeEngine(FakeEngine):
    """A ``FakeEngine`` that decodes ``lanes`` items at once: a tick's decode time is one
    ``decode_cost_s`` per round of up to ``lanes`` items (``DecodesInParallel``)."""

    lanes: int = 2

    def decode_lanes(self) -> int:
        return self.lanes

    def execute(self, plan: EnginePlan) -> EngineResult:
        result = super().execute(plan)
        rounds = -(-len(plan.decodes) // self.lanes)
        return EngineResult(result.outputs, result.failures, prefill_s=result.prefill_s,
                            decode_s=self.decode_cost_s * rounds)
