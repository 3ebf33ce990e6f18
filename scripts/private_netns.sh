#!/usr/bin/env bash
# Run a command inside a private network namespace whose only interface is loopback.
#
# Why: Ableton Link finds peers by UDP multicast on every interface, so a test that opens a
# Link peer on the machine's own network would send packets off the machine. Inside this
# namespace the only interface is `lo` (up, multicast on, 224.0.0.0/4 routed to it), so Link
# peers still meet each other and nothing can leave. Tests that open network sockets check
# that they run in such a namespace (tests/netns.py) and skip otherwise.
#
#   scripts/private_netns.sh .venv/bin/python -m pytest -q     # what `make test` runs
#
# As root it uses `unshare -n`; as another user an unprivileged user namespace
# (`unshare -r -n`). Where neither is allowed it says so in one line and runs the command
# outside: the network tests then skip, and nothing is sent.
set -euo pipefail

if [ "${1:-}" = "--inside" ]; then
  shift
  ip link set lo up
  ip link set lo multicast on
  ip route add 224.0.0.0/4 dev lo
  exec "$@"
fi

if [ $# -eq 0 ]; then
  echo "usage: scripts/private_netns.sh COMMAND [ARGS...]" >&2
  exit 2
fi

if [ "$(id -u)" -eq 0 ]; then
  flags=(-n)
else
  flags=(-r -n)
fi
if command -v unshare >/dev/null && command -v ip >/dev/null && unshare "${flags[@]}" true 2>/dev/null; then
  exec unshare "${flags[@]}" bash "$0" --inside "$@"
fi
echo "private_netns: cannot make a private network namespace here (unshare ${flags[*]} refused or iproute2 missing); tests that open network sockets will skip" >&2
exec "$@"
