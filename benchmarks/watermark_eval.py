"""How robust, how inaudible and how cheap Timbre's audio watermark is.

    .venv/bin/python benchmarks/watermark_eval.py --clips 1000 --negatives 1000 --workers 2 \\
        --pesq-every 1 --seed 2026 --out artifacts/watermark/eval.json

For each of ``--clips`` positives (Piper ``joe``, 1-2 sentences, >= 3 s; watermark_corpus.py)
the clip is watermarked as a stream would be (the engine's chunk sizes, a fresh random stream id),
then every transform of ``benchmarks/watermark_transforms.py`` is applied to the *whole* clip
(``crop_3s``: a random 3 s of it) and the detector runs on the result. Measured per clip:

* detection (``detected`` of ``session.watermark.detect.detect``) and the pilot statistic ``z``;
* the watermark's SNR: ``10 log10(sum x^2 / sum (y - x)^2)`` over the clip;
* PESQ (wideband, ITU-T P.862.2, the ``pesq`` package) of the marked clip against the clean one at
  16 kHz, and the drop from PESQ of the clean clip against itself;
* attribution: the payload matched (``session.watermark.payload.best_match``) among all positives'
  stream ids (what the API does for a tenant with that many streams) and among ``SMALL_TENANT``
  (10: the clip's own and 9 others), with how many clips were attributed to a *wrong* stream;
* CPU seconds of Piper synthesis and of embedding (process time, same worker).

``--negatives`` unmarked clips (default: as many as positives) cycle through espeak-ng voices,
the same Piper voice without a mark, ALSA's recorded speech (when installed), white and pink noise
and tone mixtures; each is tested as is and after mu-law 8 kHz (the narrow-band detector path). A
false positive is any ``detected``. Runs in ``--workers`` processes; seeds come from clip indexes.
"""

from __future__ import annotations

import argparse
import itertools
import json
import multiprocessing
import os
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import soxr

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks import watermark_corpus as corpus
from benchmarks.watermark_transforms import TRANSFORMS, Audio, mulaw_8k
from session.watermark.detect import THRESHOLD_Z, detect
from session.watermark.embed import Embedder
from session.watermark.payload import best_match, candidate_signs

PIPER_HOP = 256
NEGATIVE_KINDS = ["espeak", "espeak", "espeak", "piper_unmarked", "alsa", "white", "pink",
                  "tones"]
SMALL_TENANT = 10
"""Candidate streams of the 'small tenant' attribution column (the other column: all positives)."""
_engine: Any = None


def _piper() -> Any:
    global _engine
    if _engine is None:
        from inference.piper import PiperConfig, PiperEngine

        _engine = PiperEngine(PiperConfig(intra_op_threads=1))
    return _engine


def _detect(audio: Audio, rate: int) -> tuple[bool, float, Any]:
    found = detect(audio, rate, narrowband=rate <= 8000)
    return found.detected, found.analysis.z, found.analysis.payload


def embed_streaming(audio: Audio, stream_id: int, rate: int, target_snr_db: float) -> Audio:
    """Mark ``audio`` in the chunk sizes Piper streams (``PiperConfig``: 32 frames, growing to 64)."""
    from inference.piper import PiperConfig

    cfg = PiperConfig()
    embedder = Embedder(stream_id, rate, target_snr_db=target_snr_db)
    chunks, start, frames = [], 0, cfg.chunk_after(0)
    samples = audio.astype(np.float32)
    while start < len(samples):
        chunks.append(embedder.process(samples[start:start + frames * PIPER_HOP]))
        start += frames * PIPER_HOP
        frames = cfg.chunk_after(frames)
    return np.concatenate(chunks).astype(np.float64)


def _pesq(clean: Audio, marked: Audio, rate: int) -> tuple[float, float]:
    from pesq import pesq

    ref = soxr.resample(clean.astype(np.float32), rate, 16000)
    deg = soxr.resample(marked.astype(np.float32), rate, 16000)
    return float(pesq(16000, ref, ref, "wb")), float(pesq(16000, ref, deg, "wb"))


def positive(index: int, seed: int, target_snr_db: float, with_pesq: bool) -> dict[str, Any]:
    rng = np.random.default_rng([seed, 1, index])
    engine = _piper()
    rate = int(engine.sample_rate_hz)
    started = time.process_time()
    clean = corpus.piper_clip(engine, rng)
    synth_cpu = time.process_time() - started
    stream_id = int(rng.integers(0, 1 << 32))
    started = time.process_time()
    marked = embed_streaming(clean, stream_id, rate, target_snr_db)
    embed_cpu = time.process_time() - started
    row: dict[str, Any] = {
        "kind": "positive", "index": index, "stream_id": stream_id,
        "seconds": len(clean) / rate, "synth_cpu_s": synth_cpu, "embed_cpu_s": embed_cpu,
        "snr_db": float(10 * np.log10(np.sum(clean**2) / np.sum((marked - clean) ** 2))),
        "transforms": {}}
    if with_pesq:
        row["pesq_clean"], row["pesq_marked"] = _pesq(clean, marked, rate)
    for name, transform in TRANSFORMS.items():
        audio, out_rate = transform(marked, rate, rng)
        detected, z, payload = _detect(audio, out_rate)
        row["transforms"][name] = {"detected": detected, "z": z,
                                   "payload": [round(float(v), 5) for v in payload]}
    return row


