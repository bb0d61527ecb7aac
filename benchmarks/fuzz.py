"""The security fuzz suite at benchmark strength: every property-based fuzz test of
``tests/security`` (protocol cores and HTTP handlers) with ``--examples`` cases each (10,000 by
default; ``make test`` runs a few hundred), then a table of the cases each test ran and its wall
time.

    .venv/bin/python -m benchmarks.fuzz                       # 10,000 cases per target
    .venv/bin/python -m benchmarks.fuzz --examples 2000 --json fuzz.json -k rest

Hypothesis' ``max_examples`` is an upper bound: a target whose input space is smaller than that
runs out of distinct cases first, so the table reports what really ran (counted in each test).
Exit status is pytest's: non-zero if any property failed (the failing example is printed).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
FUZZ_TESTS = ["tests/security/test_fuzz_protocols.py", "tests/security/test_fuzz_rest.py"]


def run(examples: int, select: str | None,
        report: Path | None = None) -> tuple[int, list[dict[str, object]], float]:
    """Run the fuzz tests; returns (pytest's exit status, one record per test, wall seconds).
    Each test's record is appended to ``report`` (JSON lines) as soon as it finishes."""
    with tempfile.TemporaryDirectory() as tmp:
        report = report or Path(tmp) / "fuzz.jsonl"
        report.unlink(missing_ok=True)
        env = {**os.environ, "TIMBRE_FUZZ_EXAMPLES": str(examples),
               "TIMBRE_FUZZ_REPORT": str(report)}
        command = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *FUZZ_TESTS]
        if select:
            command += ["-k", select]
        started = time.perf_counter()
        status = subprocess.call(command, cwd=ROOT, env=env)
        wall = time.perf_counter() - started
        records = [json.loads(line) for line in report.read_text().splitlines()] \
            if report.exists() else []
    return status, records, wall


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--examples", type=int, default=10_000, help="cases per fuzz test")
    parser.add_argument("-k", dest="select", default=None, help="pytest -k expression")
    parser.add_argument("--json", type=Path, default=None,
                        help="write the table as JSON (and each test's line, as it finishes, to "
                             "the same name with .jsonl)")
    args = parser.parse_args(argv)
    jsonl = args.json.with_suffix(".jsonl") if args.json is not None else None
    status, records, wall = run(args.examples, args.select, jsonl)
    print(f"\n{'test':<80} {'cases':>8} {'seconds':>9}")
    for record in records:
        name = str(record["test"]).split("::")[-1]
        print(f"{name:<80} {record['cases']:>8} {record['seconds']:>9}")
    total = sum(int(str(r["cases"])) for r in records)
    print(f"{'total (wall time includes server start-up)':<80} {total:>8} {wall:>9.1f}")
    if args.json is not None:
        args.json.write_text(json.dumps({"examples": args.examples, "wall_s": round(wall, 1),
                                         "exit_status": status, "tests": records}, indent=2))
    return status


if __name__ == "__main__":
    sys.exit(main())
