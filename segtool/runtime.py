"""Process-wide settings applied when the `segtool` command starts.

glibc's malloc hands every large block (weights cast for bf16 autocast, gradients, activations) back
to the kernel when it is freed, so the next training step takes fresh page faults for all of them:
on a 2-core machine that was 15-20% of a PPO update of SmolLM2-135M (README, PPO, "Speed").
Raising the mmap and trim thresholds keeps freed memory in the heap for reuse, as the jemalloc or
tcmalloc preloads that PyTorch's CPU tuning guide recommends would. Peak memory is unchanged; the
process simply does not return it to the system until it exits. ``SEGTOOL_MALLOC_TUNING=0`` turns
this off.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import sys

M_TRIM_THRESHOLD, M_TOP_PAD, M_MMAP_THRESHOLD = -1, -2, -3


def tune_allocator() -> bool:
    """Keep freed memory for reuse (Linux/glibc only); True when the settings were applied."""
    if os.environ.get("SEGTOOL_MALLOC_TUNING", "1") == "0" or not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # musl and other libcs have no mallopt
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    ok = mallopt(M_MMAP_THRESHOLD, 1 << 30)  # blocks below 1 GiB come from the heap, not fresh mmaps
    ok &= mallopt(M_TRIM_THRESHOLD, (1 << 31) - 1)  # do not give the heap's free top back to the kernel
    ok &= mallopt(M_TOP_PAD, 1 << 28)  # grow the heap in 256 MiB steps
    return bool(ok)
