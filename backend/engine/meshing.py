"""Marching cubes on a signed distance function, with bounded memory.

The SDF is evaluated slab by slab along the first axis, at most ``chunk_points`` at a time, into
one float32 volume (512^3 is 0.5 GB), and scikit-image's marching cubes extracts the zero level
set. Triangles face outward (positive side) for a field that is negative inside.
"""

from __future__ import annotations

from typing import Callable

import numpy as np
import torch
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components
from scipy.spatial import cKDTree
from skimage.measure import marching_cubes

SdfFunction = Callable[[torch.Tensor], torch.Tensor]


def grid_shape(lo: np.ndarray, hi: np.ndarray, resolution: int) -> tuple[np.ndarray, float]:
    """Points per axis and the voxel size for ``resolution`` points along the longest side."""
    extent = np.asarray(hi, dtype=np.float64) - np.asarray(lo, dtype=np.float64)
    voxel = float(extent.max()) / (resolution - 1)
    counts = np.maximum(np.ceil(extent / voxel).astype(int) + 1, 2)
    return counts, voxel


@torch.no_grad()
def evaluate_grid(
    sdf: SdfFunction,
    lo: np.ndarray,
    counts: np.ndarray,
    voxel: float,
    chunk_points: int,
    device: torch.device,
) -> np.ndarray:
    """SDF values on the grid ``lo + voxel * (i, j, k)`` as a float32 array of shape ``counts``."""
    nx, ny, nz = (int(c) for c in counts)
    volume = np.empty((nx, ny, nz), dtype=np.float32)
    ys = torch.arange(ny, device=device, dtype=torch.float32) * voxel + float(lo[1])
    zs = torch.arange(nz, device=device, dtype=torch.float32) * voxel + float(lo[2])
    yy, zz = torch.meshgrid(ys, zs, indexing="ij")
    plane = torch.stack([yy.reshape(-1), zz.reshape(-1)], dim=1)
    plane_points = ny * nz
    start = 0
    rows_per_chunk = max(1, chunk_points // plane_points)
    while start < nx:
        stop = min(nx, start + rows_per_chunk)
        xs = torch.arange(start, stop, device=device, dtype=torch.float32) * voxel + float(lo[0])
        if plane_points <= chunk_points:
            pts = torch.cat(
                [xs.repeat_interleave(plane_points)[:, None], plane.repeat(stop - start, 1)], dim=1
            )
            volume[start:stop] = sdf(pts).reshape(stop - start, ny, nz).float().cpu().numpy()
        else:
            for row, x in enumerate(xs):
                out = np.empty(plane_points, dtype=np.float32)
                for c0 in range(0, plane_points, chunk_points):
                    part = plane[c0 : c0 + chunk_points]
                    pts = torch.cat([x.expand(len(part), 1), part], dim=1)
                    out[c0 : c0 + len(part)] = sdf(pts).float().cpu().numpy()
                volume[start + row] = out.reshape(ny, nz)
        start = stop
    return volume


def marching_cubes_volume(volume: np.ndarray, lo: np.ndarray, voxel: float) -> tuple[np.ndarray, np.ndarray]:
    """Zero level set of a sampled field; empty arrays when the field does not cross zero."""
    if not (volume.min() < 0.0 < volume.max()):
        return np.zeros((0, 3), np.float64), np.zeros((0, 3), np.int64)
    verts, faces, _, _ = marching_cubes(volume, level=0.0, spacing=(voxel, voxel, voxel))
    return verts + np.asarray(lo, dtype=np.float64), faces.astype(np.int64)


def extract_mesh(
    sdf: SdfFunction,
    lo: np.ndarray,
    hi: np.ndarray,
    resolution: int,
    chunk_points: int,
    device: torch.device,
    band: bool = False,
) -> tuple[np.ndarray, np.ndarray]:
    """Mesh of ``sdf = 0`` inside the box ``[lo, hi]`` at ``resolution`` along its longest side.

    ``band=True`` evaluates the field exactly only near its zero level set (:func:`evaluate_band`);
    the surface is the same, at a fraction of the evaluations.
    """
    counts, voxel = grid_shape(lo, hi, resolution)
    origin = np.asarray(lo, dtype=np.float64)
    if band:
        volume, _ = evaluate_band(sdf, origin, counts, voxel, chunk_points, device)
    else:
        volume = evaluate_grid(sdf, origin, counts, voxel, chunk_points, device)
    return marching_cubes_volume(volume, lo, voxel)


BAND_BLOCK = 16
"""Fine cells per coarsest cell along each axis in narrow-band meshing (a power of two)."""
BAND_MARGIN = 1.5
"""A cell is refined when a corner's |f| is under this many cell diagonals, or signs differ.

For a field with ``|grad f| <= 1`` (a signed distance) one diagonal is enough: no corner can then
be farther than that from a surface inside the cell. A fitted SIREN's slope strays a little
from 1, hence the margin.
"""


@torch.no_grad()
def _evaluate_points(sdf: SdfFunction, lo: np.ndarray, voxel: float, index: np.ndarray,
                     chunk_points: int, device: torch.device) -> np.ndarray:
    """SDF at the grid points ``lo + voxel * index`` ((M, 3) integer indices), chunk by chunk."""
    out = np.empty(len(index), dtype=np.float32)
    origin = torch.as_tensor(lo, dtype=torch.float32, device=device)
    for start in range(0, len(index), chunk_points):
        part = torch.as_tensor(index[start : start + chunk_points], device=device).float()
        out[start : start + len(part)] = sdf(origin + voxel * part).float().cpu().numpy()
    return out


def evaluate_band(
    sdf: SdfFunction,
    lo: np.ndarray,
    counts: np.ndarray,
    voxel: float,
    chunk_points: int,
    device: torch.device,
    block: int = BAND_BLOCK,
    margin: float = BAND_MARGIN,
) -> tuple[np.ndarray, float]:
    """The grid of :func:`evaluate_grid`, evaluated exactly only near the zero level set.

    Coarse to fine: the corners of cells of ``block`` voxels are evaluated; a cell with a corner
    within ``margin`` diagonals of zero (or with corners of both signs) is split in eight and
    the new corners evaluated, down to single voxels. A cell that is not split cannot hold
    surface, so its points take one of its corners' values, whose sign is right; marching cubes
    then finds crossings only where the field was evaluated exactly. Returns the volume and the
    share of grid points evaluated.
    """
    n = [int(c) for c in counts]
    padded = [((c - 1 + block - 1) // block) * block + 1 for c in n]  # every level a regular lattice
    volume = np.zeros(padded, dtype=np.float32)
    known = np.zeros(padded, dtype=bool)
    evaluated = 0

    def evaluate(mask: np.ndarray, step: int) -> None:
        nonlocal evaluated
        index = np.argwhere(mask) * step
        volume[tuple(index.T)] = _evaluate_points(sdf, lo, voxel, index, chunk_points, device)
        known[tuple(index.T)] = True
        evaluated += len(index)

    step = block
    evaluate(np.ones([(p - 1) // step + 1 for p in padded], dtype=bool), step)
    considered = np.ones([(p - 1) // step for p in padded], dtype=bool)
    while True:
        lattice = volume[::step, ::step, ::step]
        corners = [lattice[dx : dx + considered.shape[0], dy : dy + considered.shape[1], dz : dz + considered.shape[2]]
                   for dx in (0, 1) for dy in (0, 1) for dz in (0, 1)]
        near = np.zeros(considered.shape, dtype=bool)
        for corner in corners:
            near |= (np.abs(corner) <= margin * step * voxel * np.sqrt(3.0)) | ((corner > 0) != (corners[0] > 0))
        active = considered & near
        quiet = considered & ~near
        if quiet.any():  # fill the cells that hold no surface with a corner value of the right sign
            cell = [np.minimum(np.arange(p) // step, considered.shape[k] - 1) for k, p in enumerate(padded)]
            inside = quiet[np.ix_(*cell)] & ~known
            volume[inside] = corners[0][np.ix_(*cell)][inside]
        if step == 1 or not active.any():
            break
        half = step // 2
        closure = np.zeros([(p - 1) // half + 1 for p in padded], dtype=bool)
        for dx in range(3):
            for dy in range(3):
                for dz in range(3):
                    closure[dx : dx + 2 * active.shape[0] : 2, dy : dy + 2 * active.shape[1] : 2,
                            dz : dz + 2 * active.shape[2] : 2] |= active
        evaluate(closure & ~known[::half, ::half, ::half], half)
        considered = np.repeat(np.repeat(np.repeat(active, 2, axis=0), 2, axis=1), 2, axis=2)
        step = half
    return volume[: n[0], : n[1], : n[2]], evaluated / float(np.prod(n))


def face_areas(vertices: np.ndarray, faces: np.ndarray) -> np.ndarray:
    a, b, c = (vertices[faces[:, i]] for i in range(3))
    return 0.5 * np.linalg.norm(np.cross(b - a, c - a), axis=1)


def component_labels(vertex_count: int, faces: np.ndarray) -> tuple[int, np.ndarray]:
    """Connected components of a triangle mesh by shared vertices: (count, label per face)."""
    if len(faces) == 0:
        return 0, np.zeros(0, dtype=np.int64)
    rows = np.concatenate([faces[:, 0], faces[:, 1]])
    cols = np.concatenate([faces[:, 1], faces[:, 2]])
    graph = coo_matrix((np.ones(len(rows), dtype=np.int8), (rows, cols)), shape=(vertex_count, vertex_count))
    count, vertex_labels = connected_components(graph, directed=False)
    return int(count), vertex_labels[faces[:, 0]]


def remove_small_components(
    vertices: np.ndarray, faces: np.ndarray, min_fraction: float
) -> tuple[np.ndarray, np.ndarray]:
    """Drop connected pieces whose area is below ``min_fraction`` of the total area.

    A SIREN fit can leave small detached sheets in empty space (ghost geometry); they carry
    little area, so an area share separates them from real parts.
    """
    if min_fraction <= 0.0 or len(faces) == 0:
        return vertices, faces
    _, labels = component_labels(len(vertices), faces)
    areas = np.bincount(labels, weights=face_areas(vertices, faces))
    keep_labels = areas >= min_fraction * areas.sum()
    keep_faces = faces[keep_labels[labels]]
    return compact(vertices, keep_faces)


def drop_unsupported_components(
    vertices: np.ndarray,
    faces: np.ndarray,
    support: cKDTree,
    distance: float,
    min_share: float,
) -> tuple[np.ndarray, np.ndarray]:
    """Drop connected pieces that the input points do not explain.

    A piece is kept when at least ``min_share`` of its area lies within ``distance`` of an
    input point. A fit can leave detached sheets in empty space ("ghost geometry") where no
    point constrains the field; real parts pass through the cloud. The piece with the most
    supported area is always kept, so a poor fit is never emptied.
    """
    if min_share <= 0.0 or len(faces) == 0:
        return vertices, faces
    count, labels = component_labels(len(vertices), faces)
    areas = face_areas(vertices, faces)
    centroids = vertices[faces].mean(axis=1)
    near = support.query(centroids, k=1, distance_upper_bound=distance)[0] <= distance
    total = np.bincount(labels, weights=areas, minlength=count)
    supported = np.bincount(labels, weights=areas * near, minlength=count)
    keep = supported >= min_share * np.maximum(total, 1e-30)
    keep[int(np.argmax(supported))] = True
    if keep.all():
        return vertices, faces
    return compact(vertices, faces[keep[labels]])


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


def compact(vertices: np.ndarray, faces: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Drop vertices no face uses and renumber the faces."""
    used = np.unique(faces)
    remap = np.full(len(vertices), -1, dtype=np.int64)
    remap[used] = np.arange(len(used))
    return vertices[used], remap[faces]
