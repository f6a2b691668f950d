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


def pip(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "pip", *args], capture_output=True, text=True, timeout=1800)


def backend_wheel_folder() -> tuple[Path, Path]:
    """(the backend wheel built from this repository, a folder with it and its dependencies' wheels)."""
    backend, deps = CACHE / "backend", CACHE / "deps"
    for old in backend.glob("*.whl"):
        old.unlink()
    isolation = [] if importlib.util.find_spec("setuptools") is None else ["--no-build-isolation"]
    built = pip("wheel", "--no-deps", *isolation, "-w", str(backend), str(REPO))
    assert built.returncode == 0, built.stdout + built.stderr
    wheel = next(backend.glob("siren_recon-*.whl"))
    wanted = [*wheel_requirements(wheel), TORCH]
    marker = deps / "requirements.json"
    if not marker.exists() or json.loads(marker.read_text()) != wanted:
        got = pip("download", "--only-binary", ":all:", "-d", str(deps), str(wheel), TORCH)
        assert got.returncode == 0, got.stdout + got.stderr
        (deps / wheel.name).unlink(missing_ok=True)
        marker.write_text(json.dumps(wanted))
    return wheel, deps
