"""A Kokoro voice: a style vector, or a voicepack of one style per text length.

Kokoro conditions everything on one 256-dim style vector (the first half drives the decoder's
timbre, the second half the predicted durations and prosody). Its stock voices are voicepacks,
[510, 256]: the style for a text of n tokens is row n - 1. Any vector of the right size speaks, so
cloning and mixing can hand the engine voices of their own; ``KokoroVoice.to_bytes`` is how a
voice profile stores one, ``from_bytes`` how the engine reads it back.
"""

from __future__ import annotations

import io
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from inference.kokoro_graph import STYLE_DIM, VOICEPACK_LENGTH

MEAN_VOICE = "mean"
"""The stock blend: the mean of every shipped voicepack."""

_FORMAT = "kokoro-voice/1"


@dataclass(frozen=True, eq=False)
class KokoroVoice:
    """``styles`` is [1, 256] (one style for every text length) or [510, 256] (a voicepack).
    ``language`` is the voice's default language (see ``inference.kokoro_text.LANGUAGES``);
    None means English."""

    styles: npt.NDArray[np.float32]
    language: str | None = None

    def __post_init__(self) -> None:
        rows = self.styles.shape[0] if self.styles.ndim == 2 else 0
        if self.styles.ndim != 2 or self.styles.shape[1] != STYLE_DIM or rows not in (
                1, VOICEPACK_LENGTH):
            raise ValueError(f"a Kokoro voice is [1, {STYLE_DIM}] or [{VOICEPACK_LENGTH}, "
                             f"{STYLE_DIM}], not {list(self.styles.shape)}")
        if not np.all(np.isfinite(self.styles)):
            raise ValueError("a Kokoro style must be finite")

    @classmethod
    def from_vector(cls, style: Sequence[float] | npt.NDArray[np.float32],
                    language: str | None = None) -> KokoroVoice:
        """A voice from a flat style (256 values) or a flattened voicepack (510 * 256)."""
        flat = np.asarray(style, dtype=np.float32).reshape(-1)
        return cls(flat.reshape(-1, STYLE_DIM) if flat.size % STYLE_DIM == 0
                   else flat.reshape(1, -1), language)

    def style_for(self, tokens: int) -> npt.NDArray[np.float32]:
        """The [1, 256] style for a text of ``tokens`` tokens (Kokoro's own rule for packs)."""
        row = min(max(tokens, 1), self.styles.shape[0]) - 1
        return np.ascontiguousarray(self.styles[row:row + 1])

    def to_bytes(self) -> bytes:
        buf = io.BytesIO()
        np.savez(buf, format=np.array(_FORMAT), styles=self.styles,
                 language=np.array(self.language or ""))
        return buf.getvalue()

    @classmethod
    def from_bytes(cls, data: bytes) -> KokoroVoice:
        """Raises ``ValueError`` for bytes that are not a Kokoro voice (e.g. another engine's)."""
        try:
            with np.load(io.BytesIO(data), allow_pickle=False) as npz:
                if str(npz["format"]) != _FORMAT:
                    raise ValueError(f"not a Kokoro voice: format {npz['format']}")
                language = str(npz["language"]) or None
                return cls(npz["styles"].astype(np.float32), language)
        except (OSError, KeyError, EOFError) as exc:
            raise ValueError(f"not a Kokoro voice: {exc}") from exc


def stock_voices(packs: Mapping[str, npt.NDArray[np.float32]]) -> dict[str, KokoroVoice]:
    """The shipped voicepacks plus their mean (``MEAN_VOICE``), by name."""
    voices = {name: KokoroVoice(pack) for name, pack in sorted(packs.items())}
    if packs:
        voices[MEAN_VOICE] = KokoroVoice(np.mean(list(packs.values()), axis=0).astype(np.float32))
    return voices


def mix(voices: Sequence[tuple[KokoroVoice, float]]) -> KokoroVoice:
    """A weighted blend (weights normalised to sum 1). Voicepacks and single styles mix row by
    row (a single style counts the same at every length). Raises ``ValueError`` for no voices or
    weights that do not add up to a positive number."""
    total = sum(weight for _, weight in voices)
    if not voices or total <= 0:
        raise ValueError("mixing needs voices with a positive total weight")
    rows = max(voice.styles.shape[0] for voice, _ in voices)
    blended = sum(np.broadcast_to(voice.styles, (rows, STYLE_DIM)) * (weight / total)
                  for voice, weight in voices)
    return KokoroVoice(np.asarray(blended, dtype=np.float32), voices[0][0].language)
