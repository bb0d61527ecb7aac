"""Research sweep: what moving a Kokoro base voice's pitch contour at its source does to a clone.

For one target of ``benchmarks.clone_eval`` and one Kokoro base, each setting ``ratio:spread``
(an ``F0Shift`` around the base's typical pitch on the transcript) makes the base say the
reference transcript with that contour, fits the conversion on it (``inference.conversion.fit``),
then says the held-out sentences the same way through the fitted converter (4096-sample chunks)
and reports resemblyzer similarity to the reference and pocketsphinx word overlap. ``match``
stands for the setting the clone job would pick from both speakers' ``f0_stats``.

    .venv/bin/python benchmarks/clone_pitch.py festival-slt jf_gongitsune 1:1 match 0.73:0.54

Synthesis is one-pass through our Kokoro engine (``KokoroEngine.synthesize_one_pass``), so the
figures differ slightly from clone_eval's (the stock model with its own phonemes). Findings:
docs/benchmarks.md, "Pitch at the source".
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks import clone_eval as ce
from benchmarks import clone_voices as cv
from inference.conversion import StreamingConverter, f0_stats, fit
from inference.engine import F0Shift, SynthesisUnit
from inference.kokoro import DEFAULT_CACHE_DIR, KokoroEngine
from inference.kokoro_graph import SAMPLE_RATE_HZ, load_assets
from inference.speaker import SpeakerEncoder, cosine


def say(engine: KokoroEngine, voice: str, sentences: list[str], shift: F0Shift | None,
        speed: float = 1.0) -> list[cv.F32]:
    return [cv.trim(engine.synthesize_one_pass(SynthesisUnit(s, voice, speed, f0=shift)),
                    SAMPLE_RATE_HZ) for s in sentences]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("target", choices=list(ce.target_voices()))
    parser.add_argument("base", help="a Kokoro stock voice, e.g. jf_gongitsune")
    parser.add_argument("settings", nargs="+", help="ratio:spread pairs, or 'match'")
    parser.add_argument("--cache", type=Path, help="clone_eval's synthesis cache folder")
    args = parser.parse_args()
    engine = KokoroEngine(assets=load_assets(DEFAULT_CACHE_DIR))
    encoder = SpeakerEncoder()
    cache = ce.Cache(args.cache)
    synth = ce.target_voices()[args.target]
    ref_t = cache.get(f"target:{args.target}", synth, ce.REFERENCE)
    reference = ce.joined(ref_t.clips, ref_t.rate)
    ref_embedding = encoder.embed(reference, ref_t.rate)
    ref_f0, ref_spread = f0_stats(reference, ref_t.rate)
    plain = ce.joined(say(engine, args.base, ce.REFERENCE, None), SAMPLE_RATE_HZ)
    base_f0, base_spread = f0_stats(plain, SAMPLE_RATE_HZ)
    print(f"# reference F0 {ref_f0:.1f} Hz spread {ref_spread:.3f}; base {base_f0:.1f} Hz "
          f"spread {base_spread:.3f} on the transcript", flush=True)
    for setting in args.settings:
        if setting == "match":
            ratio, spread = ref_f0 / base_f0, ref_spread / base_spread
        else:
            ratio, spread = (float(x) for x in setting.split(":"))
        shift = F0Shift(ratio, spread, base_f0)
        t0 = time.perf_counter()
        said = ce.joined(say(engine, args.base, ce.REFERENCE, shift), SAMPLE_RATE_HZ)
        params, report = fit(reference, ref_t.rate, " ".join(ce.REFERENCE), _no_synthesis,
                             base_audio=(said, SAMPLE_RATE_HZ))
        converted = []
        for clip in say(engine, args.base, ce.HELD_OUT, shift, params.base_speed):
            stream = StreamingConverter(params)
            parts = [stream.feed(clip[i:i + ce.CHUNK]) for i in range(0, len(clip), ce.CHUNK)]
            converted.append(np.concatenate([*parts, stream.flush()]))
        similarity = cosine(encoder.embed(ce.joined(converted, SAMPLE_RATE_HZ), SAMPLE_RATE_HZ),
                            ref_embedding)
        print(json.dumps({
            "target": args.target, "base": args.base, "ratio": round(ratio, 3),
            "spread": round(spread, 3), "similarity": round(similarity, 4),
            "words": round(ce.intelligibility(converted, SAMPLE_RATE_HZ), 3),
            "base_f0_after_hz": round(report.base_f0_hz, 1), "seconds": round(
                time.perf_counter() - t0, 1)}), flush=True)


def _no_synthesis(text: str) -> tuple[cv.F32, int]:
    raise AssertionError("the base audio is passed in")


if __name__ == "__main__":
    main()
