"""A backend started from Blender ("Start local backend"), and stopped with it (no bpy)."""

from __future__ import annotations

import os
import shlex
import subprocess

PYTHON_SETTINGS = ("PYTHONPATH", "PYTHONHOME")


def backend_environment(environ: dict[str, str] | None = None) -> dict[str, str]:
    """The environment for a backend process: this one less its Python path settings.

    The backend runs in its own Python (often another version than Blender's), so module paths
    meant for Blender's Python must not reach it: a pyzmq built for Python 3.13 on its path
    breaks a Python 3.11 backend.
    """
    return {k: v for k, v in (os.environ if environ is None else environ).items() if k not in PYTHON_SETTINGS}


class LocalBackend:
    """Runs ``command --bind address`` as a child process."""

    def __init__(self) -> None:
        self.process: subprocess.Popen | None = None

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def start(self, command: str, address: str) -> None:
        if self.running:
            return
        args = shlex.split(command)
        if not args:
            raise ValueError("the backend command is empty")
        try:
            self.process = subprocess.Popen(args + ["--bind", address], stdin=subprocess.DEVNULL,
                                            env=backend_environment())
        except OSError as exc:
            raise ValueError(f"could not start {args[0]!r}: {exc}") from exc

    def stop(self, timeout: float = 10.0) -> None:
        """Ask the backend to shut down (SIGTERM), then kill it if it lingers."""
        if self.process is None:
            return
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None
