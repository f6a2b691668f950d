"""Point cloud files only Open3D reads here: pcd (the Point Cloud Library's) and pts."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .cloud import Cloud, unreadable
from .open3d_library import import_open3d

OPEN3D_FORMATS = (".pcd", ".pts")


def read_open3d_cloud(source: Path) -> Cloud:
    """Points, normals and colours of a file Open3D can read (float64, as Open3D holds them)."""
    o3d = import_open3d()
    with o3d.utility.VerbosityContextManager(o3d.utility.VerbosityLevel.Error):
        cloud = o3d.io.read_point_cloud(str(source))
    if len(cloud.points) == 0:
        raise unreadable(source, "could not be read as a point cloud, or holds no points")
    return Cloud(
        points=np.asarray(cloud.points, dtype=np.float64).copy(),
        normals=np.asarray(cloud.normals, dtype=np.float64).copy() if cloud.has_normals() else None,
        colours=np.asarray(cloud.colors, dtype=np.float64).copy() if cloud.has_colors() else None,
    )
