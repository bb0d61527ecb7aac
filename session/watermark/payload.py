"""The payload: which stream a clip came from, by matching it against candidate stream ids.

Each stream's payload chips carry signs drawn from the key and its random 32-bit id
(``pattern.stream_signs``). Reading 32 bits back one by one would need far more watermark energy
than an inaudible mark has in a few seconds; instead the clip's payload-chip statistics are scored
against each *candidate* id (the caller's recent streams, from the provenance store), coherently over
all payload chips at once. For a wrong id the score is a sum of randomly signed terms (mean 0,
``P(score > t) <= exp(-t^2/2)`` by Hoeffding), so the acceptance threshold
``sqrt(2 ln(candidates / MATCH_FALSE_RATE))`` bounds the chance that *any* wrong candidate passes by
``MATCH_FALSE_RATE`` (union bound): that is what makes a reported match trustworthy, the role a
CRC plays for a decoded payload.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import numpy as np

from session.watermark.pattern import DEFAULT_KEY, F64, pattern, stream_signs

ID_BITS = 32
MATCH_FALSE_RATE = 1e-4
"""Allowed chance that a clip matches a wrong candidate."""


def match_score(payload: F64, stream_id: int, key: bytes = DEFAULT_KEY) -> float:
    """How strongly the clip's payload chips (``Analysis.payload``) carry ``stream_id``'s signs."""
    norm = float(np.sqrt(np.sum(payload**2)))
    if norm == 0.0:
        return 0.0
    return float(np.dot(stream_signs(pattern(key), stream_id, key), payload) / norm)


def match_threshold(candidates: int) -> float:
    return math.sqrt(2.0 * math.log(max(1, candidates) / MATCH_FALSE_RATE))


def candidate_signs(candidates: Iterable[int], key: bytes = DEFAULT_KEY) -> F64:
    """The payload signs of each candidate id, one row each (reusable across clips)."""
    pat = pattern(key)
    rows = [stream_signs(pat, i, key) for i in candidates]
    return np.stack(rows) if rows else np.zeros((0, int(pat.payload.sum())))


def best_match(payload: F64, candidates: Iterable[int], key: bytes = DEFAULT_KEY,
               signs: F64 | None = None) -> int | None:
    """The candidate id the clip carries, or None when none clears ``match_threshold``.
    ``signs``: ``candidate_signs(candidates)`` when already computed."""
    ids = list(candidates)
    norm = float(np.sqrt(np.sum(payload**2)))
    if not ids or norm == 0.0:
        return None
    table = candidate_signs(ids, key) if signs is None else signs
    scores = table @ payload / norm
    best = int(np.argmax(scores))
    return ids[best] if scores[best] > match_threshold(len(ids)) else None
