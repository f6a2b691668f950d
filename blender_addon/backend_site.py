"""The backend installed in the extension's user folder: where it lies, what the version file says, its state.

Plain logic (no bpy), shared by the installer and by what starts the backend. The user folder::

    <user>/backend/site/                            the installed packages: complete, or absent
    <user>/backend/site/siren_recon_install.json    the version file (written before ``site`` is put in place)
    <user>/backend/install.log                      the last install's log
    <user>/backend/install.lock                     while an install runs
    <user>/backend/staging-*/                       an install under way, renamed to site/ on success
"""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

WHEEL_FOLDER = "backend_wheel"
"""Where the zip carries ``siren_recon-*.whl`` (beside the add-on's modules; its top level works too)."""
BACKEND_FOLDER = "backend"
SITE_FOLDER = "site"
RECORD_FILE = "siren_recon_install.json"
LOG_FILE = "install.log"
LOCK_FILE = "install.lock"
LOCK_STALE_SECONDS = 60.0
"""A lock file not touched for this long belongs to an install that died (Blender was killed)."""


@dataclass(frozen=True)
class InstallRecord:
    """What the version file says is installed in ``site``."""

    version: str
    device: str
    torch: str
    python: str
    cuda_build: str | None = None
    cuda_available: bool = False
    installed_at: str = ""


@dataclass(frozen=True)
class InstallStatus:
    """The state of the user folder's backend, and the line the preferences show for it.

    ``state``: ``missing``, ``installed``, ``outdated`` (older than the add-on) or ``other_python``
    (installed for another Python than Blender's: a Blender update; Repair fixes it).
    """

    state: str
    line: str
    record: InstallRecord | None = None


class InstallBusy(RuntimeError):
    """Another install into the same user folder is under way."""


def backend_root(user_dir: Path) -> Path:
    """The folder under the extension's user folder that holds everything the installer writes."""
    return Path(user_dir) / BACKEND_FOLDER


def log_path(user_dir: Path) -> Path:
    """The last install's log, which the preferences offer to open."""
    return backend_root(user_dir) / LOG_FILE


def read_record(user_dir: Path) -> InstallRecord | None:
    """The version file of the installed backend, or ``None`` if there is no complete install."""
    path = backend_root(user_dir) / SITE_FOLDER / RECORD_FILE
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        return InstallRecord(**{k: v for k, v in data.items() if k in InstallRecord.__dataclass_fields__})
    except (OSError, ValueError, TypeError):
        return None


def installed_site(user_dir: Path) -> Path | None:
    """The site folder to put on the backend's ``PYTHONPATH``, if a complete install is there."""
    if read_record(user_dir) is None:
        return None
    return backend_root(user_dir) / SITE_FOLDER


def installed_version(user_dir: Path) -> str | None:
    """The installed backend's version, or ``None`` when none is installed."""
    record = read_record(user_dir)
    return record.version if record else None


def version_key(version: str) -> tuple[int, ...]:
    """``"0.1.0"`` -> ``(0, 1, 0)``: the release numbers, for comparing (``"0+source"`` -> ``(0,)``)."""
    release = re.match(r"\d+(?:\.\d+)*", version.strip().lstrip("vV"))
    return tuple(int(part) for part in release[0].split(".")) if release else (0,)


def addon_version(addon_dir: Path) -> str:
    """The add-on's version, from its ``blender_manifest.toml``."""
    import tomllib  # Python 3.11, as in every Blender the add-on supports

    with open(Path(addon_dir) / "blender_manifest.toml", "rb") as file:
        return str(tomllib.load(file)["version"])


def wheel_version(wheel: Path) -> str:
    """The version in a wheel's file name: ``siren_recon-0.1.0-py3-none-any.whl`` -> ``0.1.0``."""
    return Path(wheel).name.split("-")[1]


