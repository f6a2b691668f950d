"""Installing the siren-recon backend into the extension's user folder with Blender's own Python and pip.

Plain logic: no bpy, no torch, nothing of the backend is imported here (the check runs in a child
process). The backend comes as a wheel inside the add-on's zip; pip fetches its dependencies (torch
among them) from the machine's configured indexes, the PyTorch index for the CPU or CUDA build, or a
local wheel folder. A failed, cancelled or interrupted install never leaves a half-filled ``site``
(:mod:`.backend_site`): pip writes into a fresh staging folder that replaces ``site`` only once the
backend in it has imported and fitted a sphere.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path

from .backend_site import (
    RECORD_FILE,
    SITE_FOLDER,
    InstallBusy,
    InstallLock,
    InstallRecord,
    backend_root,
    log_path,
    remove_leftovers,
    swap_into_place,
    tree_size,
    wheel_version,
)
from .child_python import child_environment, pip_command, run_streaming
from .pip_output import PipProgress, classify_failure, is_progress

DEVICES = ("auto", "cpu", "cuda")
DISK_NEEDED = {"cpu": 1_000_000_000, "cuda": 4_500_000_000}
"""Bytes an install takes, about: torch is most of it (the CUDA build brings the CUDA libraries)."""
PYTORCH_CPU_INDEX = "https://download.pytorch.org/whl/cpu"
PYTORCH_CUDA_INDEX = "https://download.pytorch.org/whl/cu128"
"""Windows only: PyPI's Windows torch is the CPU build, Linux's is the CUDA one already."""
VERIFY_TIMEOUT = 900.0
RAW_PROGRESS_PIP = (24, 1)
"""The first pip with ``--progress-bar raw`` (``Progress N of M`` lines, easy to read)."""

VERIFY_CODE = """\
import json, sys
import numpy as np
import torch
import siren_recon
from siren_recon import ReconstructionConfig, apply_overrides, reconstruct_points