def negative(index: int, seed: int) -> dict[str, Any]:
    rng = np.random.default_rng([seed, 2, index])
    kind = NEGATIVE_KINDS[index % len(NEGATIVE_KINDS)]
    rate = 22050
    seconds = float(rng.uniform(3.0, 8.0))
    audio: Audio | None = None
    if kind == "espeak" and corpus.has_espeak():
        audio = corpus.espeak_clip(rng, rate)
    elif kind == "piper_unmarked":
        audio = corpus.piper_clip(_piper(), rng)
    elif kind == "alsa":
        audio = corpus.alsa_clip(rng, rate)
    elif kind == "pink":
        audio = corpus.pink_noise(rng, rate, seconds)
    elif kind == "tones":
        audio = corpus.tones(rng, rate, seconds)
    if audio is None:  # white noise, or a source this machine lacks
        kind, audio = "white", corpus.white_noise(rng, rate, seconds)
    row: dict[str, Any] = {"kind": kind, "index": index, "conditions": {}}
    for name, (x, r) in {"none": (audio, rate), "mulaw_8k": mulaw_8k(audio, rate, rng)}.items():
        detected, z, _ = _detect(x, r)
        row["conditions"][name] = {"detected": detected, "z": z}
    return row


def _task(args: tuple[str, int, int, float, bool]) -> dict[str, Any]:
    what, index, seed, target_snr_db, with_pesq = args
    if what == "pos":
        return positive(index, seed, target_snr_db, with_pesq)
    return negative(index, seed)


def summarise(rows: list[dict[str, Any]]) -> dict[str, Any]:
    pos = [r for r in rows if r["kind"] == "positive"]
    neg = [r for r in rows if r["kind"] != "positive"]
    out: dict[str, Any] = {"threshold_z": THRESHOLD_Z, "positives": len(pos),
                           "negatives": len(neg), "transforms": {}, "false_positives": {}}
    ids = [r["stream_id"] for r in pos]
    signs = candidate_signs(ids)
    # a small tenant: its clip's own stream among SMALL_TENANT - 1 other positives' streams
    pick = np.random.default_rng(0)
    small = [[r["stream_id"]] + [ids[j] for j in pick.choice(
        [k for k in range(len(ids)) if ids[k] != r["stream_id"]],
        size=min(SMALL_TENANT - 1, len(ids) - 1), replace=False)] for r in pos]
    for name in TRANSFORMS:
        zs = np.array([r["transforms"][name]["z"] for r in pos])
        payloads = [np.array(r["transforms"][name]["payload"]) for r in pos]
        matched = [best_match(p, ids, signs=signs) == r["stream_id"]
                   for p, r in zip(payloads, pos, strict=True)]
        matched_small = [best_match(p, c) == r["stream_id"]
                         for p, c, r in zip(payloads, small, pos, strict=True)]
        out["transforms"][name] = {
            "detection_rate": float(np.mean([r["transforms"][name]["detected"] for r in pos])),
            "z_mean": float(zs.mean()), "z_p01": float(np.percentile(zs, 1)),
            "payload_match_rate": float(np.mean(matched)),
            "payload_match_rate_small": float(np.mean(matched_small)),
            "payload_wrong": int(sum(best_match(p, ids, signs=signs) not in (None, r["stream_id"])
                                     for p, r in zip(payloads, pos, strict=True)))}
    for condition in ("none", "mulaw_8k"):
        zs = np.array([r["conditions"][condition]["z"] for r in neg])
        flagged = [r for r in neg if r["conditions"][condition]["detected"]]
        out["false_positives"][condition] = {
            "rate": len(flagged) / max(1, len(neg)), "count": len(flagged),
            "z_max": float(zs.max()), "z_std": float(zs.std()),
            "flagged": [(r["kind"], r["index"]) for r in flagged]}
    out["negative_kinds"] = {k: sum(r["kind"] == k for r in neg) for k in set(NEGATIVE_KINDS)}
    snr = np.array([r["snr_db"] for r in pos])
    out["snr_db"] = {"min": float(snr.min()), "p01": float(np.percentile(snr, 1)),
                     "median": float(np.median(snr)), "mean": float(snr.mean())}
    with_pesq = [r for r in pos if "pesq_marked" in r]
    if with_pesq:
        drops = np.array([r["pesq_clean"] - r["pesq_marked"] for r in with_pesq])
        out["pesq_wb"] = {"clips": len(with_pesq),
                          "clean_mean": float(np.mean([r["pesq_clean"] for r in with_pesq])),
                          "marked_mean": float(np.mean([r["pesq_marked"] for r in with_pesq])),
                          "drop_mean": float(drops.mean()), "drop_max": float(drops.max()),
                          "drop_p99": float(np.percentile(drops, 99)),
                          "clips_over_0.1": int(np.sum(drops > 0.1))}
    synth = sum(r["synth_cpu_s"] for r in pos)
    embed = sum(r["embed_cpu_s"] for r in pos)
    audio_s = sum(r["seconds"] for r in pos)
    out["cpu"] = {"audio_s": audio_s, "synth_cpu_s": synth, "embed_cpu_s": embed,
                  "embed_share_of_synthesis": embed / synth if synth else None,
                  "embed_ms_per_audio_s": 1000 * embed / audio_s if audio_s else None}
    out["clip_seconds"] = {"min": min(r["seconds"] for r in pos),
                           "mean": audio_s / max(1, len(pos)),
                           "max": max(r["seconds"] for r in pos)}
    return out


