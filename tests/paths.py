"""Where the repository and its bundled data are (no other imports: the Blender-only test
environment, which has neither torch nor this package installed, imports it too)."""

from __future__ import annotations

from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DATA = REPO / "data"
