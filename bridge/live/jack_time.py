"""JACK's clock next to the system's: which CLOCK_MONOTONIC instant a JACK frame time is.

A clock that is not JACK's (Ableton Link, bridge/live/link.py) tells time in its own
microseconds; to put its beats on JACK frames something must relate the two clocks. On
the machines we measured, libjack2's `jack_get_time()` runs on CLOCK_MONOTONIC_RAW (as
does Link's clock on Linux) and CLOCK_MONOTONIC was ~0.25 s away from both - but JACK's
clock source is a server setting and Link's is per platform, so nothing here assumes two
clocks are equal: each is sampled back to back with CLOCK_MONOTONIC, the one clock
every process can read, and the instants are carried over in that.

JACK-Client wraps none of libjack's time functions, so a few lines of cffi declare them.
They need an open client in the calling process (`jack_get_time` without one crashed),
which is why the parent, not the generator process, posts the reference.
"""

from __future__ import annotations

import functools
import time

_CDEF = """
uint64_t jack_get_time(void);
uint64_t jack_frames_to_time(void *client, uint32_t frames);
uint32_t jack_time_to_frames(void *client, uint64_t usecs);
"""


@functools.cache
def libjack(cdef: str):
    """(ffi, lib): libjack (the library JACK-Client loaded) with declarations JACK-Client
    does not wrap; one handle per declaration set, made on first use."""
    import cffi
    import jack

    ffi = cffi.FFI()
    ffi.cdef(cdef)
    return ffi, ffi.dlopen(jack._libname)


class JackClock:
    """libjack's time functions for one open `jack.Client`."""

    def __init__(self, client):
        import jack

        ffi, self._lib = libjack(_CDEF)
        self.client = client
        self._ptr = ffi.cast("void *", int(jack._ffi.cast("uintptr_t", client._ptr)))

    def usecs(self) -> int:
        """JACK's clock now (µs): what `jack_frames_to_time` answers in."""
        return int(self._lib.jack_get_time())

    def frame_usecs(self, frame: int) -> int:
        """JACK's µs of a JACK frame time (its DLL's estimate; exact at cycle starts)."""
        return int(self._lib.jack_frames_to_time(self._ptr, frame & 0xFFFFFFFF))

    def mono_minus_jack_ns(self, tries: int = 5) -> int:
        """CLOCK_MONOTONIC minus JACK's clock, in ns, from the narrowest of `tries`
        back-to-back readings (a preempted reading is wide and loses)."""
        best = None
        for _ in range(tries):
            m0 = time.clock_gettime_ns(time.CLOCK_MONOTONIC)
            j = self.usecs()
            m1 = time.clock_gettime_ns(time.CLOCK_MONOTONIC)
            if best is None or m1 - m0 < best[0]:
                best = (m1 - m0, (m0 + m1) // 2 - j * 1000)
        return best[1]

    def reference(self) -> tuple[int, int]:
        """(JACK frame time of the latest cycle start, its CLOCK_MONOTONIC ns)."""
        frame = int(self.client.last_frame_time)
        return frame, self.frame_usecs(frame) * 1000 + self.mono_minus_jack_ns()


def post_reference(shared, clock: JackClock) -> None:
    """Publish `clock.reference()` for the generator process (ring.Shared.time_ref)."""
    frame, mono_ns = clock.reference()
    shared.post_time_ref(frame, mono_ns)
