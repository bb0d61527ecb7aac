"""A small offline speech recogniser: pocketsphinx's US-English model (it ships in the package, so
nothing is downloaded).

The clone job uses it for a reference uploaded without a transcript (the conversion is fitted from
the base voice saying what the reference says); tests and benchmarks use it as a crude
intelligibility oracle. It is weak: compare with ``word_overlap`` and lenient thresholds, never
with exact transcripts. ``recognize`` is not thread-safe (one decoder per process, guarded).
"""

from __future__ import annotations

import re
import threading
from collections import Counter
from functools import lru_cache

import numpy as np
import numpy.typing as npt
import soxr

_ASR_RATE_HZ = 16000
_LOCK = threading.Lock()


def recognize(audio: npt.NDArray[np.float32], sample_rate: int) -> str:
    """Lower-case transcript of mono float audio in [-1, 1] at ``sample_rate`` Hz."""
    if sample_rate != _ASR_RATE_HZ:
        audio = soxr.resample(audio.astype(np.float32), sample_rate, _ASR_RATE_HZ)
    pcm = (np.clip(audio, -1.0, 1.0) * 32767).astype("<i2").tobytes()
    with _LOCK:
        decoder = _decoder()
        decoder.start_utt()
        decoder.process_raw(pcm, full_utt=True)
        decoder.end_utt()
        hyp = decoder.hyp()
    return str(hyp.hypstr).lower() if hyp is not None else ""


def word_overlap(reference: str, hypothesis: str) -> float:
    """Fraction of the reference's words (with multiplicity) that the hypothesis contains, in
    [0, 1]; 1.0 for an empty reference."""
    ref, hyp = Counter(_words(reference)), Counter(_words(hypothesis))
    total = sum(ref.values())
    return sum((ref & hyp).values()) / total if total else 1.0


def _words(text: str) -> list[str]:
    return re.findall(r"[a-z0-9']+", text.lower())


@lru_cache(maxsize=1)
def _decoder():  # type: ignore[no-untyped-def]
    from pocketsphinx import Decoder

    return Decoder(samprate=_ASR_RATE_HZ, loglevel="FATAL")
