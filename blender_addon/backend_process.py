"""The backend process the add-on runs on this machine: its command, environment, log and run file (no bpy).

A local backend is the installed ``siren_recon`` run by Blender's own Python, or a command the
user gives. Its output goes to ``backend.log`` and its pid and address to ``backend.json`` in the
add-on's user folder, so that a backend left running by a Blender that crashed is found again:
reused when it answers, stopped when it does not.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from .child_python import backend_environment, child_environment, no_window_flags
from .pids import command_line, pid_alive, stop_pid

LOG_NAME = "backend.log"
RUN_NAME = "backend.json"
LOOPBACK = "127.0.0.1"


class LaunchError(ValueError):
    """A local backend that cannot be started; its text is one line for the user."""


def installed_environment(site_dir: str | os.PathLike, environ: dict[str, str] | None = None) -> dict[str, str]:
    """The environment for the installed backend: its ``site_dir`` is the whole module path (nothing
    from the user's own site-packages or Blender's path settings), as in the install's check."""
    return child_environment(environ, pythonpath=site_dir)


def installed_command(python: str) -> list[str]:
    """``python -m siren_recon serve`` as an argument list (``--bind`` is added at start)."""
    return [python, "-m", "siren_recon", "serve"]


@dataclass(frozen=True)
class Launch:
    """What starts a local backend: the arguments (without ``--bind``) and the environment."""

    args: list[str]
    env: dict[str, str]


def plan_launch(own_python: str, site_dir: str | os.PathLike | None, python: str = sys.executable) -> Launch:
    """The launch of a local backend: ``own_python`` (a Python that has siren-recon installed, in its
    own environment) when one is chosen, else the backend installed in ``site_dir`` run by
    ``python`` (Blender's own). An argument list either way: a path with spaces or backslashes is
    one argument, as it stands."""
    if own_python.strip():
        return Launch(installed_command(own_python.strip()), backend_environment())
    if site_dir is None:
        raise LaunchError("no local backend is installed: install it in the add-on's preferences "
                          "(or choose a Backend Python there)")
    return Launch(installed_command(python), installed_environment(site_dir))


def free_address() -> str:
    """``tcp://127.0.0.1:PORT`` on a port nothing listens on right now."""
    with socket.socket() as s:
        s.bind((LOOPBACK, 0))
        return f"tcp://{LOOPBACK}:{s.getsockname()[1]}"


def log_tail(path: str | os.PathLike, lines: int = 6) -> list[str]:
    """The last ``lines`` non-empty lines of a log file (none when it cannot be read)."""
    try:
        with open(path, "rb") as log:
            log.seek(0, os.SEEK_END)
            log.seek(max(0, log.tell() - 8192))
            text = log.read().decode(errors="replace")
    except OSError:
        return []
    return [line.rstrip() for line in text.splitlines() if line.strip()][-lines:]


@dataclass(frozen=True)
class RunRecord:
    """What ``backend.json`` says of a backend started earlier: its pid, address and executable."""

    pid: int
    address: str
    executable: str = ""

    def looks_alive(self) -> bool:
        """The process runs and is that backend: its command line names the address (on Windows,
        where only the executable's path can be read, it is the recorded executable)."""
        if not pid_alive(self.pid):
            return False
        seen = command_line(self.pid)
        if seen is None:
            return False
        if sys.platform == "win32":
            return bool(self.executable) and Path(seen).stem.lower() == Path(self.executable).stem.lower()
        return self.address in seen


def read_run_file(folder: str | os.PathLike) -> RunRecord | None:
    """The record of ``folder``'s run file, or ``None`` when there is none (or it is unreadable)."""
    try:
        data = json.loads((Path(folder) / RUN_NAME).read_text())
        return RunRecord(int(data["pid"]), str(data["address"]), str(data.get("executable", "")))
    except (OSError, ValueError, KeyError, TypeError):
        return None


