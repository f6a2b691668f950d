"""A regular grid over the network's cube ``[-1, 1]^3`` and each node's distance to the cloud,
which the sign prior and the clearance term both look up during the refinement."""

from __future__ import annotations

import numpy as np

from ..analysis.cloud_index import CloudIndex, as_index


def cube_nodes(resolution: int) -> np.ndarray:
    """(R^3, 3) nodes of the grid with ``resolution`` nodes along each axis, x slowest."""
    axis = np.linspace(-1.0, 1.0, resolution)
    return np.stack(np.meshgrid(axis, axis, axis, indexing="ij"), axis=-1).reshape(-1, 3)


def distance_to_cloud(nodes: np.ndarray, cloud: np.ndarray | CloudIndex, cap: float = np.inf) -> np.ndarray:
    """Distance from each node to the nearest point of ``cloud`` (points, or their index), at most
    ``cap`` (nodes farther than ``cap`` are answered without a full search)."""
    return as_index(cloud).distance(nodes, cap)
