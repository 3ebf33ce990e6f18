"""Takes that a loaded machine spoiled, and the retake that tells them from a real fault.

A recording test measures what the plugin or the bridge played, to the millisecond. When
JACK misses a deadline during the test - an xrun, or a cycle the recording client was too
late for - the take itself is broken: a period of the music is not in it (seen in CI: one
beat gone and the next heard 256 frames late, the recorder's skipped period), whatever the
code under test did. Such a failure says nothing about that code, so the test runs again.
A failure without a stall fails as it always did, and a test whose every take stalled is
skipped with what was seen, as test_jam_model skips a take the CPU could not keep up with.
Not for a test that stalls JACK on purpose: every take of it would count as spoiled.
"""

from __future__ import annotations

import functools

import pytest


def stall_seen(host, xruns_before: int) -> str | None:
    """What JACK did wrong since `xruns_before` (HostSim.xruns then), or None."""
    xruns, skipped = host.xruns - xruns_before, host.skipped_periods()
    if xruns or skipped:
        return f"{xruns} xruns, {skipped} periods missing from the recording"
    return None


def retake_when_jack_stalled(fixture: str = "rig", takes: int = 3):
    """Run a recording test again (at most `takes` times in all) when it failed and JACK
    stalled while it ran; `fixture` names the argument whose `.host` is the recording HostSim."""

    def wrap(test):
        @functools.wraps(test)
        def run(*args, **kwargs):
            rig = kwargs[fixture]
            seen = []
            for attempt in range(1, takes + 1):
                host = rig.host
                xruns = host.xruns
                try:
                    return test(*args, **kwargs)
                except AssertionError as failure:
                    stall = stall_seen(host, xruns)
                    if stall is None:
                        raise
                    seen.append(f"take {attempt}: {stall} ({str(failure).splitlines()[0][:160]})")
                    print(f"retaking: JACK stalled during {seen[-1]}")
            why = "JACK stalled during every take, so they measure the machine, not the code: "
            pytest.skip(why + " | ".join(seen))

        return run

    return wrap
