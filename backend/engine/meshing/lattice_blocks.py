"""A lattice meshed block by block: each block's surface on its own (in any process, in any
order), then the blocks' surfaces welded along the faces they share into the lattice's mesh.

A block is a box of lattice points whose first point lies on a multiple of the narrow band's
cube (:data:`~.narrow_band.BAND_BLOCK`), so its cubes are the whole lattice's cubes. Two
neighbouring blocks share the plane of points between them, and each evaluates it at the
lattice's very coordinates. A network's value at a point can differ in the last bits with the
batch it is computed in, so the vertices of the two copies of a shared edge may differ by about
1e-7 voxel: they are welded by the lattice edge they lie on, not by their coordinates.
"""

from __future__ import annotations

import itertools

import numpy as np
import torch
from skimage.measure import marching_cubes

from .dense import SdfFunction, crosses_zero, empty_mesh, evaluate_grid
from .narrow_band import BAND_BLOCK, band_surface_grid, evaluate_band, weld_exact


def block_side(voxels: float) -> int:
    """Cells along a block's side for about ``voxels`` cells: a multiple of ``BAND_BLOCK``, at
    least one."""
    return max(1, int(round(voxels / BAND_BLOCK))) * BAND_BLOCK


def split_lattice(counts: np.ndarray, side: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """``(start, counts)`` of the blocks of at most ``side`` cells a side (``side`` a multiple of
    ``BAND_BLOCK``) that cover a lattice of ``counts`` points, in C order; neighbours share the
    plane of points between them."""
    if side <= 0 or side % BAND_BLOCK:
        raise ValueError(f"a block's side must be a positive multiple of {BAND_BLOCK} cells, not {side}")
    n = np.asarray(counts, dtype=np.int64)
    starts = [range(0, max(int(c) - 1, 1), side) for c in n]
    blocks = []
    for start in itertools.product(*starts):
        first = np.asarray(start, dtype=np.int64)
        blocks.append((first, np.minimum(first + side, n - 1) - first + 1))
    return blocks


def mesh_block(sdf: SdfFunction, lo: np.ndarray, voxel: float, start: np.ndarray, counts: np.ndarray,
               chunk_points: int, device: torch.device, band: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """The surface of ``sdf = 0`` in one block of the lattice ``lo + voxel * (i, j, k)``: the block's
    ``counts`` points from point ``start`` on. Vertices in the lattice's grid units (float64, the
    block's ``start`` added), faces int64; ``band`` as in :func:`~siren_recon.engine.meshing.extract_mesh`."""
    start = np.asarray(start, dtype=np.int64)
    if band:
        blocks, _ = evaluate_band(sdf, np.asarray(lo, dtype=np.float64), counts, voxel, chunk_points, device,
                                  start=start)
        points, faces = band_surface_grid(blocks, voxel)
    else:
        volume = evaluate_grid(sdf, lo, counts, voxel, chunk_points, device, start)
        if not crosses_zero(volume):
            return empty_mesh()
        verts, tris, _, _ = marching_cubes(volume, level=0.0)
        points, faces = verts.astype(np.float64), tris.astype(np.int64)
    return points + start, faces


def join_blocks(pieces: list[tuple[np.ndarray, np.ndarray]], lo: np.ndarray, voxel: float
                ) -> tuple[np.ndarray, np.ndarray]:
    """The blocks' surfaces (:func:`mesh_block`, in grid units) as one mesh at ``lo + voxel * p``:
    vertices on the same lattice edge of a block's face welded into one (see the module
    docstring). Empty arrays when no block has a surface."""
    pieces = [(points, faces) for points, faces in pieces if len(faces)]
    if not pieces:
        return empty_mesh()
    offsets = np.cumsum([0] + [len(points) for points, _ in pieces])
    points = np.concatenate([p for p, _ in pieces])
    faces = np.concatenate([f + offset for (_, f), offset in zip(pieces, offsets)])
    whole = np.floor(points)
    axis = np.argmax(points - whole, axis=1)  # the edge's direction: the one coordinate off the lattice
    corner = whole.astype(np.int64)
    across = np.arange(3)[None, :] != axis[:, None]
    # blocks start on multiples of BAND_BLOCK: only a vertex on such a plane can have a copy
    candidates = np.flatnonzero((across & (corner % BAND_BLOCK == 0)).any(axis=1))
    keys = np.column_stack([corner[candidates], axis[candidates]])
    points, faces = weld_exact(points, faces, candidates, keys)
    return np.asarray(lo, dtype=np.float64) + voxel * points, faces
