"""Carrying the input's point colours onto a reconstructed mesh."""

from __future__ import annotations

import numpy as np
from scipy.spatial import cKDTree


def transfer_colours(points: np.ndarray, colours: np.ndarray, vertices: np.ndarray, neighbours: int = 4) -> np.ndarray:
    """Colour of each vertex: inverse-distance mean of its ``neighbours`` nearest input points."""
    k = min(neighbours, len(points))
    distances, index = cKDTree(points).query(vertices, k=k)
    if k == 1:
        distances, index = distances[:, None], index[:, None]
    weights = 1.0 / np.maximum(distances, 1e-12)
    weights /= weights.sum(axis=1, keepdims=True)
    return np.einsum("vk,vkc->vc", weights, np.asarray(colours, dtype=np.float64)[index]).astype(np.float32)
