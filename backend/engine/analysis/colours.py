"""Carrying the input's point colours onto a reconstructed mesh."""

from __future__ import annotations

import numpy as np

from .cloud_index import CloudIndex, as_index


def transfer_colours(
    cloud: np.ndarray | CloudIndex, colours: np.ndarray, vertices: np.ndarray, neighbours: int = 4
) -> np.ndarray:
    """Colour of each vertex: inverse-distance mean of its ``neighbours`` nearest input points.

    ``cloud`` is the input points, or an index over them built once for every mesh of a job
    (over its working set when the cloud is larger than ``cloud_index.WORKING_POINTS``);
    ``colours`` has a row per input point."""
    index = as_index(cloud)
    k = min(neighbours, len(index))
    distances, rows = index.query(vertices, k=k)
    if k == 1:
        distances, rows = distances[:, None], rows[:, None]
    weights = 1.0 / np.maximum(distances, 1e-12)
    weights /= weights.sum(axis=1, keepdims=True)
    source = index.take(np.asarray(colours))
    return np.einsum("vk,vkc->vc", weights, np.asarray(source, dtype=np.float64)[rows]).astype(np.float32)
