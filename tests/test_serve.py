"""`jamstream serve` on its own: attach and detach, refusals, status, a second daemon, SIGTERM.

The plugin that normally attaches is tested under real hosts in tests/test_plugin_jalv.py;
here a test client speaks the same socket protocol, with the metronome so nothing loads
weights."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from support.serve import REPO, Client, Serve, attach_request

from bridge.serve.protocol import encode, request


@pytest.fixture
def serve(tmp_path):
    daemon = Serve(tmp_path)
    yield daemon
    daemon.stop()


def shm_exists(name: str) -> bool:
    return Path("/dev/shm", name).exists()


def test_attach_gets_a_block_a_ready_line_and_detach_frees_it(serve):
    client = Client(serve.socket, name="track 1")
    reply = client.reply
    assert reply["ok"] and reply["layout"] == 1 and reply["capacity"] & (reply["capacity"] - 1) == 0, reply
    assert shm_exists(reply["shm"])
    line = client.next_line()
    assert line["level"] == "note" and line["log"].startswith("ready:"), line
    status = serve.wait_for(lambda s: s["instances"] and s["instances"][0]["state"] == "playing", 10, "playing")
    inst = status["instances"][0]
    assert (inst["name"], inst["mode"], inst["rate"]) == ("track 1", "metronome", 48000), inst
    assert status["models"] == ["metronome"]
    client.close()
    serve.wait_for(lambda s: not s["instances"], 10, "the detach")
    assert not shm_exists(reply["shm"])


def test_two_instances_share_one_model_stack(serve):
    a = Client(serve.socket, name="a", preset="jazz-trio-bossa", seed=1)
    b = Client(serve.socket, name="b", preset="techno-dub", seed=2)
    assert a.reply["shm"] != b.reply["shm"]
    status = serve.wait_for(lambda s: [i["state"] for i in s["instances"]] == ["playing"] * 2, 15, "both playing")
    assert status["models"] == ["metronome"], status  # loaded once
    assert sorted(i["preset"] for i in status["instances"]) == ["Jazz trio <-> bossa", "Techno <-> dub"]
    a.close()
    b.close()


@pytest.mark.parametrize(
    ("over", "says"),
    [
        ({"preset": "no-such-preset"}, "no-such-preset"),
        ({"mode": "karaoke"}, "mode 'karaoke'"),
        ({"rate": 0}, "rate 0"),
        ({"block": "256"}, "block '256'"),
        ({"seed": -1}, "seed -1"),
    ],
)
def test_a_bad_attach_gets_one_line_and_the_daemon_serves_on(serve, over, says):
    client = Client(serve.socket, **over)
    assert client.reply["ok"] is False and says in client.reply["error"], client.reply
    assert "\n" not in client.reply["error"]
    assert client.next_line() is None  # and the connection is closed
    assert serve.status()["instances"] == []
    good = Client(serve.socket)
    assert good.reply["ok"]
    good.close()


def test_a_line_that_is_not_json_is_answered_not_fatal(serve):
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(10)
        sock.connect(str(serve.socket))
        sock.sendall(b"hello daemon\n")
        assert json.loads(sock.recv(4096).decode()) == {"ok": False, "error": "not a JSON object line"}
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.connect(str(serve.socket))
        sock.sendall(encode({"op": "dance"}))
        assert "unknown op 'dance'" in sock.recv(4096).decode()
    assert serve.status()["ok"]


def test_status_answers_every_poll_while_instances_come_and_go(serve):
    """A host polls status (the plugin's GUI, `jamstream status`) while tracks attach and
    detach; a detach that closed an instance's block before taking it out of the table
    broke the polls that described it in between (33 of ~400 in 15 churns, measured)."""
    failures: list[str] = []
    done = threading.Event()

    def poll() -> None:
        while not done.is_set():
            try:
                assert request(serve.socket, {"op": "status"}, timeout=5.0)["ok"]
            except Exception as exc:  # noqa: BLE001 - every way a poll can fail counts
                failures.append(repr(exc))

    pollers = [threading.Thread(target=poll) for _ in range(2)]
    for t in pollers:
        t.start()
    try:
        for k in range(15):
            client = Client(serve.socket, name=f"track {k}")
            assert client.next_line()["log"].startswith("ready:")
            client.close()
            time.sleep(0.05)
    finally:
        done.set()
        for t in pollers:
            t.join()
    assert not failures, failures[:3]
    serve.wait_for(lambda s: not s["instances"], 10, "the last detach")
    assert "Traceback" not in serve.log_text()


def test_a_plugin_that_hangs_up_before_its_reply_leaves_no_instance(serve):
    """Ardour restores a session's state after the plugin attached with its defaults: the
    plugin hangs up and attaches again. Whether the reply went out or not, nothing of the
    first attach may stay - it stayed as a block and a status row that never played."""
    blocks_before = set(Path("/dev/shm").iterdir())
    for k in range(1, 6):
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.connect(str(serve.socket))
            sock.sendall(encode(attach_request(name="restored")))
        deadline = time.monotonic() + 10
        while f"#{k} attached" not in serve.log_text():  # the daemon took it in
            assert time.monotonic() < deadline, serve.log_text()
            time.sleep(0.02)
    status = serve.wait_for(lambda s: not s["instances"], 10, "every hung-up attach to go")
    assert status["ok"]
    assert set(Path("/dev/shm").iterdir()) <= blocks_before, "a block stayed"
    assert "Traceback" not in serve.log_text()


def test_a_second_daemon_on_the_same_socket_refuses_in_one_line(serve):
    done = subprocess.run(
        [sys.executable, "-m", "bridge.cli", "serve", "--socket", str(serve.socket)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2, done
    assert done.stderr.strip().count("\n") == 0 and f"(pid {serve.proc.pid}) already serves" in done.stderr
    assert serve.status()["pid"] == serve.proc.pid


def test_status_cli_prints_json_and_a_summary(serve):
    client = Client(serve.socket, name="bass track")
    serve.wait_for(lambda s: s["instances"] and s["instances"][0]["state"] == "playing", 10, "playing")
    run = lambda *a: subprocess.run(  # noqa: E731
        [sys.executable, "-m", "bridge.cli", "serve", "--socket", str(serve.socket), "--status", *a],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
    )
    as_json = json.loads(run("--json").stdout)
    assert as_json["instances"][0]["name"] == "bass track"
    text = run().stdout
    assert "#1 bass track: Jazz trio <-> bossa (metronome, seed 0) playing" in text, text
    client.close()


def test_status_without_a_daemon_is_one_line_exit_2(tmp_path):
    done = subprocess.run(
        [sys.executable, "-m", "bridge.cli", "serve", "--socket", str(tmp_path / "none.sock"), "--status"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2 and done.stderr.startswith("jamstream: error: no jamstream daemon answers at")


def test_sigterm_frees_every_block_and_the_socket(tmp_path):
    serve = Serve(tmp_path)
    clients = [Client(serve.socket, name=f"i{k}") for k in range(2)]
    names = [c.reply["shm"] for c in clients]
    assert all(shm_exists(n) for n in names)
    serve.proc.send_signal(signal.SIGTERM)
    assert serve.proc.wait(30) == 0, serve.log_text()
    assert not serve.socket.exists()
    assert not any(shm_exists(n) for n in names)
    for c in clients:  # each plugin sees its daemon go: its log lines, then EOF
        while (line := c.next_line()) is not None:
            assert "log" in line, line
    serve.log.close()


def test_a_stale_socket_file_is_replaced(tmp_path):
    stale = tmp_path / "serve.sock"
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as dead:
        dead.bind(str(stale))  # bound, never listening: what a killed daemon leaves
    serve = Serve(tmp_path)
    assert serve.status()["pid"] == serve.proc.pid
    assert serve.stop() == 0
    assert os.path.exists(stale) is False


def test_two_model_instances_share_each_lm_pass(tmp_path):
    # --speculative too: a pass holding one instance alone speculates, shared passes batch.
    serve = Serve(tmp_path, "--speculative", timeout=60)
    try:
        a = Client(serve.socket, name="a", preset="jazz-trio-bossa", mode="model", seed=1)
        b = Client(serve.socket, name="b", preset="techno-dub", mode="model", seed=2)
        status = serve.wait_for(lambda s: [i["state"] for i in s["instances"]] == ["playing"] * 2, 240, "both ready")
        assert status["models"] == ["model"], status  # one stack, loaded once
        batching = status["batching"]
        # Both warm up at once on the shared stack: their frames ride the same passes.
        assert 0 < batching["passes"] < batching["stream_frames"], batching
        a.close()
        b.close()
    finally:
        serve.stop()
