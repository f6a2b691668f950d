"""Normal directions of a cloud without normals, from the principal axes of its neighbourhoods.

A direction estimated this way is the axis of least spread of a point's ``k`` nearest
neighbours: the surface normal up to sign. Its sign cannot be known locally, which is why the
unoriented trainer only uses it as a direction (``1 - |cos|``), and only once the divergence
phase has given the field one consistent inside and outside.
"""

from __future__ import annotations

import numpy as np
from scipy.spatial import cKDTree

CHUNK = 65_536
"""Points whose neighbourhoods are analysed at once (bounds memory on large clouds)."""


def estimate_directions(points: np.ndarray, neighbours: int = 30) -> np.ndarray:
    """Unit normal directions (N, 3), float32, of ``points`` (N, 3); signs are arbitrary."""
    pts = np.asarray(points, dtype=np.float64)
    k = int(min(max(neighbours, 3), len(pts)))
    tree = cKDTree(pts)
    out = np.empty((len(pts), 3), np.float32)
    for start in range(0, len(pts), CHUNK):
        chunk = pts[start : start + CHUNK]
        _, idx = tree.query(chunk, k=k)
        hood = pts[idx.reshape(len(chunk), k)]
        hood = hood - hood.mean(axis=1, keepdims=True)
        covariance = np.einsum("nki,nkj->nij", hood, hood)
        _, vectors = np.linalg.eigh(covariance)
        out[start : start + CHUNK] = vectors[:, :, 0]  # eigenvalues ascend: least spread first
    return out
