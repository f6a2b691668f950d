"""A regular grid over the network's cube ``[-1, 1]^3``, on which the sign prior and the clearance
term both hold what they look up during the refinement."""

from __future__ import annotations

import numpy as np


def cube_nodes(resolution: int) -> np.ndarray:
    """(R^3, 3) nodes of the grid with ``resolution`` nodes along each axis, x slowest."""
    axis = np.linspace(-1.0, 1.0, resolution)
    return np.stack(np.meshgrid(axis, axis, axis, indexing="ij"), axis=-1).reshape(-1, 3)