def print_report(summary: dict[str, Any], wall_s: float) -> None:
    print(f"positives {summary['positives']}, negatives {summary['negatives']}, "
          f"threshold z > {summary['threshold_z']}, wall {wall_s:.0f} s")
    print(f"| transform | detected | z mean | z 1st pct | attributed among "
          f"{summary['positives']} streams | among {SMALL_TENANT} | wrongly attributed |")
    print("|---|---|---|---|---|---|---|")
    for name, t in summary["transforms"].items():
        print(f"| {name} | {100 * t['detection_rate']:.1f} % | {t['z_mean']:.2f} | "
              f"{t['z_p01']:.2f} | {100 * t['payload_match_rate']:.1f} % | "
              f"{100 * t.get('payload_match_rate_small', float('nan')):.1f} % | "
              f"{t.get('payload_wrong', 0)} |")
    for condition, fp in summary["false_positives"].items():
        print(f"false positives ({condition}): {fp['count']}/{summary['negatives']} "
              f"({100 * fp['rate']:.2f} %), z max {fp['z_max']:.2f}, z sd {fp['z_std']:.2f}")
    print(f"SNR dB: {summary['snr_db']}")
    print(f"PESQ: {summary.get('pesq_wb')}")
    print(f"CPU: {summary['cpu']}")
    print(f"clip seconds: {summary['clip_seconds']}; negatives: {summary['negative_kinds']}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--clips", type=int, default=1000, help="watermarked clips")
    parser.add_argument("--negatives", type=int, default=None, help="unmarked clips (= --clips)")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--target-snr-db", type=float, default=Embedder.DEFAULT_TARGET_SNR_DB)
    parser.add_argument("--pesq-every", type=int, default=1,
                        help="PESQ on every k-th clip (0: none); PESQ is the slowest part")
    parser.add_argument("--out", type=Path, default=None, help="write the summary (and rows)")
    parser.add_argument("--summarise", type=Path, default=None,
                        help="only summarise the rows (.rows.jsonl) of an earlier, perhaps cut, run")
    args = parser.parse_args(argv)
    if args.summarise is not None:
        lines = args.summarise.read_text().splitlines()
        summary = summarise([json.loads(line) for line in lines if line.strip()])
        print_report(summary, float("nan"))
        return 0
    negatives = args.clips if args.negatives is None else args.negatives
    positives = [("pos", i, args.seed, args.target_snr_db,
                  args.pesq_every > 0 and i % args.pesq_every == 0) for i in range(args.clips)]
    unmarked = [("neg", i, args.seed, args.target_snr_db, False) for i in range(negatives)]
    # interleaved, so that a run cut short still has both kinds in proportion
    tasks = [t for pair in itertools.zip_longest(positives, unmarked) for t in pair if t]
    started = time.monotonic()
    rows: list[dict[str, Any]] = []
    partial = None
    if args.out is not None:  # rows as they come, so a cut run can still be summarised
        args.out.parent.mkdir(parents=True, exist_ok=True)
        partial = args.out.with_suffix(".rows.jsonl").open("w")
    with multiprocessing.get_context("spawn").Pool(args.workers) as pool:
        for done, row in enumerate(pool.imap_unordered(_task, tasks, chunksize=2), 1):
            rows.append(row)
            if partial is not None:
                partial.write(json.dumps(row) + "\n")
                partial.flush()
            if done % 50 == 0:
                print(f"{done}/{len(tasks)} clips, {time.monotonic() - started:.0f} s",
                      file=sys.stderr, flush=True)
    wall_s = time.monotonic() - started
    summary = summarise(rows)
    summary["wall_s"] = wall_s
    summary["workers"] = args.workers
    print_report(summary, wall_s)
    if args.out is not None:
        args.out.write_text(json.dumps(summary, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
