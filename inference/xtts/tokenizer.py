"""Text -> XTTS text tokens.

A real checkpoint ships ``vocab.json`` (a HuggingFace ``tokenizers`` BPE model); :class:`BpeTokenizer`
reads it (``pip install .[xtts]`` brings ``tokenizers``). Random-weight models have no vocabulary, so
:class:`ByteTokenizer` maps UTF-8 bytes to ids deterministically. Text arrives already normalised
by the session layer (numbers and abbreviations spelled out); only coqui's final steps are done
here: lower case, single spaces, a ``[lang]`` prefix and ``[SPACE]`` between words.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Protocol


class TextTokenizer(Protocol):
    def encode(self, text: str, language: str) -> list[int]: ...


def _clean(text: str) -> str:
    return re.sub(r"\s+", " ", text.lower()).strip()


class ByteTokenizer:
    """UTF-8 bytes as ids ``1..256`` (0 is XTTS's stop token)."""

    def __init__(self, vocab_size: int) -> None:
        if vocab_size < 258:
            raise ValueError("ByteTokenizer needs at least 258 text tokens")
        self.vocab_size = vocab_size

    def encode(self, text: str, language: str) -> list[int]:
        return [b + 1 for b in _clean(text).encode("utf-8")]


class BpeTokenizer:
    def __init__(self, vocab_json: str | Path) -> None:
        from tokenizers import Tokenizer  # optional dependency: the xtts extra

        self._tokenizer = Tokenizer.from_file(str(vocab_json))

    def encode(self, text: str, language: str) -> list[int]:
        lang = "zh-cn" if language == "zh" else language
        prompt = f"[{lang}]{_clean(text)}".replace(" ", "[SPACE]")
        return list(self._tokenizer.encode(prompt).ids)
