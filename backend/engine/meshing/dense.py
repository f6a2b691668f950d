"""The dense path of meshing: the field on every grid point, slab by slab, then marching cubes.

The SDF is evaluated slab by slab along the first axis, at most ``chunk_points`` at a time, into
one float32 volume (512^3 is 0.5 GB), and scikit-image's marching cubes extracts the zero level
set. Triangles face outward (positive side) for a field that is negative inside.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
from skimage.measure import marching_cubes

SdfFunction = Callable[[torch.Tensor], torch.Tensor]




def grid_shape(lo: np.ndarray, hi: np.ndarray, resolution: int) -> tuple[np.ndarray, float]:
    """Points per axis and the voxel size for ``resolution`` points along the longest side."""
    extent = np.asarray(hi, dtype=np.float64) - np.asarray(lo, dtype=np.float64)
    voxel = float(extent.max()) / (resolution - 1)
    counts = np.maximum(np.ceil(extent / voxel).astype(int) + 1, 2)
    return counts, voxel


def resolution_for_voxel(side: float, voxel: float) -> int:
    """Grid points along a side of length ``side`` for a spacing of at most ``voxel``."""
    return max(int(np.ceil(side / voxel)) + 1, 2)


@torch.no_grad()
def evaluate_grid(
    sdf: SdfFunction,
    lo: np.ndarray,
    counts: np.ndarray,
    voxel: float,
    chunk_points: int,
    device: torch.device,
    start: np.ndarray | None = None,
) -> np.ndarray:
    """SDF values on the grid ``lo + voxel * (start + (i, j, k))`` as a float32 array of shape
    ``counts`` (``start``: the block's first point on a larger lattice, default 0)."""
    nx, ny, nz = (int(c) for c in counts)
    sx, sy, sz = (0, 0, 0) if start is None else (int(s) for s in start)
    volume = np.empty((nx, ny, nz), dtype=np.float32)
    ys = torch.arange(sy, sy + ny, device=device, dtype=torch.float32) * voxel + float(lo[1])
    zs = torch.arange(sz, sz + nz, device=device, dtype=torch.float32) * voxel + float(lo[2])
    yy, zz = torch.meshgrid(ys, zs, indexing="ij")
    plane = torch.stack([yy.reshape(-1), zz.reshape(-1)], dim=1)
    plane_points = ny * nz
    first = 0
    rows_per_chunk = max(1, chunk_points // plane_points)
    while first < nx:
        stop = min(nx, first + rows_per_chunk)
        xs = torch.arange(sx + first, sx + stop, device=device, dtype=torch.float32) * voxel + float(lo[0])
        if plane_points <= chunk_points:
            pts = torch.cat(
                [xs.repeat_interleave(plane_points)[:, None], plane.repeat(stop - first, 1)], dim=1
            )
            volume[first:stop] = sdf(pts).reshape(stop - first, ny, nz).float().cpu().numpy()
        else:
            for row, x in enumerate(xs):
                out = np.empty(plane_points, dtype=np.float32)
                for c0 in range(0, plane_points, chunk_points):
                    part = plane[c0 : c0 + chunk_points]
                    pts = torch.cat([x.expand(len(part), 1), part], dim=1)
                    out[c0 : c0 + len(part)] = sdf(pts).float().cpu().numpy()
                volume[first + row] = out.reshape(ny, nz)
        first = stop
    return volume


def empty_mesh() -> tuple[np.ndarray, np.ndarray]:
    """The mesh of a field that does not cross zero: no vertices, no faces."""
    return np.zeros((0, 3), np.float64), np.zeros((0, 3), np.int64)


def crosses_zero(values: np.ndarray) -> bool:
    """Whether a block of field values has both signs, so that marching cubes finds a surface."""
    return bool(values.min() < 0.0 < values.max())


def marching_cubes_volume(volume: np.ndarray, lo: np.ndarray, voxel: float) -> tuple[np.ndarray, np.ndarray]:
    """Zero level set of a sampled field; empty arrays when the field does not cross zero."""
    if not crosses_zero(volume):
        return empty_mesh()
    verts, faces, _, _ = marching_cubes(volume, level=0.0, spacing=(voxel, voxel, voxel))
    return verts + np.asarray(lo, dtype=np.float64), faces.astype(np.int64)

