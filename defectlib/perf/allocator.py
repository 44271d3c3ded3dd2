"""Keep freed memory in the process: a speed lever for CPU training under glibc.

On Linux, PyTorch's CPU tensors come from glibc's ``malloc``. By default glibc serves large
blocks with ``mmap`` and hands freed memory back to the kernel, so every training step maps
fresh pages for its activations and gradients, and the kernel zeroes each page on first touch.
A training step is memory-bound, so those page faults can cost a large part of its time.

:func:`retain_freed_memory` turns that off for the whole process with ``mallopt``: no
``mmap`` for allocations (``M_MMAP_MAX = 0``) and no trimming of the heap
(``M_TRIM_THRESHOLD`` at its maximum). Freed blocks then stay in the heap and the next step
reuses them without a fault (a request that fits no freed block still grows the heap). The
arithmetic is the same, so results do not change. The cost is memory: the process keeps its
peak heap until it exits. The bench measures it as a speed lever (``retain_freed_memory``).

The setting lasts for the life of the process and cannot be undone exactly (glibc's default
thresholds adapt at run time), so a measurement *without* it needs a fresh process; the
bench (:mod:`defectlib.perf.bench`) takes every measurement in its own child process. On other
C libraries and operating systems the function does nothing and says so.

References
----------
glibc manual, "Malloc Tunable Parameters"; ``mallopt(3)``. The same effect is what Intel's and
PyTorch's CPU performance guides get by preloading jemalloc or tcmalloc.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import sys

__all__ = ["retain_freed_memory", "heap_policy"]

# mallopt parameter numbers from glibc's <malloc.h>.
_M_TRIM_THRESHOLD = -1
_M_MMAP_MAX = -4
_INT_MAX = 2**31 - 1

_state = {"policy": "system"}


@functools.cache
def _glibc():
    """glibc as a ctypes library, or None where the C library is not glibc."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        libc.gnu_get_libc_version  # only glibc has it (musl has a mallopt that does nothing)
        libc.mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
        libc.mallopt.restype = ctypes.c_int
    except (OSError, AttributeError):
        return None
    return libc


def heap_policy() -> str:
    """What this process does with freed memory.

    Returns
    -------
    str
        ``"retained"`` after :func:`retain_freed_memory` took effect; ``"system"`` otherwise
        (the C library's default behaviour).

    Examples
    --------
    >>> heap_policy() in ("retained", "system")
    True
    """
    return _state["policy"]


def retain_freed_memory() -> bool:
    """Keep freed memory in this process's heap instead of returning it to the kernel.

    Idempotent; affects the whole process (and processes forked from it later, such as
    DataLoader workers), for the rest of its life.

    Returns
    -------
    bool
        True when the setting is in effect (glibc on Linux), False where it is not available.
    """
    if _state["policy"] == "retained":
        return True
    libc = _glibc()
    if libc is None:
        return False
    # Trim threshold first: if the second call failed we would still have lost nothing.
    if libc.mallopt(_M_TRIM_THRESHOLD, _INT_MAX) != 1 or libc.mallopt(_M_MMAP_MAX, 0) != 1:
        return False
    _state["policy"] = "retained"
    return True