normals = np.random.default_rng(0).normal(size=(2000, 3))
normals /= np.linalg.norm(normals, axis=1, keepdims=True)
config = apply_overrides(ReconstructionConfig(), {
    "train.iterations": 20, "train.device": "cpu", "train.compile": "off", "preview.enabled": False,
    "model.hidden_features": 32, "model.hidden_layers": 2, "mesh.resolution": 32, "mesh.trim": "off",
    "sampling.surface_points": 1000, "sampling.box_points": 500, "sampling.near_points": 500,
})
result = reconstruct_points(0.5 * normals, normals, config)
print(json.dumps({
    "version": siren_recon.__version__, "python": "%d.%d" % sys.version_info[:2], "torch": torch.__version__,
    "cuda_build": torch.version.cuda, "cuda_available": torch.cuda.is_available(), "faces": int(len(result.faces)),
    "files": [siren_recon.__file__, torch.__file__, np.__file__],
}))
"""
"""The verify step: import the installed backend and fit a sphere for 20 steps on the CPU (seconds)."""


@dataclass(frozen=True)
class InstallOptions:
    """Where pip looks (the preferences' index URL, extra index URL, local wheel folder) and which torch build."""

    device: str = "auto"
    index_url: str = ""
    extra_index_url: str = ""
    find_links: str = ""
    local_only: bool = False
    """``--no-index``: only the local wheel folder (``find_links``) is used."""
    retries: int | None = None
    """pip's ``--retries``; ``None`` keeps pip's configured number."""


@dataclass(frozen=True)
class InstallOutcome:
    """How an install ended: ``line`` is the one line for the user (a failure's names the log)."""

    ok: bool
    line: str
    log: Path
    record: InstallRecord | None = None
    seconds: float = 0.0
    size: int = 0


def nvidia_driver_present() -> bool:
    """Whether an NVIDIA driver is installed: ``nvidia-smi`` on the PATH or the driver's library."""
    if shutil.which("nvidia-smi"):
        return True
    if sys.platform == "win32":
        return (Path(os.environ.get("SystemRoot", r"C:\Windows")) / "System32" / "nvcuda.dll").exists()
    if sys.platform.startswith("linux"):
        libraries = ("/proc/driver/nvidia/version", "/usr/lib/x86_64-linux-gnu/libcuda.so.1", "/usr/lib64/libcuda.so.1",
                     "/usr/lib/aarch64-linux-gnu/libcuda.so.1", "/usr/lib/wsl/lib/libcuda.so.1")
        return any(Path(path).exists() for path in libraries)
    return False


def resolve_device(choice: str, platform: str = sys.platform, driver: bool | None = None) -> str:
    """``cpu`` or ``cuda`` for a device choice (``auto``: CUDA where an NVIDIA driver is, never on macOS)."""
    choice = choice.lower()
    if choice not in DEVICES:
        raise ValueError(f"device must be one of {', '.join(DEVICES)}, not {choice!r}")
    if choice != "auto":
        return choice
    if platform == "darwin":
        return "cpu"
    return "cuda" if (nvidia_driver_present() if driver is None else driver) else "cpu"


def torch_index(device: str, platform: str = sys.platform) -> str | None:
    """The PyTorch index pip needs as an extra index for that build, or ``None`` (PyPI's torch is it).

    On macOS PyPI's torch is the CPU/MPS build; on Linux it is the CUDA build, on Windows the CPU build.
    """
    if platform == "darwin":
        return None
    if device == "cpu":
        return PYTORCH_CPU_INDEX
    return PYTORCH_CUDA_INDEX if platform == "win32" else None


def gigabytes(size: int) -> str:
    """``1_000_000_000`` -> ``"1.0 GB"``."""
    return f"{size / 1e9:.1f} GB"


def free_space(user_dir: Path) -> int:
    """Free bytes on the disk that holds the user folder (or its nearest existing parent)."""
    path = Path(user_dir)
    while not path.exists() and path != path.parent:
        path = path.parent
    return shutil.disk_usage(path).free


def space_problem(user_dir: Path, device: str) -> str | None:
    """A line saying the disk is too full for an install of ``device``'s build, or ``None``."""
    needed, free = DISK_NEEDED[device], free_space(user_dir)
    if free >= needed:
        return None
    return f"not enough disk space: the {device.upper()} build needs about {gigabytes(needed)}, " \
           f"{gigabytes(free)} is free at {user_dir}"


def disk_line(user_dir: Path, device: str) -> str:
    """What an install needs and what is free, for the preferences."""
    return f"Needs about {gigabytes(DISK_NEEDED[device])} ({device.upper()} build), " \
           f"{gigabytes(free_space(user_dir))} free"


def pip_arguments(wheel: Path, target: Path, device: str, options: InstallOptions, platform: str = sys.platform,
                  raw_progress: bool = False) -> list[str]:
    """The arguments after ``pip`` that install the backend wheel and its dependencies into ``target``.

    The machine's pip configuration still applies (no ``--isolated``); the preferences add to it.
    ``--only-binary :all:``: Blender has no compilers, so a package without a wheel for this Python
    fails at once as "no matching distribution" instead of in a build.
    """
    args = ["install", "--target", str(target), "--no-user", "--only-binary", ":all:", "--no-input",
            "--disable-pip-version-check", "--no-warn-script-location",
            "--progress-bar", "raw" if raw_progress else "off"]
    if options.index_url:
        args += ["--index-url", options.index_url]
    if options.extra_index_url:
        args += ["--extra-index-url", options.extra_index_url]
    extra = torch_index(device, platform)
    if extra and not options.local_only:
        args += ["--extra-index-url", extra]
    if options.find_links:
        args += ["--find-links", options.find_links]
    if options.local_only:
        args.append("--no-index")
    if options.retries is not None:
        args += ["--retries", str(options.retries)]
    return [*args, str(wheel)]


def _redact(text: str) -> str:
    """Index URLs with ``user:password@`` lose the password in the log."""
    return re.sub(r"(://[^/:@\s]+):[^@/\s]+@", r"\1:****@", text)


class _Log:
    """The install log: our own lines, pip's output and the verify step's, with times."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._file = open(path, "w", encoding="utf-8")
        self.started = time.monotonic()

    def write(self, line: str) -> None:
        self._file.write(_redact(line) + "\n")
        self._file.flush()

    def note(self, line: str) -> None:
        self.write(f"[siren {time.monotonic() - self.started:7.1f}s] {line}")

    def close(self) -> None:
        self._file.close()


def verify(python: str, site: Path, log: Callable[[str], None], environ: Mapping[str, str] | None = None,
           cancel: threading.Event | None = None) -> tuple[dict | None, str]:
    """Import the backend from ``site`` in a child Python and fit a tiny sphere; (its report, "") or (None, why)."""
    output: list[str] = []

    def keep(line: str) -> None:
        output.append(line)
        log(line)

    env = child_environment(environ, pythonpath=site)
    code = run_streaming([python, "-c", VERIFY_CODE], env, keep, cancel, VERIFY_TIMEOUT)
    if code != 0:
        last = next((line.strip() for line in reversed(output) if line.strip()), f"exit code {code}")
        return None, f"the installed backend does not run: {last}"
    try:
        report = json.loads(next(line for line in reversed(output) if line.startswith("{")))
    except (StopIteration, ValueError):
        return None, "the installed backend's check printed no report"
    root = Path(site).resolve()
    outside = [file for file in report["files"] if root not in Path(file).resolve().parents]
    if outside:
        return None, f"the check imported {outside[0]} from outside the install folder"
    return report, ""


def run_install(python: str, wheel: Path, user_dir: Path, options: InstallOptions = InstallOptions(),
                on_progress: Callable[[str], None] | None = None, cancel: threading.Event | None = None,
                environ: Mapping[str, str] | None = None) -> InstallOutcome:
    """Install ``wheel`` and its dependencies with ``python``'s pip into ``user_dir``'s backend folder.

    Blocks until done (the add-on runs it in a thread). ``environ`` replaces ``os.environ`` for pip
    and the check (tests use it to leave the machine's pip configuration out).
    """
    started = time.monotonic()
    log = log_path(user_dir)
    try:
        log.parent.mkdir(parents=True, exist_ok=True)
        with InstallLock(log.parent):
            writer = _Log(log)
            try:
                return _install(python, Path(wheel), Path(user_dir), options, writer, on_progress, cancel, environ)
            finally:
                writer.close()
    except InstallBusy as busy:
        reason = str(busy)
    except OSError as error:
        reason = classify_failure(str(error)) or str(error)
    return InstallOutcome(False, f"Install failed: {reason}. Log: {log}", log, seconds=time.monotonic() - started)


def _install(python: str, wheel: Path, user_dir: Path, options: InstallOptions, log: _Log,
             on_progress: Callable[[str], None] | None, cancel: threading.Event | None,
             environ: Mapping[str, str] | None) -> InstallOutcome:
    """:func:`run_install`'s steps, with the lock held and the log open: check, pip, verify, record, swap."""
    root = backend_root(user_dir)
    progress = PipProgress()
    staging: Path | None = None

    def say(line: str) -> None:
        log.note(line)
        if on_progress is not None:
            on_progress(line)

    def failed(line: str) -> InstallOutcome:
        log.note(f"FAILED: {line}")
        return InstallOutcome(False, f"Install failed: {line}. Log: {log.path}", log.path,
                              seconds=time.monotonic() - log.started)

    def cancelled() -> bool:
        return cancel is not None and cancel.is_set()

    def read(line: str) -> None:
        if progress.feed(line) and on_progress is not None:
            on_progress(progress.line)
        if not is_progress(line):
            output.append(line)
            log.write(line)

    output: list[str] = []
    try:
        remove_leftovers(root)
        device = resolve_device(options.device)
        log.note(f"backend wheel {wheel}, Python {python}, {device.upper()} build, platform {sys.platform}")
        if options.local_only and not options.find_links:
            return failed("'local wheel folder only' needs a wheel folder")
        if device == "cuda" and sys.platform == "darwin":
            return failed("there is no CUDA build of torch for macOS")
        if not wheel.is_file():
            return failed(f"the backend wheel {wheel} is missing")
        problem = space_problem(user_dir, device)
        if problem:
            return failed(problem)
        found = pip_command(python, environ)
        if found is None:
            return failed(f"{python} has no pip (and no ensurepip to run it from)")
        pip, pip_version = found
        staging = Path(tempfile.mkdtemp(prefix="staging-", dir=root))
        raw = pip_version >= RAW_PROGRESS_PIP
        command = [*pip, *pip_arguments(wheel, staging, device, options, raw_progress=raw)]
        log.note("running " + " ".join(command))
        say("Starting pip")
        code = run_streaming(command, child_environment(environ), read, cancel)
        if cancelled():
            return failed("cancelled")
        if code != 0:
            return failed(classify_failure("\n".join(output)) or f"pip stopped with exit code {code}")
        say("Checking the backend: a 20-step fit of a sphere")
        report, why = verify(python, staging, log.write, environ, cancel)
        if report is None:
            return failed("cancelled" if cancelled() else why)
        record = InstallRecord(
            version=wheel_version(wheel), device=device, torch=report["torch"], python=report["python"],
            cuda_build=report["cuda_build"], cuda_available=report["cuda_available"],
            installed_at=time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        )
        (staging / RECORD_FILE).write_text(json.dumps(asdict(record), indent=2), encoding="utf-8")
        size = tree_size(staging)
        try:
            swap_into_place(staging, root / SITE_FOLDER)
        except OSError as error:
            return failed(f"could not replace the installed backend (is it running? stop it first): {error}")
        staging = None
    except (OSError, ValueError, subprocess.SubprocessError) as error:
        return failed(classify_failure(str(error)) or str(error))
    finally:
        if staging is not None:
            shutil.rmtree(staging, ignore_errors=True)
    seconds = time.monotonic() - log.started
    cpu_only = device == "cuda" and not record.cuda_build
    note = " (torch is a CPU build: the NVIDIA GPU will not be used)" if cpu_only else ""
    line = f"Backend {record.version} installed with torch {record.torch}, {gigabytes(size)}, " \
           f"in {seconds / 60:.1f} min{note}"
    say(line)
    return InstallOutcome(True, line, log.path, record, seconds, size)


class Installer:
    """One background install at a time: a thread running :func:`run_install`, its progress line, its outcome."""

    def __init__(self) -> None:
        self._thread: threading.Thread | None = None
        self._cancel = threading.Event()
        self.line = ""
        self.outcome: InstallOutcome | None = None

    @property
    def running(self) -> bool:
        """Whether an install is under way."""
        return self._thread is not None and self._thread.is_alive()

    def start(self, python: str, wheel: Path, user_dir: Path, options: InstallOptions,
              environ: Mapping[str, str] | None = None) -> bool:
        """Start installing in a thread; ``False`` if one is running already."""
        if self.running:
            return False
        self._cancel = threading.Event()
        self.line, self.outcome = "Starting", None
        self._thread = threading.Thread(target=self._work, args=(python, wheel, user_dir, options, environ),
                                        name="siren-install", daemon=True)
        self._thread.start()
        return True

    def run(self, python: str, wheel: Path, user_dir: Path, options: InstallOptions,
            environ: Mapping[str, str] | None = None) -> InstallOutcome | None:
        """Install in this thread (scripts, tests), keeping the line and outcome; ``None`` if one is running."""
        if self.running:
            return None
        self._cancel = threading.Event()
        self.line, self.outcome = "Starting", None
        return self._work(python, wheel, user_dir, options, environ)

    def _work(self, python: str, wheel: Path, user_dir: Path, options: InstallOptions,
              environ: Mapping[str, str] | None) -> InstallOutcome:
        outcome = run_install(python, wheel, user_dir, options, self._set_line, self._cancel, environ)
        self.line, self.outcome = outcome.line, outcome
        return outcome

    def _set_line(self, line: str) -> None:
        self.line = line

    def cancel(self) -> None:
        """Stop the running install (pip is killed; nothing is left behind)."""
        self._cancel.set()

    def join(self, timeout: float | None = None) -> InstallOutcome | None:
        """Wait for the install to end; its outcome, or ``None`` if it is still running."""
        if self._thread is not None:
            self._thread.join(timeout)
        return None if self.running else self.outcome
