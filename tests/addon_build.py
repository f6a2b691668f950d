"""The add-on as the tests use it: vendored in place for its plain modules, built for Blender."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
import zipfile
from pathlib import Path

from .paths import REPO

NO_BPY_PROBE = "import importlib.util as u, sys; sys.exit(sys.version_info < (3, 10) or bool(u.find_spec('bpy')))"
"""Exits 0 in a Python the build must run in without help: 3.10 or newer, no bpy."""


def load_build_script():
    """``scripts/build_addon.py`` as a module (``build_addon``)."""
    spec = importlib.util.spec_from_file_location("build_addon", REPO / "scripts" / "build_addon.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["build_addon"] = module
    spec.loader.exec_module(module)
    return module


def vendor_in_place() -> None:
    """Make ``blender_addon.protocol`` exist, as the build does, so ``blender_addon.*`` imports."""
    load_build_script().vendor_protocol(REPO / "blender_addon" / "protocol")


def pyenv_pythons() -> list[Path]:
    """The Pythons pyenv installed (``$PYENV_ROOT``, else ``~/.pyenv``), oldest first."""
    root = Path(os.environ.get("PYENV_ROOT") or Path.home() / ".pyenv") / "versions"
    found = [p for p in root.glob("*/bin/python3") if p.parent.parent.name[:1].isdigit()]
    return sorted(found, key=lambda p: tuple(int(n) for n in p.parent.parent.name.split(".")[:2] if n.isdigit()))


def python_without_bpy() -> Path | None:
    """The oldest Python 3.10+ on this machine without bpy (a plain Python a user might have), if any."""
    for python in pyenv_pythons():
        if subprocess.run([str(python), "-I", "-c", NO_BPY_PROBE], capture_output=True).returncode == 0:
            return python
    return None


def blender_tool(command: str, *args: str) -> subprocess.CompletedProcess:
    """Run Blender's own extension tool (from this Python's bpy wheel): ``build`` or ``validate``."""
    tool = load_build_script().blender_extension_tool()
    assert tool is not None, "bpy is not installed in this Python"
    return subprocess.run([sys.executable, str(tool), command, *args], capture_output=True, text=True)


def zip_contents(archive: Path) -> dict[str, tuple[int, int]]:
    """Each entry of a zip with its CRC and compression method."""
    with zipfile.ZipFile(archive) as zipped:
        return {info.filename: (info.CRC, info.compress_type) for info in zipped.infolist()}


def fake_wheels(folder: Path, names: list[str]) -> list[Path]:
    """Small stand-in files named as wheels, for builds that must not download anything."""
    folder.mkdir(parents=True, exist_ok=True)
    for name in names:
        (folder / name).write_bytes(b"stand-in for " + name.encode())
    return sorted(folder / name for name in names)
