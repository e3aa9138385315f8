"""Training on a CPU keeps its freed memory: glibc's ``malloc`` is told not to hand it back to the kernel.

A sandwich step allocates and frees the same large tensors every step (logits and their gradients of
``[tokens, vocab]``, MLP activations). By default glibc serves every block over its mmap threshold (at most 32 MiB)
with a fresh ``mmap`` and returns freed heap tops to the kernel, so each step page-faults its memory in again: a
fresh 200 MB tensor cost 47 ms against 6 ms reused, and the 2-core EPYC's recovery step fell from 12.6 s to 10.8 s
with the settings below (``nasbench bench train``). The process's resident set then stays at its peak, which a
training process reaches every step anyway.

Profiling does not use this: its ``memory_mb`` is the resident-set growth of a prefill, which reused memory would
hide; hence a context that restores glibc's defaults when training ends.
"""

from __future__ import annotations

import contextlib
import ctypes
import sys
from typing import Iterator

__all__ = ["freed_memory_kept"]

# mallopt parameters of glibc's <malloc.h> and their defaults
_M_TRIM_THRESHOLD, _M_MMAP_MAX = -1, -4
_DEFAULT_TRIM_THRESHOLD, _DEFAULT_MMAP_MAX = 128 * 1024, 65536
_TRIM_THRESHOLD = 2**31 - 1  # mallopt takes an int: keep up to 2 GiB of free heap top before trimming


def _libc():
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL("libc.so.6")
        libc.mallopt.argtypes, libc.mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
        libc.malloc_trim.argtypes, libc.malloc_trim.restype = [ctypes.c_size_t], ctypes.c_int
    except (OSError, AttributeError):  # musl or another libc: its allocator's defaults stay
        return None
    return libc


@contextlib.contextmanager
def freed_memory_kept() -> Iterator[bool]:
    """Inside: every allocation comes from the heap and freed memory stays for reuse (glibc on Linux; yields whether
    the settings took, elsewhere nothing changes). On exit glibc's defaults come back and the kept memory is returned,
    so a later ``memory_mb`` measurement in the same process sees a prefill's memory again."""
    libc = _libc()
    took = bool(libc is not None and libc.mallopt(_M_MMAP_MAX, 0) and libc.mallopt(_M_TRIM_THRESHOLD, _TRIM_THRESHOLD))
    try:
        yield took
    finally:
        if libc is not None:
            libc.mallopt(_M_MMAP_MAX, _DEFAULT_MMAP_MAX)
            libc.mallopt(_M_TRIM_THRESHOLD, _DEFAULT_TRIM_THRESHOLD)
            libc.malloc_trim(0)
