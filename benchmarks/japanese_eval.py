"""Japanese intelligibility of the Kokoro voices: each stock voice says SENTENCES with
``language="ja"`` (one pass through our engine), Whisper base (``tests.whisper_asr``, offline)
transcribes them, and the readings are compared (kana error rate: edit distance between the
OpenJTalk katakana readings of the text and of what was heard, per reference kana; 0 is perfect).
As a control, every transcript is also scored against the next sentence's text.

    .venv/bin/python benchmarks/japanese_eval.py [--voices jf_nezumi,jm_kumo] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from inference.engine import SynthesisUnit
from inference.kokoro import DEFAULT_CACHE_DIR, KokoroEngine
from inference.kokoro_graph import load_assets
from tests.whisper_asr import kana_error_rate, transcribe

SENTENCES = [
    "今日はとても良い天気ですね。",
    "駅までの道を教えていただけますか。",
    "明日の会議は午後三時から始まります。",
    "この本はとても面白かったです。",
    "すみません、もう一度言ってください。",
    "私は毎朝コーヒーを飲みます。",
    "新しいレストランが駅の近くにできました。",
    "週末は家族と一緒に山へ行く予定です。",
    "ご注文はこちらでよろしいでしょうか。",
    "電車が遅れているので、少し待ってください。",
]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--voices", help="comma-separated stock voices (default: all)")
    parser.add_argument("--json", type=Path, help="write the results here as JSON")
    args = parser.parse_args()
    engine = KokoroEngine(assets=load_assets(DEFAULT_CACHE_DIR))
    voices = args.voices.split(",") if args.voices else list(engine.voices())
    results = []
    for voice in voices:
        heard = [transcribe(engine.synthesize_one_pass(SynthesisUnit(text, voice, language="ja")),
                            engine.sample_rate_hz, "ja") for text in SENTENCES]
        right = [kana_error_rate(t, h) for t, h in zip(SENTENCES, heard, strict=True)]
        wrong = [kana_error_rate(t, h) for t, h in zip(SENTENCES, heard[1:] + heard[:1],
                                                       strict=True)]
        result = {"voice": voice, "kana_error_rate": round(float(np.mean(right)), 3),
                  "worst": round(max(right), 3),
                  "against_wrong_sentences": round(float(np.mean(wrong)), 3), "heard": heard}
        results.append(result)
        print(json.dumps(result, ensure_ascii=False), flush=True)
    print("\n| voice | kana error rate (mean / worst) | against the wrong sentences |")
    print("|---|---|---|")
    for r in results:
        print(f"| {r['voice']} | {r['kana_error_rate']:.3f} / {r['worst']:.2f} | "
              f"{r['against_wrong_sentences']:.2f} |")
    if args.json:
        args.json.write_text(json.dumps(results, ensure_ascii=False, indent=2))


if __name__ == "__main__":
    main()
