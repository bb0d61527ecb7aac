"""The figure of one load-test run (PNG, matplotlib's Agg backend; no display needed).

Four panels: TTFA histogram, TTFA CDF (both definitions), the playout buffer level of every session
over time with underruns marked, and server CPU % / RSS over time.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # before pyplot is imported: no display on servers and CI

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.axes import Axes

from loadtest.runner import LoadTestRun


def plot_run(run: LoadTestRun, path: Path) -> None:
    """Write the run's figure to ``path`` (PNG)."""
    fig, axes = plt.subplots(2, 2, figsize=(13, 8.5))
    config = run.config
    fig.suptitle(
        f"Timbre load test: {config.sessions} sessions, {config.duration_s:g} s, "
        f"{config.words_per_s:g} words/s, jitter buffer {config.jitter_buffer_ms:g} ms"
    )
    ttfa = [u.ttfa_ms for u in run.utterances if u.ttfa_ms is not None]
    ttfa_first = [
        u.ttfa_from_first_text_ms for u in run.utterances if u.ttfa_from_first_text_ms is not None
    ]
    _histogram(axes[0][0], ttfa, ttfa_first)
    _cdf(axes[0][1], ttfa, ttfa_first)
    _buffer_levels(axes[1][0], run)
    _server(axes[1][1], run)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _histogram(ax: Axes, ttfa: list[float], ttfa_first: list[float]) -> None:
    if ttfa or ttfa_first:
        bins = np.histogram_bin_edges(ttfa + ttfa_first, bins=40).tolist()
        ax.hist(ttfa, bins=bins, alpha=0.7, label="from first unit complete")
        ax.hist(ttfa_first, bins=bins, alpha=0.5, label="from first text")
        ax.legend()
    ax.set_title("Time to first audio (per utterance)")
    ax.set_xlabel("ms")
    ax.set_ylabel("utterances")


def _cdf(ax: Axes, ttfa: list[float], ttfa_first: list[float]) -> None:
    for values, label in ((ttfa, "from first unit complete"), (ttfa_first, "from first text")):
        if values:
            xs = np.sort(np.asarray(values))
            ax.step(xs, np.arange(1, len(xs) + 1) / len(xs), where="post", label=label)
    for q in (0.5, 0.95, 0.99):
        ax.axhline(q, color="grey", linewidth=0.5, linestyle=":")
    ax.set_title("TTFA CDF")
    ax.set_xlabel("ms")
    ax.set_ylim(0, 1.02)
    if ttfa or ttfa_first:
        ax.legend(loc="lower right")


def _buffer_levels(ax: Axes, run: LoadTestRun) -> None:
    cmap = plt.get_cmap("tab20")
    for outcome in run.outcomes:
        color = cmap(outcome.session % 20)
        for u in outcome.utterances:
            if u.level:
                ts, levels = zip(*u.level)
                ax.plot(ts, np.asarray(levels) * 1000.0, color=color, linewidth=0.7)
    underruns = [(t, s) for u in run.utterances for t, s in u.underruns]
    if underruns:
        ts, starved = zip(*underruns)
        ax.scatter(
            ts,
            np.asarray(starved) * 1000.0,
            color="red",
            marker="x",
            zorder=3,
            label=f"underrun ({len(underruns)}; y = starved ms)",
        )
        ax.legend(loc="upper right")
    ax.axvline(run.config.duration_s, color="grey", linestyle="--", linewidth=0.8)
    ax.set_title("Client playout buffer per session")
    ax.set_xlabel("s since start")
    ax.set_ylabel("buffered audio (ms)")


def _server(ax: Axes, run: LoadTestRun) -> None:
    ax.set_title(f"Server process (pid {run.server_pid})")
    ax.set_xlabel("s since start")
    if not run.server_samples:
        ax.text(
            0.5, 0.5, "no server process sampled", ha="center", va="center", transform=ax.transAxes
        )
        return
    ts = [s.at_s - run.started_s for s in run.server_samples]
    ax.plot(ts, [s.cpu_pct for s in run.server_samples], color="tab:blue", label="CPU %")
    ax.set_ylabel("CPU % (100 = one core)", color="tab:blue")
    rss_ax = ax.twinx()
    rss_ax.plot(ts, [s.rss_mb for s in run.server_samples], color="tab:orange", label="RSS")
    rss_ax.set_ylabel("RSS (MB)", color="tab:orange")
    ax.axvline(run.config.duration_s, color="grey", linestyle="--", linewidth=0.8)
