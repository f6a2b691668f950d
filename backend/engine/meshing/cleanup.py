"""Cleaning an extracted mesh: connected pieces, small pieces and pieces the cloud does not support."""

from __future__ import annotations

import numpy as np
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

from ..analysis.cloud_index import CloudIndex


def face_areas(vertices: np.ndarray, faces: np.ndarray) -> np.ndarray:
    """(F,) the area of each face."""
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
    vertices: np.ndarray, faces: np.ndarray, min_fraction: float, areas: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Drop connected pieces whose area is below ``min_fraction`` of the total area (``areas``:
    the faces' :func:`face_areas`, where already known).

    A SIREN fit can leave small detached sheets in empty space (ghost geometry); they carry
    little area, so an area share separates them from real parts.
    """
    if min_fraction <= 0.0 or len(faces) == 0:
        return vertices, faces
    _, labels = component_labels(len(vertices), faces)
    areas = np.bincount(labels, weights=face_areas(vertices, faces) if areas is None else areas)
    keep_labels = areas >= min_fraction * areas.sum()
    keep_faces = faces[keep_labels[labels]]
    return compact(vertices, keep_faces)


def face_gaps(vertices: np.ndarray, faces: np.ndarray, support: CloudIndex, distance: float) -> np.ndarray:
    """Distance from each face's centre to the nearest input point; ``inf`` beyond ``distance``."""
    return support.query(vertices[faces].mean(axis=1), k=1, distance_upper_bound=distance)[0]


def drop_unsupported_components(
    vertices: np.ndarray,
    faces: np.ndarray,
    support: CloudIndex,
    distance: float,
    min_share: float,
    regions: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Drop connected pieces that the input points do not explain.

    A piece is kept when at least ``min_share`` of its area lies within ``distance`` of an
    input point. A fit can leave detached sheets in empty space ("ghost geometry") where no
    point constrains the field; real parts pass through the cloud. The piece with the most
    supported area is always kept, so a poor fit is never emptied; with ``regions`` (an int per
    face: the tile of a tiled fit it lies in, -1 for none), the piece with the most supported area
    in each region is, so no tile's surface is emptied for another's.
    """
    if min_share <= 0.0 or len(faces) == 0:
        return vertices, faces
    near = face_gaps(vertices, faces, support, distance) <= distance
    keep = supported_faces(vertices, faces, near, min_share, regions)
    if keep.all():
        return vertices, faces
    return compact(vertices, faces[keep])


def supported_faces(
    vertices: np.ndarray, faces: np.ndarray, near: np.ndarray, min_share: float,
    regions: np.ndarray | None = None, areas: np.ndarray | None = None,
) -> np.ndarray:
    """(F,) bool: the faces of the pieces :func:`drop_unsupported_components` keeps, given ``near``
    (F,) bool: whether each face's centre lies within its distance of an input point (``areas``:
    the faces' :func:`face_areas`, where already known)."""
    count, labels = component_labels(len(vertices), faces)
    areas = face_areas(vertices, faces) if areas is None else areas
    total = np.bincount(labels, weights=areas, minlength=count)
    supported = np.bincount(labels, weights=areas * near, minlength=count)
    keep = supported >= min_share * np.maximum(total, 1e-30)
    if regions is None:
        keep[int(np.argmax(supported))] = True
    else:
        keep[best_in_each_region(labels, areas * near, regions)] = True
    return keep[labels]


def best_in_each_region(labels: np.ndarray, weights: np.ndarray, regions: np.ndarray) -> np.ndarray:
    """For each region (``regions`` >= 0, an int per face) the label whose faces in it weigh most
    (the lowest such label; 0 where every weight there is 0), in one pass over the faces."""
    inside = regions >= 0
    if not inside.any():
        return np.zeros(0, dtype=np.int64)
    _, region = np.unique(regions[inside], return_inverse=True)
    label = labels[inside].astype(np.int64)
    span = int(label.max()) + 1
    pairs, pair = np.unique(region.astype(np.int64) * span + label, return_inverse=True)
    sums = np.bincount(pair.reshape(-1), weights=weights[inside])
    pair_region, pair_label = pairs // span, pairs % span
    order = np.lexsort((pair_label, -sums, pair_region))
    first = order[np.r_[True, pair_region[order][1:] != pair_region[order][:-1]]]
    return np.where(sums[first] > 0, pair_label[first], 0)


def compact(vertices: np.ndarray, faces: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Drop vertices no face uses and renumber the faces."""
    used = np.unique(faces)
    remap = np.full(len(vertices), -1, dtype=np.int64)
    remap[used] = np.arange(len(used))
    return vertices[used], remap[faces]
