"""A real backend process on 127.0.0.1 for tests (the server, the client and the add-on)."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from pathlib import Path

from .shapes import REPO

HEARTBEAT_TIMEOUT = 3.0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_backend(port: int, log_path, *extra: str) -> subprocess.Popen:
    """A backend process logging to ``log_path``; returns once it listens.

    Its kept results go to a ``results`` folder beside the log unless ``extra`` names another.
    """
    log = open(log_path, "w")
    results = [] if "--results-dir" in extra else ["--results-dir", str(Path(log_path).parent / "results")]
    process = subprocess.Popen(
        [sys.executable, "-m", "siren_recon.cli", "serve", "--bind", f"tcp://127.0.0.1:{port}", "--device", "cpu",
         "--heartbeat-timeout", str(HEARTBEAT_TIMEOUT), *results, *extra],
        cwd=REPO, stderr=log,
    )
    log.close()
    wait_for_log(log_path, "listening on", 60)
    return process


def wait_for_log(log_path, text: str, timeout: float) -> float:
    """Seconds waited until ``text`` appears in the backend's log."""
    started = time.monotonic()
    while text not in open(log_path).read():
        assert time.monotonic() - started < timeout, f"{text!r} not logged within {timeout} s"
        time.sleep(0.05)
    return time.monotonic() - started
