"""Open3D script mode: reconstruct an ``open3d.geometry.PointCloud``; read and write files.

The files themselves are :mod:`siren_recon.io`'s: :func:`read_point_cloud` and
:func:`write_mesh` are its readers and writers under the names scripts have used.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

import numpy as np

from .engine.config.reconstruction import ReconstructionConfig
from .engine.events import MeshEvent, ProgressEvent, ReconstructionResult
from .engine.pipeline import reconstruct_points
from .io import CLOUD_FORMATS, MESH_FORMATS, read_cloud, write_mesh
from .io.cloud import check_format
from .io.open3d_library import Open3DUnavailable, import_open3d, to_open3d_mesh

__all__ = [
    "CLOUD_FORMATS", "MESH_FORMATS", "Open3DUnavailable", "check_format", "import_open3d", "read_point_cloud",
    "reconstruct", "reconstruct_with_result", "to_open3d_mesh", "write_mesh",
]


def read_point_cloud(path: str | os.PathLike) -> tuple[np.ndarray, np.ndarray | None, np.ndarray | None]:
    """Points (float64), normals (or ``None``) and colours (or ``None``) of any cloud file
    :func:`siren_recon.io.read_cloud` reads."""
    cloud = read_cloud(path)
    return cloud.points, cloud.normals, cloud.colours


def reconstruct(
    pcd: Any,
    config: ReconstructionConfig | None = None,
    on_progress: Callable[[ProgressEvent], None] | None = None,
    on_mesh: Callable[[MeshEvent], None] | None = None,
    should_cancel: Callable[[], bool] | None = None,
) -> Any:
    """Reconstruct an ``open3d.geometry.PointCloud`` into an ``open3d.geometry.TriangleMesh``.

    The cloud's normals are used when it has them (mode ``auto``), its colours carried onto the
    mesh's vertices when it has them; the mesh is in the cloud's own coordinates and has vertex
    normals. ``on_progress`` and ``on_mesh`` receive each :class:`ProgressEvent` and
    :class:`MeshEvent` (previews, then the final mesh); the run stops with
    :class:`~siren_recon.engine.errors.Cancelled` once ``should_cancel()`` is true. The run's mode,
    statistics, timings and trained field come with :func:`reconstruct_with_result`.
    """
    return reconstruct_with_result(pcd, config, on_progress, on_mesh, should_cancel)[0]


def reconstruct_with_result(
    pcd: Any,
    config: ReconstructionConfig | None = None,
    on_progress: Callable[[ProgressEvent], None] | None = None,
    on_mesh: Callable[[MeshEvent], None] | None = None,
    should_cancel: Callable[[], bool] | None = None,
) -> tuple[Any, ReconstructionResult]:
    """The mesh of :func:`reconstruct` and the run's :class:`ReconstructionResult`, as a pair
    (like Open3D's Poisson reconstruction's mesh and densities): ``mode``, ``stats`` (final loss
    terms, point, vertex and face counts, what trimming cut, the noise level), ``timings``
    (seconds to train and to mesh) and the trained ``field`` (``field.sdf(points)``, ``field.mesh(512)``).
    """
    points = np.asarray(pcd.points)
    normals = np.asarray(pcd.normals) if pcd.has_normals() else None
    colours = np.asarray(pcd.colors) if pcd.has_colors() else None
    result = reconstruct_points(
        points, normals, config, on_progress=on_progress, on_mesh=on_mesh, should_cancel=should_cancel,
        colours=colours,
    )
    return to_open3d_mesh(result.vertices, result.faces, result.colours), result
