"""Open3D script mode: reconstruct an ``open3d.geometry.PointCloud`` and read or write files.

Open3D is imported lazily through :func:`import_open3d`, so the engine and the server run without
it, and a machine that lacks the system library it needs gets a message saying what to install.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np

from .engine.config import ReconstructionConfig
from .engine.errors import InputError, ReconstructionError
from .engine.events import MeshEvent, ProgressEvent
from .engine.pipeline import reconstruct_points
from .glb import write_glb

POINT_FORMATS = (".ply", ".pcd", ".xyz", ".xyzn", ".xyzrgb", ".pts")
MESH_FORMATS = (".ply", ".obj", ".stl", ".glb", ".gltf", ".off")


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
        raise Open3DUnavailable(
            "Open3D is not installed: `pip install open3d-cpu` (or `open3d`)"
        ) from exc
    return open3d


def check_format(path: str | os.PathLike, formats: tuple[str, ...], what: str) -> Path:
    """``path`` as a Path, or :class:`InputError` when its suffix is not one of ``formats``."""
    target = Path(path)
    if target.suffix.lower() not in formats:
        raise InputError(
            f"{str(target)!r}: unknown {what} format {target.suffix or '(none)'!r}; use one of {', '.join(formats)}",
            "unknown_format",
        )
    return target


def read_point_cloud(path: str | os.PathLike) -> tuple[np.ndarray, np.ndarray | None, np.ndarray | None]:
    """Points, normals (or ``None``) and colours (or ``None``) of a file Open3D can read."""
    source = check_format(path, POINT_FORMATS, "point cloud")
    if not source.is_file():
        raise InputError(f"{str(source)!r} does not exist", "unreadable_file")
    if source.suffix.lower() == ".ply":
        with open(source, "rb") as handle:
            if handle.read(3) != b"ply":
                raise InputError(
                    f"{str(source)!r} could not be read as a point cloud: not a PLY file", "unreadable_file"
                )
    o3d = import_open3d()
    with o3d.utility.VerbosityContextManager(o3d.utility.VerbosityLevel.Error):
        cloud = o3d.io.read_point_cloud(str(source))
    if len(cloud.points) == 0:
        raise InputError(f"{str(source)!r} could not be read as a point cloud, or holds no points", "unreadable_file")
    points = np.asarray(cloud.points, dtype=np.float64).copy()
    normals = np.asarray(cloud.normals, dtype=np.float64).copy() if cloud.has_normals() else None
    colours = np.asarray(cloud.colors, dtype=np.float64).copy() if cloud.has_colors() else None
    return points, normals, colours


def to_open3d_mesh(vertices: np.ndarray, faces: np.ndarray) -> Any:
    """An ``open3d.geometry.TriangleMesh`` with vertex normals."""
    o3d = import_open3d()
    mesh = o3d.geometry.TriangleMesh(
        o3d.utility.Vector3dVector(np.asarray(vertices, dtype=np.float64)),
        o3d.utility.Vector3iVector(np.asarray(faces, dtype=np.int32)),
    )
    mesh.compute_vertex_normals()
    return mesh


def write_mesh(path: str | os.PathLike, vertices: np.ndarray, faces: np.ndarray) -> None:
    """Write a mesh in the format its suffix names (ply, obj, stl, glb, gltf, off)."""
    target = check_format(path, MESH_FORMATS, "mesh")
    target.parent.mkdir(parents=True, exist_ok=True)
    if target.suffix.lower() == ".glb":
        write_glb(target, vertices, faces)
        return
    o3d = import_open3d()
    with o3d.utility.VerbosityContextManager(o3d.utility.VerbosityLevel.Error):
        ok = o3d.io.write_triangle_mesh(str(target), to_open3d_mesh(vertices, faces))
    if not ok:
        raise InputError(f"could not write {str(target)!r}", "unwritable_file")


def reconstruct(
    pcd: Any,
    config: ReconstructionConfig | None = None,
    on_progress: Callable[[ProgressEvent], None] | None = None,
    on_mesh: Callable[[MeshEvent], None] | None = None,
) -> Any:
    """Reconstruct an ``open3d.geometry.PointCloud`` into an ``open3d.geometry.TriangleMesh``.

    The cloud's normals are used when it has them (mode ``auto``); the mesh is in the cloud's
    own coordinates.
    """
    points = np.asarray(pcd.points)
    normals = np.asarray(pcd.normals) if pcd.has_normals() else None
    result = reconstruct_points(points, normals, config, on_progress=on_progress, on_mesh=on_mesh)
    return to_open3d_mesh(result.vertices, result.faces)
