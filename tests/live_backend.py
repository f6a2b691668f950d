"""A real backend process on 127.0.0.1 for tests (the server, the client and the add-on)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from blender_addon.backend_process import backend_environment
from evaluation import harness  # plain Python: the Blender 5.2 environment has no siren_recon

from .paths import REPO

__all__ = [
    "BACKEND_PYTHON", "HEARTBEAT_TIMEOUT", "free_port", "run_two_jobs", "start_backend", "started_before_first_done",
    "wait_for_log",
]

HEARTBEAT_TIMEOUT = 3.0
BACKEND_PYTHON = os.environ.get("SIREN_BACKEND_PYTHON", sys.executable)
"""The interpreter that runs the backend: this one, unless the add-on's tests run in another
Python (Blender 5.2's), which then names the project's own environment here."""


free_port = harness.free_port


def start_backend(port: int, log_path, *extra: str) -> subprocess.Popen:
    """A CPU backend on ``port`` logging to ``log_path``; returns once it listens.

    Its kept results go to a ``results`` folder beside the log unless ``extra`` names another.
    """
    results = [] if "--results-dir" in extra else ["--results-dir", str(Path(log_path).parent / "results")]
    return harness.start_backend(f"tcp://127.0.0.1:{port}", log_path, "--device", "cpu", "--heartbeat-timeout",
                                 str(HEARTBEAT_TIMEOUT), *results, *extra, cwd=REPO, timeout=60,
                                 python=BACKEND_PYTHON, env=backend_environment())


def wait_for_log(log_path, text: str, timeout: float) -> float:
    """Seconds waited until ``text`` appears in the backend's log (the test fails after ``timeout``)."""
    try:
        return harness.wait_for_log(log_path, text, timeout)
    except TimeoutError as exc:
        raise AssertionError(str(exc)) from exc


def run_two_jobs(tmp_path, devices: str, points, normals, overrides: dict) -> list:
    """Submit the same job twice to a backend serving ``--devices devices``; every event until both end."""
    import signal

    from siren_recon.protocol import JobDone
    from siren_recon.protocol.client import Client

    port = free_port()
    process = start_backend(port, tmp_path / "log.txt", "--devices", devices)
    try:
        with Client(address=f"tcp://127.0.0.1:{port}") as client:
            for tag in ("a", "b"):
                client.submit(points, normals, overrides=overrides, tag=tag)
            events: list = []
            while sum(isinstance(e, JobDone) for e in events) < 2:
                events += client.poll(50)
                assert process.poll() is None
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=30)
    return events


def started_before_first_done(events: list) -> set:
    """The jobs that reported progress before any job finished."""
    from siren_recon.protocol import JobDone, Progress

    first_done = next(i for i, e in enumerate(events) if isinstance(e, JobDone))
    return {e.job for e in events[:first_done] if isinstance(e, Progress)}
