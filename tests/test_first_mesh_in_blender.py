"""From a fresh Blender to a first mesh, with nothing of ours installed but the extension zip.

``blender_only_first_mesh.py`` runs in Blender-only environments that ``scripts/setup_blender_env.sh``
makes: bpy 5.0.1 on Python 3.11 (``.venv-blender-5.0``, as Blender 4.2 LTS to 5.0) and bpy 5.2.3 on
Python 3.13 (``.venv-blender-5.2``, as Blender 5.1 and 5.2 LTS). This process builds the zip (the
backend's wheel inside) and a local wheel folder of the backend's dependencies for that Python, the
folder *Install Backend* is pointed at, as a studio behind a firewall would.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from .addon_build import load_build_script
from .backend_wheels import backend_wheel, dependency_folder
from .blender_envs import run_module
from .paths import REPO

pytestmark = [pytest.mark.blender, pytest.mark.live, pytest.mark.slow]

ENVIRONMENTS = {"5.0": REPO / ".venv-blender-5.0", "5.2": REPO / ".venv-blender-5.2"}
MODULE = "blender_only_first_mesh.py"


@pytest.fixture(scope="module")
def addon_zip(tmp_path_factory) -> Path:
    return load_build_script().build(tmp_path_factory.mktemp("dist"), True, REPO / "build" / "wheels")


@pytest.mark.parametrize("blender", sorted(ENVIRONMENTS))
def test_a_first_mesh_in_blender_without_a_terminal(blender, addon_zip, tmp_path):
    python = ENVIRONMENTS[blender] / "bin" / "python"
    if not python.exists():
        pytest.skip(f"no Blender {blender} environment (scripts/setup_blender_env.sh makes one from its Python)")
    timings, wheels = tmp_path / "timings.txt", dependency_folder(backend_wheel(), python)
    found = run_module(python, MODULE, tmp_path, {"SIREN_TEST_ADDON_ZIP": str(addon_zip),
                                                  "SIREN_TEST_BACKEND_WHEELS": str(wheels),
                                                  "SIREN_TEST_TIMINGS": str(timings), "PYTHONPATH": ""},
                       timeout=3600)
    assert found, f"{MODULE} ran no test in Blender {blender}"
    for name, (outcome, report) in found.items():
        assert outcome == "passed", f"{name} in Blender {blender}: {outcome}\n{report}"
    print(f"\nBlender {blender}: {timings.read_text()}")
