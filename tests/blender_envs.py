"""Running a test module in another environment (a Blender-only one) and reading its outcomes."""

from __future__ import annotations

import os
import subprocess
import sys
import xml.etree.ElementTree as ElementTree
from pathlib import Path

import pytest

from .paths import REPO


def run_module(python: Path, module: str, folder: Path, environment: dict[str, str],
               timeout: float = 1800) -> dict[str, tuple[str, str]]:
    """Run ``tests/<module>`` with ``python`` (this environment's variables, updated with
    ``environment``); each test's outcome (passed, failure, error, skipped) and report, by name."""
    report = folder / f"{module}.xml"
    env = {**os.environ, "SIREN_BACKEND_PYTHON": sys.executable, "PYTHONDONTWRITEBYTECODE": "1"}
    env.pop("BLENDER_USER_EXTENSIONS", None)  # the run makes its own
    env.update(environment)
    run = subprocess.run(
        [str(python), "-m", "pytest", f"tests/{module}", "-q", "-s", "-p", "no:cacheprovider",
         f"--junitxml={report}", f"--basetemp={folder / module.removesuffix('.py')}"],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout,
    )
    if not report.exists():
        pytest.fail(f"{module} with {python} wrote no report (exit {run.returncode}):\n"
                    f"{run.stdout[-4000:]}\n{run.stderr[-4000:]}")
    found = {}
    for case in ElementTree.parse(report).getroot().iter("testcase"):
        outcome, text = "passed", ""
        for child in case:
            if child.tag in ("failure", "error", "skipped"):
                outcome, text = child.tag, (child.get("message") or "") + "\n" + (child.text or "")
        found[case.get("name")] = (outcome, text if outcome == "passed" else text + run.stdout[-2000:])
    return found
