"""Start a real `timbre serve` on a free loopback port for a benchmark (embedded defaults)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_server(data_dir: Path, port: int, config: Path | None) -> subprocess.Popen[bytes]:
    env = dict(os.environ, DATA_DIR=str(data_dir), PORT=str(port), HOST="127.0.0.1")
    if config is not None:
        env["TIMBRE_CONFIG"] = str(config.resolve())
    proc = subprocess.Popen([str(ROOT / ".venv/bin/timbre"), "serve"], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=2) as r:
                if r.status == 200:
                    return proc
        except OSError:
            pass
        if proc.poll() is not None:
            sys.exit("server exited during start-up")
        time.sleep(0.5)
    proc.kill()
    sys.exit("server not ready within 120 s")