def find_backend_wheel(addon_dir: Path) -> Path | None:
    """The newest ``siren_recon-*.whl`` the add-on carries (in ``backend_wheel/`` or its top folder)."""
    addon_dir = Path(addon_dir)
    wheels = [*(addon_dir / WHEEL_FOLDER).glob("siren_recon-*.whl"), *addon_dir.glob("siren_recon-*.whl")]
    return max(wheels, key=lambda w: version_key(wheel_version(w)), default=None)


def install_status(user_dir: Path, addon_version: str, python: str) -> InstallStatus:
    """The backend's state for an add-on of ``addon_version`` running on Python ``python`` ("3.11")."""
    record = read_record(user_dir)
    if record is None:
        return InstallStatus("missing", "Backend not installed")
    build = "CUDA" if record.cuda_build else "CPU"
    if record.python != python:
        return InstallStatus("other_python", f"Backend {record.version} was installed for Python {record.python}, "
                             f"Blender's is {python}: Repair it", record)
    if version_key(record.version) < version_key(addon_version):
        return InstallStatus("outdated", f"Backend {record.version} needs an update to {addon_version}: "
                             "Repair installs it", record)
    return InstallStatus("installed", f"Backend {record.version} installed ({build}, torch {record.torch})", record)


def tree_size(folder: Path) -> int:
    """Bytes of the files under ``folder``."""
    return sum(path.stat().st_size for path in Path(folder).rglob("*") if path.is_file() and not path.is_symlink())


class InstallLock:
    """A lock file in the backend folder while an install runs, touched every few seconds.

    A lock nobody touched for :data:`LOCK_STALE_SECONDS` was left by an install that died; it is
    taken over, and that install's staging folder removed.
    """

    def __init__(self, root: Path) -> None:
        self.path = Path(root) / LOCK_FILE
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def __enter__(self) -> InstallLock:
        if not self._create():
            if not self._stale():
                raise InstallBusy("another install of the backend is under way (another Blender?)")
            self.path.unlink(missing_ok=True)
            if not self._create():
                raise InstallBusy("another install of the backend has just started (another Blender?)")
        self._thread = threading.Thread(target=self._heartbeat, name="siren-install-lock", daemon=True)
        self._thread.start()
        return self

    def _create(self) -> bool:
        try:
            descriptor = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
        except FileExistsError:
            return False
        with os.fdopen(descriptor, "w") as file:
            file.write(str(os.getpid()))
        return True

    def _stale(self) -> bool:
        try:
            return time.time() - self.path.stat().st_mtime >= LOCK_STALE_SECONDS
        except OSError:
            return True

    def _heartbeat(self) -> None:
        while not self._stop.wait(LOCK_STALE_SECONDS / 6):
            try:
                os.utime(self.path)
            except OSError:
                return

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self.path.unlink(missing_ok=True)


def remove_leftovers(root: Path) -> None:
    """Delete staging and retired folders that an earlier, interrupted install left behind."""
    for folder in Path(root).glob("staging-*"):
        shutil.rmtree(folder, ignore_errors=True)
    for folder in Path(root).glob("retired-*"):
        shutil.rmtree(folder, ignore_errors=True)


def swap_into_place(staging: Path, site: Path) -> None:
    """Make ``staging`` the new ``site``: the old one (if any) is moved aside first and deleted after."""
    retired = None
    if site.exists():
        retired = Path(tempfile.mkdtemp(prefix="retired-", dir=site.parent))
        retired.rmdir()
        site.rename(retired)
    try:
        staging.rename(site)
    except OSError:
        if retired is not None:
            retired.rename(site)
        raise
    if retired is not None:
        shutil.rmtree(retired, ignore_errors=True)


def remove_backend(user_dir: Path) -> bool:
    """Delete the installed backend (and any leftovers); returns whether one was there.

    Raises ``OSError`` when a file is in use (Windows, with the backend running).
    """
    root = backend_root(user_dir)
    site = root / SITE_FOLDER
    present = site.exists()
    if present:
        retired = Path(tempfile.mkdtemp(prefix="retired-", dir=root))
        retired.rmdir()
        site.rename(retired)
        shutil.rmtree(retired)
    remove_leftovers(root)
    return present
