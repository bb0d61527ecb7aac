"""What the split-graph engines (Piper, Kokoro) share: cutting and saving ONNX graphs, CPU sessions,
and where a decoder chunk ends.

Both engines cut a stock ONNX model into a once-per-unit front end and a decoder that runs in chunks
with context frames on each side (see ``inference.piper`` for why).
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import onnx
import onnxruntime as ort


def rename_tensors(model: onnx.ModelProto, names: Mapping[str, str]) -> None:
    """Give a cut graph's boundary tensors stable names (``names``: old -> new)."""
    graph = model.graph
    for node in graph.node:
        node.input[:] = [names.get(n, n) for n in node.input]
        node.output[:] = [names.get(n, n) for n in node.output]
    for value in [*graph.input, *graph.output, *graph.value_info]:
        value.name = names.get(value.name, value.name)


def save_atomically(model: onnx.ModelProto, path: Path) -> None:
    """Write ``model`` so that a reader (or a crash) never sees half a file in the cache."""
    handle, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(handle)
    try:
        onnx.save(model, tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def cpu_session(path: Path, threads: int, spinning: bool) -> Any:
    """An ONNX Runtime CPU session. Spinning worker threads burn the cores that the event loop and
    the other graphs need while they wait; on a small CPU shared with the server that costs more than
    it saves, so idle threads do not spin unless asked."""
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.add_session_config_entry("session.intra_op.allow_spinning", "1" if spinning else "0")
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def chunk_end(start: int, size: int, frames: int, context: int) -> int:
    """End of the chunk that starts at ``start``: ``size`` frames on, or the utterance's end when
    less than ``context`` frames would be left over (a step that small costs more than it gives)."""
    end = min(frames, start + size)
    return frames if frames - end < context else end


def chunk_window(start: int, frames: int, first: int, size: int, context: int,
                 first_context: int | None = None) -> tuple[int, int, int]:
    """``(end, lo, hi)`` of the decoder chunk starting at ``start``: the first chunk is ``first``
    frames, later ones ``size`` (``chunk_end``); the decoder runs over ``lo:hi``, the chunk with up
    to ``context`` frames on each side (the first chunk, with nothing before it, with
    ``first_context`` after it where that is given)."""
    end = chunk_end(start, first if start == 0 else size, frames, context)
    after = context if start or first_context is None else first_context
    return end, max(0, start - context), min(frames, end + after)
