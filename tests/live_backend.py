"""A real backend process on 127.0.0.1 for tests (the server, the client and the add-on)."""

from __future__ import annotations

import subprocess
from pathlib import Path

from siren_recon import harness
from siren_recon.harness import free_port

from .shapes import REPO

__all__ = ["HEARTBEAT_TIMEOUT", "free_port", "start_backend", "wait_for_log"]

HEARTBEAT_TIMEOUT = 3.0


def start_backend(port: int, log_path, *extra: str) -> subprocess.Popen:
    """A CPU backend on ``port`` logging to ``log_path``; returns once it listens.

    Its kept results go to a ``results`` folder beside the log unless ``extra`` names another.
    """
    results = [] if "--results-dir" in extra else ["--results-dir", str(Path(log_path).parent / "results")]
    return harness.start_backend(f"tcp://127.0.0.1:{port}", log_path, "--device", "cpu", "--heartbeat-timeout",
                                 str(HEARTBEAT_TIMEOUT), *results, *extra, cwd=REPO, timeout=60)


def wait_for_log(log_path, text: str, timeout: float) -> float:
    """Seconds waited until ``text`` appears in the backend's log (the test fails after ``timeout``)."""
    try:
        return harness.wait_for_log(log_path, text, timeout)
    except TimeoutError as exc:
        raise AssertionError(str(exc)) from exc
