"""Where a test may open a network socket: only inside a private network namespace whose
one interface is loopback (scripts/private_netns.sh makes one; `make test` runs pytest in it).

Ableton Link multicasts to every interface it finds, and torchrun's rendezvous and gloo bind
TCP ports, so outside such a namespace those tests skip rather than send anything.
"""

from __future__ import annotations

import os
import socket
import sys
from pathlib import Path

SCRIPT = "scripts/private_netns.sh"


def interfaces(pid: int | str = "self") -> list[str]:
    """The network interfaces of a process's own namespace (/proc/PID/net/dev follows the
    process's namespace; /sys/class/net follows the mount's, so it would lie here)."""
    rows = Path(f"/proc/{pid}/net/dev").read_text().splitlines()[2:]
    return sorted(row.split(":", 1)[0].strip() for row in rows if ":" in row)


def outside_reason() -> str | None:
    """None inside a loopback-only namespace; otherwise the one-line reason to skip."""
    try:
        found = interfaces()
    except OSError as e:
        return f"cannot list network interfaces ({e}); run the tests via {SCRIPT} (make test does)"
    if found == ["lo"]:
        return None
    return (
        f"opens network sockets, so it runs only in a private loopback-only network namespace "
        f"(interfaces here: {', '.join(found)}); run the tests via {SCRIPT} (make test does)"
    )


def install_socket_guard() -> None:
    """Outside the namespace, refuse any internet socket this test process tries to open
    (Python's `socket.__new__` audit event), so a test that forgot its marker fails
    instead of sending. Unix sockets (JACK, asyncio's self-pipe) are unaffected."""
    if outside_reason() is None:
        return
    inet = {socket.AF_INET, socket.AF_INET6}

    def hook(event: str, args: tuple) -> None:
        if event == "socket.__new__" and len(args) > 1 and args[1] in inet:
            raise PermissionError(
                f"a test opened an internet socket outside a private network namespace; "
                f"mark it @pytest.mark.network and run the tests via {SCRIPT}"
            )

    sys.addaudithook(hook)


def network_sockets(pid: int) -> list[str]:
    """The internet sockets (tcp, udp, raw, v4 and v6) among a process's open files, as
    'proto inode' strings: a socket fd's inode looked up in its namespace's tables."""
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            target = os.readlink(fd)
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
    found = []
    for proto in ("tcp", "tcp6", "udp", "udp6", "raw", "raw6", "udplite", "udplite6"):
        table = Path(f"/proc/{pid}/net/{proto}")
        if not table.exists():
            continue
        for row in table.read_text().splitlines()[1:]:
            cols = row.split()
            if len(cols) > 9 and cols[9] in inodes:
                found.append(f"{proto} {cols[9]}")
    return found


def process_tree(pid: int) -> list[int]:
    """A process and all its descendants (from /proc/*/stat parent links)."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            text = stat.read_text()
        except OSError:
            continue
        ppid = int(text.rsplit(")", 1)[1].split()[1])
        children.setdefault(ppid, []).append(int(stat.parent.name))
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        todo.extend(children.get(p, []))
    return out
