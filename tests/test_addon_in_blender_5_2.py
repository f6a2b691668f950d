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
import sys
import xml.etree.ElementTree as ElementTree
from pathlib import Path

import pytest

from .addon_build import load_build_script
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
    report = folder / f"{module}.xml"
    environment = {**os.environ, "SIREN_BACKEND_PYTHON": sys.executable, "PYTHONDONTWRITEBYTECODE": "1"}
    environment.pop("BLENDER_USER_EXTENSIONS", None)  # the run makes its own
    environment["PYTHONPATH"] = extra_path
    run = subprocess.run(
        [str(PYTHON), "-m", "pytest", f"tests/{module}", "-q", "-p", "no:cacheprovider",
         f"--junitxml={report}", f"--basetemp={folder / module.removesuffix('.py')}"],
        cwd=REPO, env=environment, capture_output=True, text=True, timeout=1800,
    )
    if not report.exists():
        pytest.fail(f"{module} in Blender 5.2 wrote no report (exit {run.returncode}):\n"
                    f"{run.stdout[-4000:]}\n{run.stderr[-4000:]}")
    found = {}
    for case in ElementTree.parse(report).getroot().iter("testcase"):
        outcome, text = "passed", ""
        for child in case:
            if child.tag in ("failure", "error", "skipped"):
                outcome, text = child.tag, (child.get("message") or "") + "\n" + (child.text or "")
        found[case.get("name")] = (outcome, text)
    return found


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
