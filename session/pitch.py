"""The ``pitch`` option's range and its meaning as a frequency ratio.

Kept apart from ``session.voicing`` (which runs the pitch shift and imports the conversion stack)
so that the protocol parsers and the command-line client can check a pitch without loading it:
``timbre say`` starts in about half a second instead of three.
"""

from __future__ import annotations

MIN_PITCH = -6.0
"""Semitones: the lowest ``pitch`` option (a ratio of 0.71)."""
MAX_PITCH = 6.0
"""Semitones: the highest ``pitch`` option (a ratio of 1.41)."""


def pitch_ratio(semitones: float) -> float:
    """The frequency ratio of a shift by ``semitones`` (equal temperament)."""
    return float(2.0 ** (semitones / 12.0))
