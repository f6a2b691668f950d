"""Driving a real backend process from a script or a test: a free loopback port, a backend
started on it and waited for, the ``--json`` figure files the scripts write, and a process's peak
memory."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

LOOPBACK = "127.0.0.1"


def free_port() -> int:
    """A TCP port on the loopback that nothing listens on right now."""
    with socket.socket() as s:
        s.bind((LOOPBACK, 0))
        return int(s.getsockname()[1])


def wait_for_log(log_path: str | os.PathLike, text: str, timeout: float,
                 process: subprocess.Popen | None = None) -> float:
    """Seconds waited until ``text`` appears in a backend's log; raises ``TimeoutError`` after
    ``timeout`` seconds and ``RuntimeError`` when ``process`` ends first."""
    started = time.monotonic()
    while text not in Path(log_path).read_text():
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"the backend exited with status {process.returncode}; see {log_path}")
        if time.monotonic() - started > timeout:
            raise TimeoutError(f"{text!r} not logged within {timeout} s; see {log_path}")
        time.sleep(0.05)
    return time.monotonic() - started


def start_backend(bind: str, log_path: str | os.PathLike, *extra: str, cwd: str | os.PathLike | None = None,
                  timeout: float = 120.0, python: str | None = None,
                  env: dict[str, str] | None = None) -> subprocess.Popen:
    """``siren-recon serve --bind BIND EXTRA...`` in a new process logging to ``log_path``;
    returns once it listens. ``python`` runs it (default: this interpreter), in ``env`` (default:
    this environment)."""
    with open(log_path, "w") as log:
        process = subprocess.Popen([python or sys.executable, "-m", "siren_recon.cli", "serve", "--bind", bind, *extra],
                                   cwd=cwd, stderr=log, env=env)
    try:
        wait_for_log(log_path, "listening on", timeout, process)
    except BaseException:
        process.kill()
        process.wait()
        raise
    return process


def write_json(path: str | os.PathLike | None, figures: Any) -> None:
    """Write ``figures`` as indented JSON to ``path`` (its folder made as needed); nothing for ``None``."""
    if path is None:
        return
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(json.dumps(figures, indent=2))


def peak_rss_mb(pid: int | str = "self") -> float:
    """A process's peak resident memory so far (``VmHWM``, Linux), MB; this process's by default."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024.0
    return float("nan")
