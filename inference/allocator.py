"""Keep the memory a decoder window frees for the next window, instead of handing it back to the
operating system and faulting it in again.

PyTorch's CPU tensors come from the C library's ``malloc``. glibc serves a large block (from
128 KiB, rising with what the process frees) with its own ``mmap`` and unmaps it on ``free``,
and it returns the free top of a heap to the system past 128 KiB. Kokoro's decoder allocates
and frees tensors of 1-20 MB on every step of a window: each comes back as fresh pages, and the
kernel zeroes every page on first touch. Measured on 2 cores (docs/benchmarks.md, "Faster
int8 windows"): 17,000-19,000 minor page faults per window of 48-176 frames (about 56,000 on a
lone 176-frame window), and 0.7-0.8 s of system CPU time per 20 windows, 3-4 % of the
decoder's CPU. With blocks below ``mmap_mb`` served from the heap and up to ``retain_mb`` of
free memory kept there, a window reuses the last one's pages: 4-270 faults per window and
0.04-0.07 s of system time. The cost is resident memory: that much more stays mapped after a
window (150-300 MB measured with two lanes).

The settings are the C library's and process-wide (``mallopt``). On a C library other than
glibc nothing is changed.
"""

from __future__ import annotations

import ctypes
import platform

_M_TRIM_THRESHOLD = -1
_M_TOP_PAD = -2
_M_MMAP_THRESHOLD = -3
_MMAP_THRESHOLD_MAX_MB = 32
"""glibc refuses an ``mmap`` threshold above 32 MiB on 64-bit systems."""


def retain_freed_memory(retain_mb: int, mmap_mb: int = _MMAP_THRESHOLD_MAX_MB) -> bool:
    """Serve blocks below ``mmap_mb`` MiB from the heap and keep up to ``retain_mb`` MiB of freed
    memory there (a heap grows by at least ``retain_mb`` / 8). Returns whether the C library
    took the settings: False off glibc, or with ``retain_mb`` 0 (nothing is changed)."""
    if not 0 <= retain_mb < 2048 or not 0 < mmap_mb <= _MMAP_THRESHOLD_MAX_MB:
        raise ValueError(f"retain_mb must be 0-2047 and mmap_mb 1-{_MMAP_THRESHOLD_MAX_MB}")
    if retain_mb == 0 or platform.libc_ver()[0] != "glibc":
        return False
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return False
    settings = ((_M_MMAP_THRESHOLD, mmap_mb << 20), (_M_TRIM_THRESHOLD, retain_mb << 20),
                (_M_TOP_PAD, (retain_mb << 20) // 8))
    return all(mallopt(option, value) == 1 for option, value in settings)
