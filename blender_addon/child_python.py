"""Running Blender's Python as a child process: pip, and the installed backend's check (plain logic)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping
from pathlib import Path

from .backend_site import version_key

FIND_BUNDLED_PIP = (
    "import ensurepip, pathlib; "
    "print(next(iter(sorted(pathlib.Path(ensurepip.__file__).parent.glob('_bundled/pip-*.whl'))), ''))"
)


PYTHON_SETTINGS = ("PYTHONPATH", "PYTHONHOME")
"""Module path settings meant for another Python, never passed to a child."""


def backend_environment(environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment for a backend process: this one less its Python path settings.

    The backend runs in its own Python (often another version than Blender's), so module paths
    meant for Blender's Python must not reach it: a pyzmq built for Python 3.13 on its path
    breaks a Python 3.11 backend.
    """
    return {k: v for k, v in (os.environ if environ is None else environ).items() if k not in PYTHON_SETTINGS}


def child_environment(environ: Mapping[str, str] | None = None,
                      pythonpath: str | os.PathLike | None = None) -> dict[str, str]:
    """The environment for Blender's Python as a child (pip, the verify step, the installed
    backend): no user site, unbuffered UTF-8, no Python path settings but ``pythonpath``.

    ``PIP_REQUIRE_VIRTUALENV`` is turned off: it guards a system Python's own packages, and
    ``--target`` never touches them (Blender's Python is no virtual environment).
    """
    env = backend_environment(environ)
    env.update(PYTHONNOUSERSITE="1", PYTHONUNBUFFERED="1", PYTHONIOENCODING="utf-8", PIP_REQUIRE_VIRTUALENV="false")
    if pythonpath is not None:
        env["PYTHONPATH"] = str(pythonpath)
    return env


def no_window_flags() -> int:
    """``creationflags`` that keep a child from opening a console window on Windows (0 elsewhere)."""
    return getattr(subprocess, "CREATE_NO_WINDOW", 0) if sys.platform == "win32" else 0


def pip_command(python: str, environ: Mapping[str, str] | None = None) -> tuple[list[str], tuple[int, ...]] | None:
    """How to run pip with ``python``, and pip's version; ``None`` if it has no pip.

    ``python -m pip`` where pip is installed, else pip straight from the wheel ``ensurepip`` bundles
    (``python pip-X.whl/pip``), which needs no write access to Blender's folder.
    """
    env = child_environment(environ)

    def version_of(command: list[str]) -> tuple[int, ...] | None:
        try:
            probe = subprocess.run([*command, "--version"], capture_output=True, text=True, env=env, timeout=120,
                                   creationflags=no_window_flags())
        except (OSError, subprocess.TimeoutExpired):
            return None
        match = re.match(r"pip (\d+(?:\.\d+)*)", probe.stdout)
        return version_key(match[1]) if probe.returncode == 0 and match else None

    for command in ([python, "-m", "pip"], None):
        if command is None:
            try:
                found = subprocess.run([python, "-c", FIND_BUNDLED_PIP], capture_output=True, text=True, env=env,
                                       timeout=120, creationflags=no_window_flags()).stdout.strip()
            except (OSError, subprocess.TimeoutExpired):
                return None
            if not found:
                return None
            command = [python, str(Path(found) / "pip")]
        version = version_of(command)
        if version is not None:
            return command, version
    return None


def run_streaming(command: list[str], env: Mapping[str, str], on_line: Callable[[str], None],
                  cancel: threading.Event | None = None, timeout: float | None = None) -> int:
    """Run ``command`` (an argument list, no shell), handing each line of its output to ``on_line``.

    ``cancel`` (set from another thread) or ``timeout`` ends the process; returns its exit code.
    """
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                               env=dict(env), text=True, encoding="utf-8", errors="replace", bufsize=1,
                               creationflags=no_window_flags())
    deadline = None if timeout is None else time.monotonic() + timeout

    def watch() -> None:
        stop = threading.Event() if cancel is None else cancel
        while process.poll() is None:
            if stop.wait(0.2) or (deadline is not None and time.monotonic() > deadline):
                process.kill()
                return

    threading.Thread(target=watch, name="siren-install-watch", daemon=True).start()
    assert process.stdout is not None
    with process.stdout:
        for line in process.stdout:
            on_line(line.rstrip("\r\n"))
    return process.wait()
