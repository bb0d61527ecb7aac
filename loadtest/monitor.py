"""Server resource sampling during a load test: CPU % and RSS of the server process (and its children).

The load generator and the server share the machine in our runs, so the figures come from ``psutil``
on the server's pid: given (``--server-pid``) or found as the process listening on the URL's port.
Sampling runs in a worker thread so ``/proc`` reads never stall the event loop that timestamps audio.
"""

from __future__ import annotations

import asyncio
import time
import urllib.parse
from dataclasses import dataclass

import psutil

from loadtest.stats import distribution

_MB = 1024 * 1024


@dataclass(frozen=True)
class ServerSample:
    """CPU % (100 = one core busy) since the previous sample and resident memory, at ``at_s``
    (monotonic seconds)."""

    at_s: float
    cpu_pct: float
    rss_mb: float


def url_port(url: str) -> int:
    """The TCP port of ``url`` (its scheme's default when it names none)."""
    parts = urllib.parse.urlsplit(url)
    if parts.port is not None:
        return parts.port
    return 443 if parts.scheme in ("wss", "https") else 80


def find_server_pid(url: str) -> int | None:
    """The pid of the process listening on ``url``'s port, or ``None`` when there is none or the
    operating system does not tell us (another user's process)."""
    port = url_port(url)
    try:
        connections = psutil.net_connections(kind="tcp")
    except (psutil.AccessDenied, OSError):
        return None
    for conn in connections:
        listening = conn.status == psutil.CONN_LISTEN and conn.laddr
        if listening and conn.laddr.port == port and conn.pid is not None:
            return int(conn.pid)
    return None


class ServerMonitor:
    """Samples one process tree every ``interval_s`` until ``stop()``.

    ``run()`` returns when stopped or when the process is gone; a pid that does not exist leaves
    ``samples`` empty (the report then shows ``None`` figures rather than failing the run).
    """

    def __init__(self, pid: int, interval_s: float = 0.5) -> None:
        self.pid = pid
        self.interval_s = interval_s
        self.samples: list[ServerSample] = []
        self._stop = asyncio.Event()
        self._procs: dict[int, psutil.Process] = {}

    def stop(self) -> None:
        self._stop.set()

    async def run(self) -> None:
        try:
            root = psutil.Process(self.pid)
        except psutil.Error:
            return
        self._procs[root.pid] = root
        await asyncio.to_thread(self._prime)
        while not self._stop.is_set():
            try:
                await asyncio.wait_for(self._stop.wait(), timeout=self.interval_s)
            except TimeoutError:
                pass
            sample = await asyncio.to_thread(self._sample, root)
            if sample is None:
                return
            self.samples.append(sample)

    def summary(self) -> dict[str, float | int | None]:
        cpu = [s.cpu_pct for s in self.samples]
        cpu_dist = distribution(cpu)
        return {
            "pid": self.pid,
            "samples": len(self.samples),
            "cpu_mean_pct": cpu_dist["mean"],
            "cpu_max_pct": cpu_dist["max"],
            "rss_max_mb": round(max(s.rss_mb for s in self.samples), 1) if self.samples else None,
        }

    def _prime(self) -> None:
        for proc in self._procs.values():
            try:
                proc.cpu_percent(None)  # the first call only starts the measurement
            except psutil.Error:
                pass

    def _sample(self, root: psutil.Process) -> ServerSample | None:
        if not root.is_running():
            return None
        try:
            for child in root.children(recursive=True):
                if child.pid not in self._procs:
                    self._procs[child.pid] = child
                    child.cpu_percent(None)
        except psutil.Error:
            pass
        cpu = 0.0
        rss = 0
        for pid, proc in list(self._procs.items()):
            try:
                with proc.oneshot():
                    cpu += proc.cpu_percent(None)
                    rss += proc.memory_info().rss
            except psutil.Error:
                del self._procs[pid]
        if root.pid not in self._procs:
            return None
        return ServerSample(at_s=time.monotonic(), cpu_pct=cpu, rss_mb=rss / _MB)
