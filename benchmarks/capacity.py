"""Capacity of one node: `timbre loadtest` at growing session counts against a fresh `timbre serve`.

    .venv/bin/python benchmarks/capacity.py                       # 1, 8, then 12, 16, ... sessions
    .venv/bin/python benchmarks/capacity.py --levels 1,8 --duration 60 --out artifacts/capacity

Starts the server on a free loopback port with its own data directory (embedded defaults), runs
one load test per level (each session streams LLM-like text at --words-per-s and plays the audio out
in real time), and stops at the first level with underruns or errors. Writes one JSON report (and
plot) per level and prints a table; the capacity figure is the largest level with zero underruns.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import tempfile
from pathlib import Path
from typing import Any

from benchmarks.local_server import free_port, start_server
from loadtest.plot import plot_run
from loadtest.runner import LoadTestConfig, execute, summarize

ROOT = Path(__file__).resolve().parent.parent


def run_level(url: str, key: str, sessions: int, args: argparse.Namespace, pid: int) -> dict[str, Any]:
    config = LoadTestConfig(url=url, sessions=sessions, duration_s=args.duration,
                            words_per_s=args.words_per_s, api_key=key, server_pid=pid)
    run = asyncio.run(execute(config))
    plot_run(run, args.out / f"sessions-{sessions}.png")
    return summarize(run)


def row(report: dict[str, Any]) -> str:
    t, u = report["ttfa_ms"], report["underruns"]
    errors = sum(report["errors"].values())
    return (f"| {report['sessions']} | {report['utterances']} | {t['p50']} | {t['p95']} | {t['p99']} "
            f"| {report['ttfa_from_first_text_ms']['p95']} | {u['count']} | {errors} "
            f"| {report['audio_s_per_s']} | {report['server']['cpu_mean_pct']} "
            f"| {report['server']['rss_max_mb']} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--levels", default="1,8,12,16,20,24,28,32")
    parser.add_argument("--duration", type=float, default=60.0)
    parser.add_argument("--words-per-s", type=float, default=20.0)
    parser.add_argument("--out", type=Path, default=ROOT / "artifacts" / "capacity")
    parser.add_argument("--server-config", type=Path, default=None,
                        help="TOML configuration for the server (default: embedded defaults)")
    parser.add_argument("--keep-going", action="store_true",
                        help="run every level even after one had underruns")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    port = free_port()
    with tempfile.TemporaryDirectory() as data:
        server = start_server(Path(data), port, args.server_config)
        key = (Path(data) / "demo-api-key").read_text().strip()
        rows, capacity = [], 0
        try:
            for sessions in (int(x) for x in args.levels.split(",")):
                report = run_level(f"ws://127.0.0.1:{port}", key, sessions, args, server.pid)
                (args.out / f"sessions-{sessions}.json").write_text(json.dumps(report, indent=2))
                rows.append(row(report))
                print(rows[-1], flush=True)
                clean = report["underruns"]["count"] == 0 and not report["errors"]
                if clean:
                    capacity = sessions
                elif not args.keep_going:
                    break
        finally:
            server.terminate()
            server.wait(30)
    print("\n| sessions | utterances | TTFA p50 ms | p95 | p99 | p95 from first text | underruns "
          "| errors | audio s/s | server CPU % | RSS MB |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    print("\n".join(rows))
    print(f"\ncapacity (largest level with zero underruns and no errors): {capacity} sessions")


if __name__ == "__main__":
    main()
