# SPDX-License-Identifier: MIT
"""Fixtures of the Python binding's tests: the package from this checkout,
and a real xbufd on the sim backend.

Overview
    `daemon` starts $XBUF_BIN_DIR/xbufd (default <repo>/build/bin/xbufd)
    once per session, as the allocator suite does: two sim GPUs of 1 MiB
    VRAM, 4 MiB pinned, 16 MiB pageable, promotion at once, its socket in a
    fresh private directory. It waits (bounded) until the socket accepts,
    and stops the daemon at the end (SIGTERM, then SIGKILL). `client` is a
    connection per test, closed after it, so every test starts with the
    daemon holding nothing of its.

Rules
    - A missing xbufd or libxbuf fails the tests that need them with the
      path it looked at; it never skips them.
    - Every wait is bounded; nothing asserts how long anything took.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "python"))

import xbuf  # noqa: E402  (after the path above)

KiB = 1024
MiB = 1024 * KiB

DAEMON_ARGS = [
    "--backend", "sim",
    "--sim-vram", "1M",
    "--pinned", "4M",
    "--pageable", "16M",
    "--promote-interval", "0",
    "--quiet",
]
START_TIMEOUT_S = 20.0
STOP_TIMEOUT_S = 10.0


def bin_dir() -> Path:
    return Path(os.environ.get("XBUF_BIN_DIR") or REPO / "build" / "bin")


def _accepts(path: str) -> bool:
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        s.connect(path)
        return True
    except OSError:
        return False
    finally:
        s.close()


class Daemon:
    def __init__(self, binary: Path, directory: str):
        self.socket = os.path.join(directory, "xbuf.sock")
        self.log_path = os.path.join(directory, "xbufd.log")
        self._log = open(self.log_path, "wb")
        self.proc = subprocess.Popen(
            [str(binary), *DAEMON_ARGS, "--socket", self.socket],
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )

    def log(self) -> str:
        self._log.flush()
        with open(self.log_path, "rb") as f:
            return f.read().decode("utf-8", "replace")

    def wait_up(self) -> None:
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                pytest.fail(f"xbufd exited with {self.proc.returncode} before listening; log:\n{self.log()}")
            if os.path.exists(self.socket) and _accepts(self.socket):
                return
            time.sleep(0.02)
        self.stop()
        pytest.fail(f"xbufd did not listen on {self.socket} within {START_TIMEOUT_S} s; log:\n{self.log()}")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(STOP_TIMEOUT_S)
        self._log.close()


@pytest.fixture(scope="session")
def daemon():
    binary = bin_dir() / "xbufd"
    if not binary.is_file():
        pytest.fail(f"no xbufd at {binary}: build it (cmake --build <dir> --target xbufd) and set XBUF_BIN_DIR")
    # Short and private: a Unix socket path has ~100 bytes, and xbufd wants
    # a directory only its uid can write.
    directory = tempfile.mkdtemp(prefix="xbuf-py-")
    d = Daemon(binary, directory)
    try:
        d.wait_up()
        yield d
    finally:
        d.stop()
        shutil.rmtree(directory, ignore_errors=True)


@pytest.fixture
def client(daemon):
    c = xbuf.connect(daemon.socket, "pytest")
    yield c
    c.close()


@pytest.fixture
def embedded():
    c = xbuf.open_embedded("sim", sim_devices=2, sim_vram=1 * MiB, pinned=4 * MiB, pageable=16 * MiB,
                           promote_interval_ms=0)
    yield c
    c.close()
