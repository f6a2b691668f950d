"""Cutting away surface far from every input point (open scans)."""

from __future__ import annotations

import numpy as np
from scipy.spatial import cKDTree

from .cleanup import compact


def trim_far_faces(
    vertices: np.ndarray, faces: np.ndarray, support: cKDTree, distance: float
) -> tuple[np.ndarray, np.ndarray]:
    """Cut away every face whose centre is farther than ``distance`` from all input points.

    For open scans: a signed distance field is closed by nature, so it caps the unscanned side
    with a surface no point asked for. Trimming leaves the mesh open there instead.
    """
    if distance <= 0.0 or len(faces) == 0:
        return vertices, faces
    centroids = vertices[faces].mean(axis=1)
    near = support.query(centroids, k=1, distance_upper_bound=distance)[0] <= distance
    return compact(vertices, faces[near])


