"""The worker's heap trim gives freed pages back to the kernel (bridge/live/heap.py)."""

from __future__ import annotations

import subprocess
import sys
import textwrap

PROBE = textwrap.dedent(
    """
    import json, os
    from bridge.live.heap import HeapTrimmer

    def rss_mb():
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20

    # 1500 blocks of 96 KB: under glibc's mmap threshold, so they live in the heap; free
    # all but the last, which pins the heap's top, as a live tensor does in the worker
    blocks = [bytearray(96 * 1024) for _ in range(1500)]
    pinned = blocks[-1]
    del blocks
    before = rss_mb()
    trimmer = HeapTrimmer(every_s=0.0)
    ran = trimmer.maybe(float("inf"))
    print(json.dumps({"before": before, "after": rss_mb(), "ran": ran, **trimmer.status()}))
    """
)


def test_a_trim_gives_the_freed_heap_pages_back_and_counts_itself():
    import json

    out = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, check=True, cwd=".")
    got = json.loads(out.stdout)
    assert got["ran"] and got["trims"] == 1 and got["released"] == 1
    assert got["before"] - got["after"] > 100.0, got  # of the ~140 MB freed


def test_it_waits_its_interval():
    from bridge.live.heap import HeapTrimmer

    trimmer = HeapTrimmer(every_s=3600.0)
    assert trimmer.available  # glibc
    assert not trimmer.maybe(0.0) and trimmer.trims == 0
