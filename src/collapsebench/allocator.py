"""Memory-allocator settings for PyTorch on the CPU (glibc's malloc, Linux).

glibc serves a block above its mmap threshold (128 KiB at first, raised as such blocks are freed)
with a fresh ``mmap`` and gives it back with ``munmap`` when freed; it also trims the top of the heap
whenever 128 KiB are free there. PyTorch's CPU tensors (activations, gradients, optimizer
temporaries, the growing key/value cache of generation) are allocated and freed at every step, so
the process maps, unmaps and page-faults the same memory again and again: measured on the overhead
benchmark's hand-written loop (a 2-layer GPT-2, one iteration, one core), 4.4 million page faults and
9.5 s of system time in 100 s; with the thresholds below, 0.18 million and 0.6 s, and 10% less wall
time (``benchmarks/allocator.py`` measures it side by side).

:func:`tune` raises the mmap threshold to 32 MiB (the most glibc accepts) and the trim threshold to
256 MiB, fixed (glibc's dynamic adjustment is off once they are set), for this process (``mallopt``)
and for the processes it starts (the ``MALLOC_*_`` environment variables glibc reads at start:
phase workers, launcher ranks, SLURM jobs). The cost: freed memory up to the trim threshold stays
with the process (its peak RSS was 9% higher in the measurement above).

It does nothing when the user set either variable (their settings win), off Linux/glibc, or with
``COLLAPSEBENCH_MALLOC=system``.
"""

from __future__ import annotations

import ctypes
import os
import sys

MMAP_THRESHOLD = 32 * 2**20
TRIM_THRESHOLD = 256 * 2**20
# mallopt's parameter numbers (malloc.h) and the environment variables glibc reads for them
M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3
SETTINGS = ((M_MMAP_THRESHOLD, "MALLOC_MMAP_THRESHOLD_", MMAP_THRESHOLD),
            (M_TRIM_THRESHOLD, "MALLOC_TRIM_THRESHOLD_", TRIM_THRESHOLD))
OPT_OUT = "COLLAPSEBENCH_MALLOC"


def tune() -> bool:
    """Apply the settings (see the module docstring); whether this call applied them (False when the
    environment already holds them: set by the user, or by an earlier call)."""
    if not sys.platform.startswith("linux") or os.environ.get(OPT_OUT) == "system":
        return False
    if any(env in os.environ for _, env, _ in SETTINGS):
        return False
    try:
        mallopt = ctypes.CDLL("libc.so.6").mallopt
    except (OSError, AttributeError):  # not glibc (musl, ...): its allocator has no such thresholds
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    applied = all(mallopt(param, value) == 1 for param, _, value in SETTINGS)
    if applied:
        os.environ.update({env: str(value) for _, env, value in SETTINGS})
    return applied