def write_run_file(folder: str | os.PathLike, record: RunRecord) -> None:
    """Record a started backend in ``folder``'s run file."""
    (Path(folder) / RUN_NAME).write_text(json.dumps({"pid": record.pid, "address": record.address,
                                                           "executable": record.executable}))


def remove_run_file(folder: str | os.PathLike) -> None:
    """Forget the backend recorded in ``folder`` (no run file is no error)."""
    (Path(folder) / RUN_NAME).unlink(missing_ok=True)


class LocalBackend:
    """The one backend process this add-on runs on this machine: started by it, or found again
    from the run file of an earlier Blender (``adopted``, known only by its pid)."""

    def __init__(self) -> None:
        self.process: subprocess.Popen | None = None
        self.pid = 0
        self.address = ""
        self.folder: Path | None = None
        self.adopted = False
        self.exit_code: int | None = None
        """How the last process ended by itself (``-1`` for an adopted one: unknown); ``None`` if it did not."""

    @property
    def log_path(self) -> Path | None:
        """The log file of the process (``None`` before the first start)."""
        return None if self.folder is None else self.folder / LOG_NAME

    @property
    def running(self) -> bool:
        """Whether the process runs now."""
        if self.process is not None:
            return self.process.poll() is None
        return self.adopted and pid_alive(self.pid)

    def start(self, launch: Launch, folder: str | os.PathLike, address: str | None = None) -> str:
        """Run ``launch`` with ``--bind address`` (default: a free loopback port), output to the log
        file in ``folder``; returns the address at once (the backend answers once it has loaded)."""
        if self.running:
            return self.address
        self.stop()
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        address = address or free_address()
        args = [*launch.args, "--bind", address]
        try:
            with open(self.folder / LOG_NAME, "wb") as log:
                self.process = subprocess.Popen(
                    args, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, env=launch.env,
                    creationflags=no_window_flags(),
                )
        except OSError as exc:
            raise LaunchError(f"could not start {args[0]!r}: {exc}") from None
        self.pid, self.address, self.adopted, self.exit_code = self.process.pid, address, False, None
        write_run_file(self.folder, RunRecord(self.pid, address, args[0]))
        return address

    def adopt(self, folder: str | os.PathLike) -> str | None:
        """Take over the backend the run file in ``folder`` names, when it still runs; returns its
        address (connect to see whether it answers), or ``None`` (a stale run file is removed)."""
        if self.running:
            return self.address
        record = read_run_file(folder)
        if record is None:
            return None
        if not record.looks_alive():
            remove_run_file(folder)
            return None
        self.folder, self.process, self.pid, self.address = Path(folder), None, record.pid, record.address
        self.adopted, self.exit_code = True, None
        return record.address

    def poll_exit(self) -> bool:
        """Whether the process ended by itself since the last call (then :attr:`exit_code` says how)."""
        if self.pid == 0 or self.running:
            return False
        self.exit_code = self.process.returncode if self.process is not None else -1
        if self.folder is not None:
            remove_run_file(self.folder)
        self.process, self.pid, self.adopted = None, 0, False
        return True

    def exit_report(self, lines: int = 6) -> list[str]:
        """How it ended, then the last lines of its log."""
        status = "" if self.exit_code in (None, -1) else f" with status {self.exit_code}"
        tail = log_tail(self.log_path, lines) if self.log_path is not None else []
        return [f"the local backend exited{status}" + (f"; its log: {self.log_path}" if tail else ""), *tail]

    def stop(self, timeout: float = 10.0) -> None:
        """End the process (SIGTERM, killed after ``timeout`` seconds) and remove its run file."""
        if self.process is not None:
            if self.process.poll() is None:
                self.process.terminate()
                try:
                    self.process.wait(timeout)
                except subprocess.TimeoutExpired:
                    self.process.kill()
                    self.process.wait()
        elif self.adopted and self.pid:
            stop_pid(self.pid, timeout)
        if self.folder is not None and self.pid:
            record = read_run_file(self.folder)
            if record is not None and record.pid == self.pid:
                remove_run_file(self.folder)
        self.process, self.pid, self.adopted = None, 0, False
