"""Choosing the base voice for a speaker: the candidate whose speech embeds closest to the
reference.

The conversion filter moves an envelope and resampling moves pitch, but neither can turn a voice
into a very different one without losing words (a male base for a female target failed in the
issue's experiments), so the base must already be the nearest available speaker. Each candidate
says a short probe (a few sentences of the reference's transcript, so content matches) and the
resemblyzer cosine to the reference embedding ranks them. Cost: one probe synthesis per candidate
(about 8 s of audio) plus one embedding each.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import numpy.typing as npt

from inference.conversion.model import Synthesize, say
from inference.speaker import SpeakerEncoder, cosine

F32 = npt.NDArray[np.float32]


def rank_bases(reference: F32, reference_rate_hz: int, candidates: Mapping[str, Synthesize],
               probe_text: str, encoder: SpeakerEncoder) -> list[tuple[str, float]]:
    """(name, similarity) of every candidate saying ``probe_text``, best first. Raises
    ``ValueError`` for no candidates or an empty probe."""
    if not candidates:
        raise ValueError("no candidate base voices")
    target = encoder.embed(reference, reference_rate_hz)
    scores = []
    for name, synthesize in candidates.items():
        audio, rate = say(synthesize, probe_text)
        scores.append((name, cosine(encoder.embed(audio, rate), target)))
    return sorted(scores, key=lambda item: -item[1])
