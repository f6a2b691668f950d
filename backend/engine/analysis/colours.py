"""Carrying the input's point colours onto a reconstructed mesh."""

from __future__ import annotations

import numpy as np

from ..errors import InputError
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


class VertexColours:
    """A cloud's colours carried onto any mesh of it, through one index over the cloud (over its
    working set when it is larger than ``cloud_index.WORKING_POINTS``), built at the first mesh."""

    def __init__(self, points: np.ndarray, colours: np.ndarray) -> None:
        if len(colours) != len(points):
            raise InputError(f"{len(colours)} colours for {len(points)} points: give one per point", "bad_shape")
        self.points = points
        self.colours = colours
        self.index: CloudIndex | None = None

    def __call__(self, vertices: np.ndarray) -> np.ndarray | None:
        """Each vertex's colour (see :func:`transfer_colours`), or ``None`` for a mesh without vertices."""
        if not len(vertices):
            return None
        if self.index is None:
            self.index = CloudIndex.build(self.points, seed=0)
        return transfer_colours(self.index, self.colours, vertices)
