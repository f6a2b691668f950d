"""The installed package: one import name, its public entry points, the version in one place."""

from __future__ import annotations

import importlib
import importlib.metadata
import pkgutil
import re
import subprocess
import sys

import pytest

import siren_recon

from .paths import REPO

OPTIONAL = {"siren_recon.server.executors.ray": "ray"}
"""Modules that need an optional extra, by the module they need."""


def test_every_module_imports_under_siren_recon_and_no_other_top_level_name():
    for info in pkgutil.walk_packages(siren_recon.__path__, "siren_recon."):
        needs = OPTIONAL.get(info.name)
        if needs is None or importlib.util.find_spec(needs) is not None:
            importlib.import_module(info.name)
    assert "backend" not in sys.modules and "protocol" not in sys.modules
    files = [m.__file__ for m in list(sys.modules.values()) if getattr(m, "__file__", None)]
    duplicated = {
        f for f in files if files.count(f) > 1 and f.startswith((str(REPO / "backend"), str(REPO / "protocol")))
    }
    assert not duplicated, f"modules imported under two names: {sorted(duplicated)}"


def test_the_public_entry_points_resolve():
    from siren_recon.engine.config.reconstruction import ReconstructionConfig, apply_overrides
    from siren_recon.engine.pipeline import reconstruct_points
    from siren_recon.open3d_mode import reconstruct
    from siren_recon.protocol.client import reconstruct_remote

    assert siren_recon.ReconstructionConfig is ReconstructionConfig
    assert siren_recon.apply_overrides is apply_overrides
    assert siren_recon.reconstruct_points is reconstruct_points
    assert siren_recon.reconstruct is reconstruct
    assert callable(reconstruct_remote)
    assert siren_recon.__version__ == importlib.metadata.version("siren-recon")


def test_import_siren_recon_loads_neither_torch_nor_open3d():
    code = "import sys, siren_recon, siren_recon.protocol.client; print(sorted({'torch', 'open3d'} & set(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_no_code_imports_the_repository_folders_by_their_own_names():
    """``backend`` and ``protocol`` are folders, not import names: importing them from the
    repository root would load a second copy of each module beside ``siren_recon``'s."""
    pattern = re.compile(r"^\s*(from|import)\s+(backend|protocol)\b|__import__\(\s*[\"'](backend|protocol)\b", re.M)
    offenders = [
        str(path.relative_to(REPO))
        for folder in ("backend", "scripts", "tests")
        for path in (REPO / folder).rglob("*.py")
        if pattern.search(path.read_text())
    ]
    assert not offenders


def test_the_wheel_lists_every_package_folder():
    tomllib = pytest.importorskip("tomllib")
    listed = set(tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])
    folders = {"siren_recon." + ".".join(init.parent.relative_to(REPO / "backend").parts)
               for init in (REPO / "backend").rglob("__init__.py")} - {"siren_recon."}
    folders |= {"siren_recon", "siren_recon.protocol"}
    assert folders == listed
