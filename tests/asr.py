"""The tests' crude recogniser: ``inference.asr`` (pocketsphinx, offline). Compare with
``word_overlap`` and a lenient threshold, never with exact transcripts."""

from inference.asr import recognize, word_overlap

__all__ = ["recognize", "word_overlap"]
