"""``timbre loadtest``: run N simulated voice agents against a server and report TTFA, underruns,
errors and server load (see ``loadtest.runner`` for the definitions).

Exit status: 0 when at least one utterance got audio, 1 otherwise (the summary says why).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from pathlib import Path
from typing import Any

from loadtest.runner import LoadTestConfig, execute, summarize, summary_text
from realtime.client import resolve_api_key


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Register ``loadtest`` on an ``argparse`` subparsers object; the parser's ``func`` default is
    ``main`` (``args.func(args)`` returns the exit status)."""
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "loadtest",
        help="load-test a running server with simulated voice agents",
        description="N concurrent sessions, each streaming LLM-paced turns and playing them out.",
    )
    parser.add_argument("--url", default="ws://127.0.0.1:8080", help="server base URL (ws://...)")
    parser.add_argument("--sessions", type=int, default=4, help="concurrent sessions (default: 4)")
    parser.add_argument(
        "--duration",
        type=float,
        default=30.0,
        help="seconds during which new turns start (default: 30)",
    )
    parser.add_argument(
        "--words-per-s",
        type=float,
        default=8.0,
        help="text rate per session, LLM-like; 0 = each turn at once (default: 8)",
    )
    parser.add_argument("--json", type=Path, default=None, help="write the summary JSON here")
    parser.add_argument("--plot", type=Path, default=None, help="write a PNG figure here")
    parser.add_argument(
        "--key", default=None, help="API key (default: $TIMBRE_API_KEY, else ./data/demo-api-key)"
    )
    parser.add_argument("--voice", default="joe", help="voice id (default: joe)")
    parser.add_argument("--sample-rate", type=int, default=24000, help="output rate in Hz")
    parser.add_argument(
        "--server-pid",
        type=int,
        default=None,
        help="pid to sample CPU/RSS of (default: the process listening on the port)",
    )
    parser.add_argument(
        "--jitter-buffer-ms",
        type=float,
        default=100.0,
        help="client playout buffer before playback starts (default: 100)",
    )
    parser.add_argument(
        "--stagger-ms",
        type=float,
        default=100.0,
        help="delay between session starts (default: 100)",
    )
    parser.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")
    parser.set_defaults(func=main)
    return parser


def config_from_args(args: argparse.Namespace) -> LoadTestConfig:
    """The run configuration of parsed arguments; raises ``ValueError`` for impossible values."""
    return LoadTestConfig(
        url=args.url,
        sessions=args.sessions,
        duration_s=args.duration,
        words_per_s=args.words_per_s,
        api_key=resolve_api_key(args.key),
        voice=args.voice,
        sample_rate_hz=args.sample_rate,
        server_pid=args.server_pid,
        jitter_buffer_ms=args.jitter_buffer_ms,
        stagger_s=args.stagger_ms / 1000.0,
        seed=args.seed,
    )


def main(args: argparse.Namespace) -> int:
    """Run ``timbre loadtest`` for parsed ``args``; returns the exit status."""
    try:
        config = config_from_args(args)
    except ValueError as exc:
        print(f"timbre loadtest: {exc}", file=sys.stderr)
        return 1
    run = asyncio.run(execute(config))
    summary = summarize(run)
    if args.json is not None:
        args.json.write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    if args.plot is not None:
        from loadtest.plot import plot_run  # matplotlib only when a figure is asked for

        plot_run(run, args.plot)
    print(summary_text(summary))
    if summary["ttfa_from_first_text_ms"]["n"] == 0:
        print("timbre loadtest: no utterance got any audio", file=sys.stderr)
        return 1
    return 0
