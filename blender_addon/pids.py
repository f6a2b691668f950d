"""Processes known only by their id (a backend left running by an earlier Blender): alive, what runs, stop.

Plain Python on Linux, macOS and Windows (no bpy, no psutil).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

WINDOWS = sys.platform == "win32"
STILL_ACTIVE = 259
PROCESS_QUERY_LIMITED_INFORMATION = 0x1000


def _windows_handle(pid: int):
    import ctypes

    kernel32 = ctypes.windll.kernel32  # type: ignore[attr-defined]
    return kernel32, kernel32.OpenProcess(PROCESS_QUERY_LIMITED_INFORMATION, False, pid)


def pid_alive(pid: int) -> bool:
    """Whether a process ``pid`` runs (a zombie, ended but not yet reaped, does not)."""
    if pid <= 0:
        return False
    if WINDOWS:
        import ctypes

        kernel32, handle = _windows_handle(pid)
        if not handle:
            return False
        try:
            code = ctypes.c_ulong()
            return bool(kernel32.GetExitCodeProcess(handle, ctypes.byref(code))) and code.value == STILL_ACTIVE
        finally:
            kernel32.CloseHandle(handle)
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's process: alive, and never ours
    stat = Path(f"/proc/{pid}/stat")
    try:
        return stat.read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return True  # no /proc (macOS): os.kill answered


def command_line(pid: int) -> str | None:
    """The command line of process ``pid`` as one string, the executable's path on Windows, or
    ``None`` when it cannot be read."""
    if WINDOWS:
        import ctypes

        kernel32, handle = _windows_handle(pid)
        if not handle:
            return None
        try:
            size = ctypes.c_ulong(32768)
            buffer = ctypes.create_unicode_buffer(size.value)
            if not kernel32.QueryFullProcessImageNameW(handle, 0, buffer, ctypes.byref(size)):
                return None
            return buffer.value
        finally:
            kernel32.CloseHandle(handle)
    proc = Path(f"/proc/{pid}/cmdline")
    if proc.exists():
        try:
            return proc.read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
        except OSError:
            return None
    try:
        result = subprocess.run(["ps", "-o", "command=", "-p", str(pid)], capture_output=True, text=True, timeout=5)
    except (OSError, subprocess.SubprocessError):
        return None
    return result.stdout.strip() or None


def stop_pid(pid: int, timeout: float = 10.0) -> bool:
    """Ask process ``pid`` to end (SIGTERM; on Windows it is ended at once), kill it after ``timeout``
    seconds; returns whether it is gone."""
    for sig in (signal.SIGTERM, getattr(signal, "SIGKILL", signal.SIGTERM)):
        try:
            os.kill(pid, sig)
        except (ProcessLookupError, PermissionError, OSError):
            return not pid_alive(pid)
        deadline = time.monotonic() + timeout
        while pid_alive(pid) and time.monotonic() < deadline:
            time.sleep(0.05)
        if not pid_alive(pid):
            return True
    return not pid_alive(pid)
