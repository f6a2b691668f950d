"""The add-on's tests again, in Blender 5.2's Python: bpy 5.2.3 on Python 3.13 with NumPy 2.

Blender 5.1 and 5.2 LTS embed Python 3.13, which cannot be imported into this process, so the
add-on's test modules run in the environment that ``scripts/test.sh`` sets up
(``.venv-blender-5.2``, from ``scripts/setup_blender_env.sh``), with the backend in this one:

* ``test_addon_blender.py`` as it is: the extension zip is built and validated by Blender 5.2's
  tool, installed, and runs on the pyzmq/msgpack wheels it bundles (that environment has none);
* ``test_addon_logic.py`` with those same bundled wheels for Python 3.13 on its path.

Each of their tests is one test here, failing with that test's own report.
"""

from __future__ import annotations

import ast
import os
import subprocess
from pathlib import Path

import pytest

from .addon_build import load_build_script
from .blender_envs import run_module
from .paths import REPO

pytestmark = [pytest.mark.blender, pytest.mark.live, pytest.mark.slow]

ENVIRONMENT = REPO / os.environ.get("SIREN_BLENDER_VENV", ".venv-blender-5.2")
PYTHON = ENVIRONMENT / "bin" / "python"
WHEEL_CACHE = REPO / "build" / "wheels"
MODULES = ("test_addon_blender.py", "test_addon_logic.py")
CASES = [(module, node.name) for module in MODULES
         for node in ast.parse((REPO / "tests" / module).read_text()).body
         if isinstance(node, ast.FunctionDef) and node.name.startswith("test_")]


def run_tests(module: str, folder: Path, extra_path: str = "") -> dict[str, tuple[str, str]]:
    """Run one test module in the Blender 5.2 environment: each test's outcome and report, by name."""
    return run_module(PYTHON, module, folder, {"PYTHONPATH": extra_path})


@pytest.fixture(scope="module")
def outcomes(tmp_path_factory) -> dict[tuple[str, str], tuple[str, str]]:
    if not PYTHON.exists():
        pytest.skip("no Blender 5.2 environment: scripts/test.sh makes one from a Python 3.13 "
                    "(install one, e.g. 'pyenv install 3.13', or set BLENDER_PYTHON, and run it again)")
    folder = tmp_path_factory.mktemp("blender-5.2")
    found = {("test_addon_blender.py", name): result
             for name, result in run_tests("test_addon_blender.py", folder).items()}
    wheels = folder / "bundled-wheels"  # the build above left the bundled wheels in the cache
    pins = [f"{name}=={version}" for name, version in load_build_script().WHEELS.items()]
    subprocess.run([str(PYTHON), "-m", "pip", "install", "--quiet", "--no-index", "--find-links", str(WHEEL_CACHE),
                    "--target", str(wheels), *pins], check=True)
    found.update({("test_addon_logic.py", name): result
                  for name, result in run_tests("test_addon_logic.py", folder, str(wheels)).items()})
    return found


@pytest.mark.parametrize("module, name", CASES)
def test_in_blender_5_2(outcomes, module, name):
    outcome, report = outcomes.get((module, name), ("not run", ""))
    assert outcome == "passed", f"{module}::{name} in Blender 5.2: {outcome}\n{report}"
