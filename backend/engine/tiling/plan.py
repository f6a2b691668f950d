"""Cutting a cloud's box into tiles: each tile's own part (its core) and the band it reaches into
its neighbours'."""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import numpy as np

from ...protocol.messages import MIN_POINTS
from ..config.reconstruction import ReconstructionConfig
from .box_members import points_in_boxes


@dataclass(frozen=True)
class Tile:
    """One tile, in the cloud's own coordinates."""

    core_lo: np.ndarray
    """float64 (3,): the corner of the tile's own part of the box; the cores of all tiles partition it."""
    core_hi: np.ndarray
    margin: float
    """How far the tile reaches past its core on every side (the blend band)."""
    indices: np.ndarray
    """int64: the cloud's points inside the core grown by ``margin``, which the tile trains on."""

    @property
    def lo(self) -> np.ndarray:
        return self.core_lo - self.margin

    @property
    def hi(self) -> np.ndarray:
        return self.core_hi + self.margin


def plan_tiles(points: np.ndarray, size: float, overlap: float, padding: float = 0.0) -> list[Tile]:
    """The tiles of ``points``' box grown by ``padding`` of its longest side: as many per axis as
    edges of at most ``size`` need (equal along each axis), each reaching ``overlap`` of its longest
    edge into its neighbours. Tiles with fewer than ``MIN_POINTS`` points to train on are left
    out: nothing lies there to fit."""
    points = np.asarray(points, dtype=np.float64)
    lo, hi = points.min(axis=0), points.max(axis=0)
    grow = padding * float((hi - lo).max())
    lo, hi = lo - grow, hi + grow
    counts = np.maximum(np.ceil((hi - lo) / size).astype(int), 1)
    edge = (hi - lo) / counts
    margin = overlap * float(edge.max())
    cells = [np.asarray(cell) for cell in itertools.product(*(range(int(c)) for c in counts))]
    core_lo = [lo + cell * edge for cell in cells]
    core_hi = [np.where(cell == counts - 1, hi, low + edge) for cell, low in zip(cells, core_lo)]
    members = points_in_boxes(points, np.array(core_lo) - margin, np.array(core_hi) + margin)
    return [Tile(low, high, margin, indices) for low, high, indices in zip(core_lo, core_hi, members)
            if len(indices) >= MIN_POINTS]


def tile_edge(points: np.ndarray, config: ReconstructionConfig) -> float:
    """The tiles' edge for ``points`` under ``config``: ``tiles.size`` when given; else, with a
    ``mesh.voxel_size``, ``tiles.voxels`` voxels when the box grown by ``mesh.padding`` is longer
    than that; else 0: one field."""
    tiles, mesh = config.tiles, config.mesh
    if tiles.size > 0:
        return tiles.size
    if mesh.voxel_size <= 0 or tiles.voxels <= 0:
        return 0.0
    extent = np.ptp(np.asarray(points, dtype=np.float64), axis=0)
    edge = tiles.voxels * mesh.voxel_size
    return edge if float(extent.max()) * (1.0 + 2.0 * mesh.padding) > edge else 0.0
