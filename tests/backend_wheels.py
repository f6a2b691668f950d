"""A local wheel folder holding the backend built from this repository and its dependencies: what a
studio behind a firewall points *Install Backend* at, and what the install tests install from.

Made with this Python's pip and the machine's pip configuration (it finds a local CPU torch for
Python 3.11); the dependencies are downloaded once into ``build/install-test`` and fetched again
only when the wheel's list of them changes.
"""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
import zipfile
from pathlib import Path

from .paths import REPO

TORCH = "torch==2.13.0"
CACHE = REPO / "build" / "install-test"


def wheel_requirements(wheel: Path) -> list[str]:
    """The wheel's own dependencies (Requires-Dist without an extra), from its METADATA."""
    with zipfile.ZipFile(wheel) as archive:
        name = next(n for n in archive.namelist() if n.endswith(".dist-info/METADATA"))
        lines = archive.read(name).decode().splitlines()
    return sorted(line.split(":", 1)[1].strip() for line in lines
                  if line.startswith("Requires-Dist:") and "extra ==" not in line)


def python_tag(python: str | Path) -> str:
    """``cp311`` for a Python 3.11 interpreter."""
    return subprocess.run([str(python), "-c", "import sys; print(f'cp{sys.version_info[0]}{sys.version_info[1]}')"],
                          capture_output=True, text=True, check=True).stdout.strip()


def backend_wheel() -> Path:
    """The backend built from this repository as a wheel (``build/install-test/backend``)."""
    backend = CACHE / "backend"
    for old in backend.glob("*.whl"):
        old.unlink()
    isolation = [] if importlib.util.find_spec("setuptools") is None else ["--no-build-isolation"]
    built = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", *isolation, "-w", str(backend),
                            str(REPO)], capture_output=True, text=True, timeout=1800)
    assert built.returncode == 0, built.stdout + built.stderr
    return next(backend.glob("siren_recon-*.whl"))


def dependency_folder(wheel: Path, python: str | Path = sys.executable) -> Path:
    """The wheels of ``wheel``'s dependencies and torch for ``python``, downloaded once with its pip."""
    folder = CACHE / f"deps-{python_tag(python)}"
    marker = folder / "requirements.json"
    wanted = [*wheel_requirements(wheel), TORCH]
    if not marker.exists() or json.loads(marker.read_text()) != wanted:
        got = subprocess.run([str(python), "-m", "pip", "download", "--only-binary", ":all:", "-d", str(folder),
                              str(wheel), TORCH], capture_output=True, text=True, timeout=3600)
        assert got.returncode == 0, got.stdout + got.stderr
        (folder / wheel.name).unlink(missing_ok=True)
        marker.write_text(json.dumps(wanted))
    return folder


def backend_wheel_folder() -> tuple[Path, Path]:
    """(the backend wheel built from this repository, the folder of its dependencies for this Python)."""
    wheel = backend_wheel()
    return wheel, dependency_folder(wheel)
