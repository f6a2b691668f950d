"""The add-on as the tests use it: vendored in place for its plain modules, built for Blender."""

from __future__ import annotations

import importlib.util
import sys

from .paths import REPO


def load_build_script():
    spec = importlib.util.spec_from_file_location("build_addon", REPO / "scripts" / "build_addon.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["build_addon"] = module
    spec.loader.exec_module(module)
    return module


def vendor_in_place() -> None:
    """Make ``blender_addon.protocol`` exist, as the build does, so ``blender_addon.*`` imports."""
    load_build_script().vendor_protocol(REPO / "blender_addon" / "protocol")
