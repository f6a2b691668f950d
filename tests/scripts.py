"""The project's scripts as modules, loaded from their files (``scripts/`` is not a package)."""

from __future__ import annotations

import importlib.util
import sys
from types import ModuleType

from .paths import REPO


def load_script(name: str) -> ModuleType:
    """``scripts/NAME.py`` as a module named ``NAME``."""
    spec = importlib.util.spec_from_file_location(name, REPO / "scripts" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module
