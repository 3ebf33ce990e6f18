"""The namespace rule's own tools: the socket listing the jam tests rely on finds a real
internet socket, and the check that gates `network` tests reads this process's namespace."""

from __future__ import annotations

import subprocess
import sys

import pytest
from netns import interfaces, network_sockets, outside_reason


@pytest.mark.network  # it opens (and binds to 127.0.0.1) the socket it must then find
def test_socket_listing_finds_an_internet_socket_of_a_child_process():
    code = (
        "import socket, sys; s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind(('127.0.0.1', 0)); "
        "print('up', flush=True); sys.stdin.read()"
    )
    child = subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout.readline().strip() == "up"
        found = network_sockets(child.pid)
        assert len(found) == 1 and found[0].startswith("udp "), found
    finally:
        child.stdin.close()
        child.wait(timeout=10)


def test_the_gate_passes_exactly_when_loopback_is_the_only_interface():
    found = interfaces()
    assert "lo" in found
    assert (outside_reason() is None) == (found == ["lo"])
    if found != ["lo"]:
        assert "scripts/private_netns.sh" in outside_reason()
