"""Give the generator process's free heap pages back to the kernel now and then.

What grows in a long set is not what the worker holds but the holes between it. glibc's
mallinfo2, sampled in the worker through a 25-minute soak (scripts/soak_jam.py): the
bytes in use stay flat (382-383 MB) while the heap around them holds 42 -> 53 MB of free
chunks, and RSS with them (885 -> 895 MB). Every piece allocates and frees tensors of
many sizes; glibc keeps what is freed for reuse, split and scattered, and returns only
the heap's top on its own. So the RSS a set gains is fragmentation, not a leak, and how
much depends on the mix of sizes (an earlier 30-minute run, below real time and so
rejoining often, gained +0.64 MB/min; mallinfo was not sampled in it).

`malloc_trim(0)` walks the free chunks and hands every whole page inside them back to
the kernel (madvise), moving nothing: the process keeps its addresses, the next
allocation of that size faults a zero page in. Run in the worker's idle time (between
pieces, never inside one), at most every `every_s`. Measured (30-minute soak, the
shipped LM): RSS 846 MB flat (-0.03 MB/min fitted, 5-minute peaks +0.008), ~48 MB under
the untrimmed run; 153 trims, 0.99 ms mean, 4.55 ms at most.

glibc only: elsewhere (musl, macOS) there is no malloc_trim and this does nothing.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import threading
import time

TRIM_EVERY_S = 10.0


def _malloc_trim():
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
    except OSError:
        return None
    fn = getattr(libc, "malloc_trim", None)
    if fn is not None:
        fn.argtypes, fn.restype = [ctypes.c_size_t], ctypes.c_int
    return fn


class HeapTrimmer:
    """`maybe(now)` trims when `every_s` has passed since the last trim; counts what it did.
    One per process (`process_trimmer`): `jamstream serve` runs a worker per plugin instance
    in threads of one process, and one heap wants one trim per interval, not one each."""

    def __init__(self, every_s: float = TRIM_EVERY_S):
        self.every_s = every_s
        self._trim = _malloc_trim()
        self._lock = threading.Lock()
        self._last = time.monotonic()
        self.trims = 0
        self.released = 0  # trims that gave memory back (malloc_trim returned 1)
        self.max_ms = 0.0
        self.total_ms = 0.0

    @property
    def available(self) -> bool:
        return self._trim is not None

    def maybe(self, now: float) -> bool:
        """Trim if it is time; True when it ran."""
        if self._trim is None or now - self._last < self.every_s or not self._lock.acquire(blocking=False):
            return False
        try:
            start = time.perf_counter()
            self.released += int(self._trim(0))
            took = (time.perf_counter() - start) * 1000.0
            self._last = time.monotonic()
            self.trims += 1
            self.total_ms += took
            self.max_ms = max(self.max_ms, took)
        finally:
            self._lock.release()
        return True

    def status(self) -> dict:
        return {
            "trims": self.trims,
            "released": self.released,
            "max_ms": round(self.max_ms, 2),
            "mean_ms": round(self.total_ms / self.trims, 2) if self.trims else 0.0,
        }


@functools.cache
def process_trimmer() -> HeapTrimmer:
    """This process's one trimmer."""
    return HeapTrimmer()
