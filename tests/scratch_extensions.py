"""A throwaway Blender user-extensions folder for one test process, removed when the process exits.

Set before ``bpy`` is imported, so that an installed extension (and a backend installed beside it,
several GB with torch) lands there rather than in the user's own Blender folders.
"""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile


def use_scratch_extensions(prefix: str) -> None:
    """Point ``BLENDER_USER_EXTENSIONS`` at a new temporary folder unless it is set already."""
    if os.environ.get("BLENDER_USER_EXTENSIONS"):
        return
    folder = tempfile.mkdtemp(prefix=prefix)
    os.environ["BLENDER_USER_EXTENSIONS"] = folder
    atexit.register(shutil.rmtree, folder, True)
