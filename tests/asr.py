"""A crude speech recogniser for tests: did the synthesised audio say the words?

pocketsphinx ships a US-English acoustic model, dictionary and language model, so this needs no
network. It is a weak recogniser: compare with ``word_overlap`` and a lenient threshold, never
with exact transcripts.
"""

from __future__ import annotations

import re
from collections import Counter
from functools import lru_cache

import numpy as np
import numpy.typing as npt
import soxr

_ASR_RATE_HZ = 16000


def recognize(audio: npt.NDArray[np.float32], sample_rate: int) -> str:
    """Lower-case transcript of mono float audio in [-1, 1] at ``sample_rate`` Hz."""
    if sample_rate != _ASR_RATE_HZ:
        audio = soxr.resample(audio.astype(np.float32), sample_rate, _ASR_RATE_HZ)
    pcm = (np.clip(audio, -1.0, 1.0) * 32767).astype("<i2").tobytes()
    decoder = _decoder()
    decoder.start_utt()
    decoder.process_raw(pcm, full_utt=True)
    decoder.end_utt()
    hyp = decoder.hyp()
    return hyp.hypstr.lower() if hyp is not None else ""


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
