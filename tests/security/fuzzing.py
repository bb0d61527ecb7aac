"""What the property-based fuzz tests share: how many examples to run, strategies for hostile
input, the check that an error is a clear one, and a tally of the cases each test really ran.

``TIMBRE_FUZZ_EXAMPLES`` sets the examples per test: ``make test`` runs the default (a few hundred
cases per target, the whole fuzz suite well under a minute); ``benchmarks/fuzz.py`` runs 10,000 or
more per target. ``TIMBRE_FUZZ_REPORT`` names a JSON-lines file each test appends
``{"test", "cases", "seconds"}`` to (the benchmark reads it).
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

from session.errors import TimbreError

DEFAULT_EXAMPLES = 100
EXAMPLES = int(os.environ.get("TIMBRE_FUZZ_EXAMPLES", DEFAULT_EXAMPLES))
REPORT = os.environ.get("TIMBRE_FUZZ_REPORT")

FUZZ = settings(
    max_examples=EXAMPLES,
    deadline=None,  # hangs are caught by per-request timeouts; deadlines flake on a busy CPU
    database=None,  # no .hypothesis directory in the tree; failures print their example
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                           HealthCheck.filter_too_much, HealthCheck.function_scoped_fixture],
)
"""Settings of every fuzz test: ``@FUZZ`` above ``@given``."""


# -- strategies ------------------------------------------------------------------------------------

ANY_CHAR = st.characters(codec=None, exclude_categories=())
"""Every code point, lone surrogates included (JSON can carry them as ``\\ud800``)."""
TEXT = st.text(ANY_CHAR, max_size=40) | st.sampled_from(
    ["", " ", "default", "piper:joe", "alloy", "\ud800", "../../etc/passwd",
     "{\"$ne\": null}", "\x00", "v_0123456789abcdef", "job_0123456789abcdef", "NaN", "-1"]
) | st.integers(4096, 5001).map(lambda n: "a" * n)  # around the text limits
NUMBERS = (st.integers(min_value=-(2**70), max_value=2**70)
           | st.floats(allow_nan=True, allow_infinity=True)
           | st.sampled_from([0, 1, -1, 0.5, 2.0, 8000, 16000, 24000, 44100, 48000, 10**20]))
SCALARS = st.none() | st.booleans() | NUMBERS | TEXT
JSON = st.recursive(SCALARS, lambda inner: st.lists(inner, max_size=4)
                    | st.dictionaries(TEXT, inner, max_size=4), max_leaves=12)
"""Any JSON value (with NaN and Infinity, which Python's json writes and reads)."""


def objects(fields: dict[str, st.SearchStrategy[Any]]) -> st.SearchStrategy[dict[str, Any]]:
    """JSON objects that use some of ``fields`` (each with its own strategy, or any JSON value)
    plus a few unknown keys."""
    known = st.fixed_dictionaries({}, optional={k: v | JSON for k, v in fields.items()})
    extra = st.dictionaries(TEXT, JSON, max_size=2)
    return st.builds(lambda a, b: {**b, **a}, known, extra)


def dumps(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, allow_nan=True)


DEEP = st.integers(min_value=1, max_value=200_000).flatmap(
    lambda n: st.sampled_from(["[" * n, "{\"a\":" * n, "[" * n + "]" * n]))
"""Nesting past (and up to) the JSON parser's recursion limit."""


def frames(messages: st.SearchStrategy[dict[str, Any]]) -> st.SearchStrategy[str | bytes]:
    """Text frames of mostly well-shaped messages, and garbage of every other kind."""
    return st.one_of(
        messages.map(dumps), messages.map(dumps), messages.map(dumps),
        JSON.map(dumps), st.text(ANY_CHAR, max_size=200), st.binary(max_size=200), DEEP)


def to_bytes(frame: str | bytes) -> bytes:
    return frame if isinstance(frame, bytes) else frame.encode("utf-8", "surrogatepass")


# -- the property every refusal must have ----------------------------------------------------------


def assert_clear(err: TimbreError) -> None:
    """A refusal a client can act on: a machine-readable code, a human message that is not a
    traceback, and a 4xx status (5xx would mean the server, not the input, is at fault)."""
    assert isinstance(err.code, str) and err.code and err.code != "internal_error", err
    assert isinstance(err.message, str) and err.message.strip(), err
    assert "Traceback" not in err.message, err
    assert 400 <= err.http_status < 500, err


# -- counting cases --------------------------------------------------------------------------------


@dataclass
class Tally:
    """Cases a fuzz test ran (``hit`` once per example) and how long the whole test took."""

    test: str
    cases: int = 0
    started: float = field(default_factory=time.perf_counter)

    def hit(self) -> None:
        self.cases += 1

    def report(self) -> None:
        if REPORT:
            line = {"test": self.test, "cases": self.cases,
                    "seconds": round(time.perf_counter() - self.started, 2)}
            with Path(REPORT).open("a", encoding="utf-8") as f:
                f.write(json.dumps(line) + "\n")
