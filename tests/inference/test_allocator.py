"""The allocator settings the PyTorch decoder takes: freed memory stays for reuse."""

from __future__ import annotations

import platform
import subprocess
import sys
from pathlib import Path

import pytest

from inference.allocator import retain_freed_memory

REPO = Path(__file__).resolve().parents[2]
FAULTS = """
import resource, sys
import numpy as np
sys.path.insert(0, {repo!r})
from inference.allocator import retain_freed_memory
print(retain_freed_memory({retain_mb}))
def window():  # tensors of 1-20 MB, three alive at a time, as a decoder window's steps
    held = []
    for mb in [1, 3, 7, 12, 20, 5, 9, 16, 2, 11]:
        held.append(np.ones((mb << 20) // 8))
        del held[:-3]
window()
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(5):
    window()
print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


def _faults(retain_mb: int) -> tuple[bool, int]:
    """Whether the settings took, and the page faults of five windows after the first, in a
    fresh process (the settings are process-wide and stay)."""
    out = subprocess.run([sys.executable, "-c", FAULTS.format(repo=str(REPO), retain_mb=retain_mb)],
                         capture_output=True, text=True, check=True).stdout.split()
    return out[0] == "True", int(out[1])


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="the settings are glibc's")
def test_freed_memory_is_reused_instead_of_faulted_in_again() -> None:
    took, kept = _faults(512)
    untouched, default = _faults(0)
    assert took and not untouched
    # 5 windows of 86 MB: glibc's defaults fault most of it in again (about 10,000 pages here)
    assert default > 2000
    assert kept < default / 10


@pytest.mark.parametrize("retain_mb, mmap_mb", [(-1, 32), (2048, 32), (512, 0), (512, 33)])
def test_settings_out_of_range_are_refused(retain_mb: int, mmap_mb: int) -> None:
    with pytest.raises(ValueError, match="retain_mb must be"):
        retain_freed_memory(retain_mb, mmap_mb)
