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
) -> tuple[np.ndarray, np.ndarray]:
    """Mesh of ``sdf = 0`` inside the box ``[lo, hi]`` at ``resolution`` along its longest side."""
    counts, voxel = grid_shape(lo, hi, resolution)
    volume = evaluate_grid(sdf, np.asarray(lo, dtype=np.float64), counts, voxel, chunk_points, device)
    return marching_cubes_volume(volume, lo, voxel)


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
