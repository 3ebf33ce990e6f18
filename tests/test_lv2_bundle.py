"""The LV2 instrument bundle (bridge/lv2): it builds, its Turtle validates against the LV2 spec,
LV2 hosts' tools find it with its ports, and it runs (silent: no generator daemon here).

The bundle is built from a copy of bridge/lv2 in a temporary folder, so the tree's build/ is untouched.
No test starts the daemon: JAMSTREAM_SOCKET points at a path nobody listens on and JAMSTREAM_BIN at
a program that does not exist, so the plugin's helper thread only logs that it cannot start it.
"""

from __future__ import annotations

import ctypes
import os
import shutil
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
LV2_SRC = REPO / "bridge" / "lv2"
URI = "urn:jamstream:lv2:instrument"
PORT_SYMBOLS = ["control", "out_l", "out_r", "latency", "freewheel"] + [f"macro{k}" for k in range(1, 9)]
SPEC_DIR = Path("/usr/lib/lv2")


def _need(*tools: str) -> None:
    missing = [t for t in tools if shutil.which(t) is None]
    if missing:
        pytest.skip(f"{', '.join(missing)} not installed (Debian: lv2-dev, lilv-utils, sordi, build-essential)")


@pytest.fixture(scope="module")
def bundle(tmp_path_factory) -> Path:
    """build/jamstream.lv2 of a fresh `make` in a copy of bridge/lv2."""
    _need("make", "cc")
    if not Path("/usr/include/lv2/core/lv2.h").exists():
        pytest.skip("LV2 headers not installed (Debian: lv2-dev)")
    src = tmp_path_factory.mktemp("lv2") / "lv2"
    shutil.copytree(LV2_SRC, src, ignore=shutil.ignore_patterns("build"))
    done = subprocess.run(["make", "-C", str(src)], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "warning" not in done.stderr, done.stderr
    return src / "build" / "jamstream.lv2"


@pytest.fixture
def host_env(bundle, tmp_path) -> dict:
    """An environment in which hosts find the bundle and the plugin finds no daemon and cannot start one."""
    env = dict(os.environ)
    env["LV2_PATH"] = os.pathsep.join([str(bundle.parent)] + ([str(SPEC_DIR)] if SPEC_DIR.is_dir() else []))
    env["JAMSTREAM_SOCKET"] = str(tmp_path / "nobody" / "serve.sock")
    env["JAMSTREAM_BIN"] = str(tmp_path / "no-such-jamstream")
    return env


def test_make_builds_the_bundle_and_clean_removes_it(bundle):
    assert sorted(p.name for p in bundle.iterdir()) == ["jamstream.so", "jamstream.ttl", "manifest.ttl"]
    done = subprocess.run(["make", "-C", str(bundle.parent.parent), "clean"], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert not bundle.parent.exists()
    done = subprocess.run(["make", "-C", str(bundle.parent.parent)], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert (bundle / "jamstream.so").is_file()


def test_bundle_turtle_passes_lv2_validate(bundle):
    _need("lv2_validate", "sord_validate")  # lv2_validate is a script around sord_validate (Debian: sordi)
    done = subprocess.run(
        ["lv2_validate", str(bundle / "manifest.ttl"), str(bundle / "jamstream.ttl")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    out = done.stdout + done.stderr
    assert done.returncode == 0, out
    assert "Found 0 errors" in out, out
    assert "warning" not in out.lower(), out


def test_lv2ls_and_lv2info_find_the_instrument_with_its_ports_in_order(host_env):
    _need("lv2ls", "lv2info")
    listed = subprocess.run(["lv2ls"], capture_output=True, text=True, env=host_env, timeout=60)
    assert URI in listed.stdout.split(), listed.stdout + listed.stderr
    info = subprocess.run(["lv2info", URI], capture_output=True, text=True, env=host_env, timeout=60)
    assert info.returncode == 0, info.stderr
    text = info.stdout
    assert "Has latency:       yes, reported by port 3" in text, text
    if SPEC_DIR.is_dir():  # the class names come from the spec bundles
        assert "Instrument Plugin" in text, text
    assert "http://lv2plug.in/ns/ext/state#interface" in text
    assert "http://lv2plug.in/ns/ext/urid#map" in text.split("Optional Features")[0]  # required, not optional
    symbols = [line.split(":", 1)[1].strip() for line in text.splitlines() if line.strip().startswith("Symbol:")]
    assert symbols == PORT_SYMBOLS, text
    blocks = text.split("\tPort ")[1:]
    assert "atom#AtomPort" in blocks[0] and "lv2core#control" in blocks[0]
    assert "lv2core#latency" in blocks[3] and "reportsLatency" in blocks[3] and "lv2core#integer" in blocks[3]
    assert "lv2core#freeWheeling" in blocks[4] and "lv2core#toggled" in blocks[4]
    for block in blocks[5:]:
        assert "InputPort" in block and "Minimum:     0.000000" in block and "Maximum:     1.000000" in block


def test_lv2bench_instantiates_and_runs_the_plugin_without_a_daemon(host_env):
    _need("lv2bench")
    done = subprocess.run(
        ["lv2bench", "-b", "256", "-n", "480000", URI], capture_output=True, text=True, env=host_env, timeout=120
    )
    assert done.returncode == 0, done.stdout + done.stderr
    rows = [line.split() for line in done.stdout.splitlines() if line.strip().endswith(URI)]
    assert rows, done.stdout + done.stderr  # lv2bench prints one line per plugin it ran
    assert float(rows[0][0]) < 2.0, done.stdout  # seconds for 10 s of audio: far below real time


# ------------------------------------------------------------------ a minimal host in ctypes

LV2_URID = ctypes.c_uint32
MapFn = ctypes.CFUNCTYPE(LV2_URID, ctypes.c_void_p, ctypes.c_char_p)


class _Map(ctypes.Structure):
    _fields_ = [("handle", ctypes.c_void_p), ("map", MapFn)]


class _Feature(ctypes.Structure):
    _fields_ = [("URI", ctypes.c_char_p), ("data", ctypes.c_void_p)]


class _Descriptor(ctypes.Structure):
    _fields_ = [
        ("URI", ctypes.c_char_p),
        (
            "instantiate",
            ctypes.CFUNCTYPE(
                ctypes.c_void_p,
                ctypes.c_void_p,
                ctypes.c_double,
                ctypes.c_char_p,
                ctypes.POINTER(ctypes.POINTER(_Feature)),
            ),
        ),
        ("connect_port", ctypes.CFUNCTYPE(None, ctypes.c_void_p, ctypes.c_uint32, ctypes.c_void_p)),
        ("activate", ctypes.CFUNCTYPE(None, ctypes.c_void_p)),
        ("run", ctypes.CFUNCTYPE(None, ctypes.c_void_p, ctypes.c_uint32)),
        ("deactivate", ctypes.c_void_p),
        ("cleanup", ctypes.CFUNCTYPE(None, ctypes.c_void_p)),
        ("extension_data", ctypes.CFUNCTYPE(ctypes.c_void_p, ctypes.c_char_p)),
    ]


def test_run_writes_silence_and_reports_its_fixed_latency_while_no_daemon_is_attached(bundle, host_env, monkeypatch):
    for key in ("JAMSTREAM_SOCKET", "JAMSTREAM_BIN"):
        monkeypatch.setenv(key, host_env[key])
    monkeypatch.setenv("JAMSTREAM_LATENCY_MS", "125")  # reported from instantiate on: a host reads it at load
    lib = ctypes.CDLL(str(bundle / "jamstream.so"))
    lib.lv2_descriptor.restype = ctypes.POINTER(_Descriptor)
    lib.lv2_descriptor.argtypes = [ctypes.c_uint32]
    desc = lib.lv2_descriptor(0).contents
    assert desc.URI.decode() == URI
    assert not lib.lv2_descriptor(1)

    urids: dict[bytes, int] = {}
    mapper = MapFn(lambda _h, uri: urids.setdefault(bytes(uri), len(urids) + 1))
    urid_map = _Map(None, mapper)
    feature = _Feature(b"http://lv2plug.in/ns/ext/urid#map", ctypes.cast(ctypes.pointer(urid_map), ctypes.c_void_p))
    features = (ctypes.POINTER(_Feature) * 2)(ctypes.pointer(feature), None)
    assert desc.extension_data(b"http://lv2plug.in/ns/ext/state#interface")

    handle = desc.instantiate(ctypes.byref(desc), 48000.0, str(bundle).encode() + b"/", features)
    assert handle
    try:
        n = 256
        seq = (ctypes.c_uint32 * 64)()
        seq[0], seq[1] = 8, mapper(None, b"http://lv2plug.in/ns/ext/atom#Sequence")  # empty: just the body header
        outs = [(ctypes.c_float * n)(*([1.0] * n)) for _ in range(2)]
        latency = ctypes.c_float(-1.0)
        controls = [ctypes.c_float(0.0) for _ in range(9)]  # freewheel, macro1..8
        desc.connect_port(handle, 0, ctypes.cast(seq, ctypes.c_void_p))
        desc.connect_port(handle, 1, ctypes.cast(outs[0], ctypes.c_void_p))
        desc.connect_port(handle, 2, ctypes.cast(outs[1], ctypes.c_void_p))
        desc.connect_port(handle, 3, ctypes.cast(ctypes.pointer(latency), ctypes.c_void_p))
        for i, c in enumerate(controls):
            desc.connect_port(handle, 4 + i, ctypes.cast(ctypes.pointer(c), ctypes.c_void_p))
        desc.activate(handle)
        for cycle in range(200):
            controls[1].value = (cycle % 10) / 10  # macro knobs move: nothing to post them to
            desc.run(handle, n)
            assert all(x == 0.0 for x in outs[0]) and all(x == 0.0 for x in outs[1])
            assert latency.value == 6000.0  # 125 ms at 48 kHz
    finally:
        desc.cleanup(handle)  # joins the helper thread: must return promptly


def install_plugin(target: Path) -> subprocess.CompletedProcess:
    """`jamstream plugin install --dir TARGET` as a user runs it."""
    import sys

    cmd = [sys.executable, "-m", "bridge.cli", "plugin", "install", "--dir", str(target)]
    return subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=300)


def test_plugin_install_puts_the_bundle_and_its_daemon_program_where_hosts_look(tmp_path):
    """`jamstream plugin install --dir D`: D/jamstream.lv2 with the built files, and a
    jamstream.conf naming this installation's program (what the plugin starts as `serve`)."""
    done = install_plugin(tmp_path / "lv2")
    assert done.returncode == 0, done.stderr
    bundle = tmp_path / "lv2" / "jamstream.lv2"
    assert {p.name for p in bundle.iterdir()} >= {"manifest.ttl", "jamstream.ttl", "jamstream.so", "jamstream.conf"}
    program = (bundle / "jamstream.conf").read_text().strip().removeprefix("bin=")
    assert os.access(program, os.X_OK) and program.endswith("jamstream"), program
    if shutil.which("lv2info"):
        info = subprocess.run(
            ["lv2info", URI], capture_output=True, text=True, env=dict(os.environ, LV2_PATH=str(tmp_path / "lv2"))
        )
        assert "jamstream" in info.stdout, info.stdout + info.stderr


def test_plugin_install_into_a_place_it_cannot_write_is_one_line_exit_2(tmp_path):
    blocked = tmp_path / "file"
    blocked.write_text("not a folder")
    done = install_plugin(blocked / "lv2")
    assert done.returncode == 2 and done.stderr.startswith("jamstream: error: --dir"), done.stderr
    assert done.stderr.strip().count("\n") == 0
