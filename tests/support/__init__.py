"""What the JACK tests share: a private dummy jackd, `jamstream jam` as a subprocess, the rig
that joins them with a HostSim as the DAW, and the click detector the metronome tests read.

tests/ is on sys.path (pytest puts a rootless conftest's folder there), so a test imports
`from support.rig import Rig`.
"""
