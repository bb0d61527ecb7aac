"""Kokoro's decoders side by side: ONNX Runtime (the stock int8 graph) against PyTorch
(``inference.torch_graph``, integer convolutions in bfloat16, float32 or 8-bit integers).

For each decoder and voice, the 12 held-out sentences of the cloning benchmark (6 Harvard, 6
everyday), streamed the way the server streams them:

* words: Whisper base's word error rate (``tests.whisper_asr``, English) and pocketsphinx's word
  overlap (``tests.asr``, the cloning bar's recogniser), both averaged over the sentences;
* voice: resemblyzer cosine of the sentences joined, against the same voice's ONNX Runtime
  rendering of 8 other sentences (the ONNX row is the voice against itself on new sentences);
* cost: process CPU-seconds per audio-second of the streamed decode (one thread per window).

Run on a quiet machine; figures in docs/benchmarks.md ("Kokoro's PyTorch decoder").

    .venv/bin/python benchmarks/kokoro_decoders.py [--voices jf_gongitsune,jm_kumo]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.clone_eval import EVERYDAY, HELD_OUT, REFERENCE, joined
from inference.engine import SynthesisUnit
from inference.kokoro import DEFAULT_CACHE_DIR, KokoroEngine
from inference.kokoro_config import KokoroConfig
from inference.kokoro_graph import SAMPLE_RATE_HZ, load_assets
from inference.speaker import SpeakerEncoder, cosine
from tests.asr import recognize, word_overlap
from tests.inference.test_kokoro import stream
from tests.whisper_asr import transcribe, word_error_rate


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--voices", default="jf_gongitsune,jm_kumo,jf_nezumi")
    parser.add_argument("--decoders", default="onnx,torch-bf16,torch-fp32,torch-int8")
    args = parser.parse_args()
    assets = load_assets(DEFAULT_CACHE_DIR)
    engines = {name: KokoroEngine(KokoroConfig(decoder=name, intra_op_threads=1), assets=assets)
               for name in args.decoders.split(",")}
    reference_engine = KokoroEngine(KokoroConfig(decoder="onnx"), assets=assets)
    encoder = SpeakerEncoder()
    sentences = HELD_OUT + EVERYDAY
    print("| voice | decoder | Whisper WER | pocketsphinx words | voice cosine | CPU-s per "
          "audio-s |\n|---|---|---|---|---|---|")
    for voice in args.voices.split(","):
        own = joined([reference_engine.synthesize_one_pass(SynthesisUnit(text, voice))
                      for text in REFERENCE[:8]], SAMPLE_RATE_HZ)
        own_embedding = encoder.embed(own, SAMPLE_RATE_HZ)
        for name, engine in engines.items():
            engine.warmup()
            cpu = time.process_time()
            clips = [stream(engine, SynthesisUnit(text, voice))[0] for text in sentences]
            cpu = time.process_time() - cpu
            seconds = sum(len(clip) for clip in clips) / SAMPLE_RATE_HZ
            wer = np.mean([word_error_rate(text, transcribe(clip, SAMPLE_RATE_HZ, "en"))
                           for text, clip in zip(sentences, clips, strict=True)])
            words = np.mean([word_overlap(text, recognize(clip, SAMPLE_RATE_HZ))
                             for text, clip in zip(sentences, clips, strict=True)])
            same = cosine(own_embedding, encoder.embed(joined(clips, SAMPLE_RATE_HZ),
                                                       SAMPLE_RATE_HZ))
            print(f"| {voice} | {name} | {wer:.3f} | {words:.2f} | {same:.3f} | "
                  f"{cpu / seconds:.2f} |", flush=True)


if __name__ == "__main__":
    main()
