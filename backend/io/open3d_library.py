"""Open3D, imported lazily, and the conversion of a mesh into its TriangleMesh.

The engine and the server run without Open3D; a machine that lacks a system library it needs
gets a message saying what to install.
"""

from __future__ import annotations

from types import ModuleType
from typing import Any

import numpy as np

from ..engine.errors import ReconstructionError


class Open3DUnavailable(ReconstructionError):
    """Open3D (or a system library it needs) is missing."""

    code = "open3d_unavailable"


def import_open3d() -> ModuleType:
    """Import Open3D, turning a missing wheel or system library into an actionable message."""
    try:
        import open3d
    except ImportError as exc:
        text = str(exc)
        if "libusb" in text:
            raise Open3DUnavailable(
                "Open3D needs the system library libusb-1.0: install it with "
                "`sudo apt-get install libusb-1.0-0` (Debian/Ubuntu)"
            ) from exc
        if "libGL" in text or "libgomp" in text or "libEGL" in text:
            raise Open3DUnavailable(f"Open3D cannot load a system library ({text}); install it and retry") from exc
        raise Open3DUnavailable("Open3D is not installed: pip install 'siren-recon[open3d]'") from exc
    return open3d


def to_open3d_mesh(vertices: np.ndarray, faces: np.ndarray, colours: np.ndarray | None = None) -> Any:
    """An ``open3d.geometry.TriangleMesh`` with vertex normals (and vertex colours when given)."""
    o3d = import_open3d()
    mesh = o3d.geometry.TriangleMesh(
        o3d.utility.Vector3dVector(np.asarray(vertices, dtype=np.float64)),
        o3d.utility.Vector3iVector(np.asarray(faces, dtype=np.int32)),
    )
    if colours is not None:
        mesh.vertex_colors = o3d.utility.Vector3dVector(np.clip(np.asarray(colours, dtype=np.float64), 0.0, 1.0))
    mesh.compute_vertex_normals()
    return mesh
