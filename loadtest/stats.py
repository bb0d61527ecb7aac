"""Percentiles and distribution summaries for load-test reports.

Empty inputs give ``None`` rather than raising: a run in which no utterance got audio is a result to
report (with its errors), not a crash of the harness.
"""

from __future__ import annotations

import math
from collections.abc import Sequence


def percentile(values: Sequence[float], q: float) -> float | None:
    """The ``q``-th percentile (0..100) of ``values`` with linear interpolation between the closest
    ranks (numpy's default ``linear`` method); ``None`` for an empty sequence.

    Raises ``ValueError`` when ``q`` is outside 0..100.
    """
    if not 0.0 <= q <= 100.0:
        raise ValueError(f"percentile q must be within 0..100, got {q}")
    if not values:
        return None
    ordered = sorted(values)
    rank = (len(ordered) - 1) * q / 100.0
    low = math.floor(rank)
    high = math.ceil(rank)
    if low == high:
        return float(ordered[low])
    fraction = rank - low
    return float(ordered[low] + (ordered[high] - ordered[low]) * fraction)


def distribution(values: Sequence[float], digits: int = 1) -> dict[str, float | int | None]:
    """``{n, p50, p95, p99, mean, max}`` of ``values``, rounded to ``digits`` decimals
    (``None`` entries when ``values`` is empty)."""

    def rounded(x: float | None) -> float | None:
        return None if x is None else round(x, digits)

    return {
        "n": len(values),
        "p50": rounded(percentile(values, 50)),
        "p95": rounded(percentile(values, 95)),
        "p99": rounded(percentile(values, 99)),
        "mean": rounded(sum(values) / len(values)) if values else None,
        "max": rounded(max(values)) if values else None,
    }
