# Copyright Contributors to the pyro_hfvae project.
# SPDX-License-Identifier: Apache-2.0
r"""
The CPU memory allocator's settings for training: keep freed memory for reuse.

A training step on the CPU allocates and frees the same large tensors every step
(activations, gradients released by the optimiser, the pairwise tables). glibc's ``malloc``
serves allocations above its mmap threshold (128 KiB at first, adjusted up to 32 MiB as
blocks are freed) with fresh ``mmap`` calls and returns freed memory at the top of the heap
to the system above its trim threshold, so every step pays the page faults of touching new
memory, about a microsecond per 4 KiB page. :func:`retain_freed_memory` sets both thresholds
so that blocks up to 32 MiB come from the heap and freed memory stays there: the default
``pyro-hfvae train`` job's step took 15.9 instead of 19.1 ms on this project's CPU (one torch
thread, batch 64, see :doc:`/performance`), at the same peak memory. PyTorch's CPU tuning guide
reaches the same end by preloading another allocator (jemalloc, tcmalloc); this needs none.

The setting is process-wide and lasts until the process ends; :class:`~pyro_hfvae.training.Trainer`
applies it when ``[training] retain_freed_memory`` is true (the default). Elsewhere (macOS,
Windows, musl) it does nothing.
"""

import ctypes
import ctypes.util
import logging

logger = logging.getLogger(__name__)

__all__ = [
    "MMAP_THRESHOLD",
    "TRIM_THRESHOLD",
    "retain_freed_memory",
]

#: Bytes from which glibc serves an allocation with its own ``mmap`` (32 MiB, glibc's largest on 64-bit systems).
MMAP_THRESHOLD = 32 * 2**20
#: Free bytes at the top of the heap above which glibc returns memory to the system (1 GiB).
TRIM_THRESHOLD = 2**30

# mallopt parameters (glibc's malloc.h).
_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3


def retain_freed_memory() -> bool:
    """
    Sets glibc ``malloc``'s mmap threshold to :data:`MMAP_THRESHOLD` and its trim threshold to
    :data:`TRIM_THRESHOLD`, so that memory freed by one training step is reused by the next
    instead of being returned to the system and faulted in again.

    :returns: whether the settings were applied (``False`` where the C library is not glibc).
    :rtype: bool

    Example::

        >>> import sys
        >>> retain_freed_memory() == sys.platform.startswith("linux")  # on glibc systems
        True
    """
    mallopt = _glibc_mallopt()
    if mallopt is None:
        logger.debug("retain_freed_memory: the C library has no glibc mallopt; nothing changed")
        return False
    applied = bool(mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD)) and bool(mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD))
    if not applied:
        logger.warning("glibc's mallopt refused the mmap threshold %d or the trim threshold %d; the allocator keeps "
                       "its defaults", MMAP_THRESHOLD, TRIM_THRESHOLD)
    return applied


def _glibc_mallopt():
    """glibc's ``mallopt(int, int)``, or ``None`` where the C library is not glibc."""
    name = ctypes.util.find_library("c")
    if name is None:
        return None
    try:
        libc = ctypes.CDLL(name)
        libc.gnu_get_libc_version  # glibc only: musl and the BSDs lack it
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return None
    mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
    mallopt.restype = ctypes.c_int
    return mallopt
