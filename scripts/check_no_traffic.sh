#!/usr/bin/env bash
# Proof that the test suite sends nothing off the machine (root only): make an outer network
# namespace with an interface that has an address and a default route (what a real
# machine offers a careless multicast or a hard-coded address), capture on it with tcpdump
# for the whole of `make test`, and report the packets seen. `make test` itself makes its
# own loopback-only namespace inside this one, so a test that escaped it would show here.
#
#   bash scripts/check_no_traffic.sh [PYTEST ARGS...]      # e.g. -k link
set -euo pipefail
cd "$(dirname "$0")/.."
command -v tcpdump >/dev/null || { apt-get install -y -qq tcpdump >/dev/null; }
bash scripts/setup.sh  # the registries are reachable only out here, before the namespaces
pcap=${PCAP:-/tmp/jamstream-test-traffic.pcap}
rm -f "$pcap"
args=$(printf '%q ' "$@")
unshare -n bash -c "
  set -e
  ip link set lo up
  # a veth pair (gVisor has no dummy driver): what leaves nic0 reaches only its idle peer
  ip link add nic0 type veth peer name nic0-peer
  # no IPv6 on the pair: its own address set-up (DAD, router solicitations) is not the tests'
  sysctl -qw net.ipv6.conf.nic0.disable_ipv6=1 net.ipv6.conf.nic0-peer.disable_ipv6=1
  ip addr add 198.51.100.7/24 dev nic0
  ip link set nic0-peer up
  ip link set nic0 up
  ip link set nic0 multicast on
  ip route add default dev nic0
  tcpdump -i nic0 -n -U -w '$pcap' 2>/dev/null & dump=\$!
  sleep 1
  # control: one datagram from outside the test namespace must show in the capture
  python3 -c \"import socket; socket.socket(socket.AF_INET, socket.SOCK_DGRAM).sendto(b'control', ('239.255.0.1', 9))\"
  rc=0
  if [ -n '$args' ]; then bash scripts/private_netns.sh .venv/bin/python -m pytest -q $args || rc=\$?
  else make test || rc=\$?; fi
  sleep 1; kill \$dump; wait \$dump 2>/dev/null || true
  echo \"tests exit code: \$rc\"
"
control=$(tcpdump -r "$pcap" -n 'dst host 239.255.0.1' 2>/dev/null | wc -l)
n=$(tcpdump -r "$pcap" -n 'not dst host 239.255.0.1' 2>/dev/null | wc -l)
echo "control datagram seen: $control; packets from the tests on the outer interface: $n ($pcap)"
[ "$control" -ge 1 ] && [ "$n" -eq 0 ]
