"""Geometry between Blender's arrays and the backend's, in plain NumPy (no bpy).

Everything the backend receives is in world space; previews are built in world space too and
given an identity transform, so they sit exactly over their sources whatever those sources'
location, rotation and scale.
"""

from __future__ import annotations

import numpy as np

SURFACE_SAMPLES = 20_000
"""Points sampled on a mesh that has faces (its vertices alone may be far too few)."""

WIRE_CHUNK = 1_000_000
"""Points brought to world space at once by :func:`wire_cloud` (bounds its float64 temporaries)."""


def to_world(points: np.ndarray, matrix: np.ndarray) -> np.ndarray:
    """Apply a 4x4 object matrix to (N, 3) points."""
    m = np.asarray(matrix, dtype=np.float64)
    return np.asarray(points, dtype=np.float64) @ m[:3, :3].T + m[:3, 3]


def normals_to_world(normals: np.ndarray, matrix: np.ndarray) -> np.ndarray:
    """Transform normals by the inverse transpose of the matrix and renormalise."""
    linear = np.asarray(matrix, dtype=np.float64)[:3, :3]
    out = np.asarray(normals, dtype=np.float64) @ np.linalg.inv(linear)
    length = np.linalg.norm(out, axis=1, keepdims=True)
    return out / np.maximum(length, 1e-30)


def wire_cloud(
    points: np.ndarray,
    normals: np.ndarray | None,
    colours: np.ndarray | None,
    matrix: np.ndarray,
    chunk: int = WIRE_CHUNK,
) -> tuple[np.ndarray, np.ndarray | None, np.ndarray | None]:
    """Object-space points, normals and colours as the backend takes them: world space, float32,
    contiguous (sent without another copy).

    Made chunk by chunk into preallocated arrays, so a cloud of ten million points needs no
    float64 copy of itself; NumPy releases the GIL meanwhile, so this runs off Blender's UI thread.
    """
    count = len(points)
    world = np.empty((count, 3), np.float32)
    turned = None if normals is None else np.empty((count, 3), np.float32)
    for start in range(0, count, chunk):
        rows = slice(start, start + chunk)
        world[rows] = to_world(points[rows], matrix)
        if turned is not None and normals is not None:
            turned[rows] = normals_to_world(normals[rows], matrix)
    rgb = None if colours is None else np.ascontiguousarray(np.asarray(colours)[:, :3], dtype=np.float32)
    return world, turned, rgb


def sample_triangles(
    vertices: np.ndarray,
    triangles: np.ndarray,
    count: int,
    colours: np.ndarray | None = None,
    seed: int = 0,
) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """``count`` points area-uniformly on triangles, with face normals and interpolated colours."""
    v = np.asarray(vertices, dtype=np.float64)
    t = np.asarray(triangles, dtype=np.int64)
    a, b, c = v[t[:, 0]], v[t[:, 1]], v[t[:, 2]]
    cross = np.cross(b - a, c - a)
    area = np.linalg.norm(cross, axis=1)
    if area.sum() <= 0:
        raise ValueError("the mesh has no surface area")
    rng = np.random.default_rng(seed)
    chosen = rng.choice(len(t), size=count, p=area / area.sum())
    u = rng.random((count, 2))
    flip = u.sum(axis=1) > 1
    u[flip] = 1 - u[flip]
    w = np.column_stack([1 - u.sum(axis=1), u])
    points = (w[:, :, None] * v[t[chosen]]).sum(axis=1)
    normals = cross[chosen] / np.maximum(area[chosen, None], 1e-30)
    sampled = None
    if colours is not None:
        sampled = (w[:, :, None] * np.asarray(colours, dtype=np.float64)[t[chosen]]).sum(axis=1)
    return points, normals, sampled


def corner_to_point(values: np.ndarray, corner_vertex: np.ndarray, vertex_count: int) -> np.ndarray:
    """Average per-corner values (e.g. a face-corner colour layer) onto the vertices."""
    sums = np.zeros((vertex_count, values.shape[1]))
    np.add.at(sums, corner_vertex, values)
    counts = np.bincount(corner_vertex, minlength=vertex_count)[:, None]
    return sums / np.maximum(counts, 1)


COLOUR_TYPES = ("FLOAT_COLOR", "BYTE_COLOR")
PREFERRED_COLOUR_NAMES = ("Col", "Color", "color", "rgb", "RGB")


def point_colour_attribute(attributes: list[tuple[str, str, str]]) -> str | None:
    """The colour attribute to send from a point cloud's ``(name, data_type, domain)`` list.

    Point clouds have no active colour: a per-point colour attribute named like one of
    ``PREFERRED_COLOUR_NAMES`` wins, else the first per-point colour attribute that is not
    Blender-internal (a name starting with ``.``); ``None`` when there is none.
    """
    colours = [name for name, kind, domain in attributes
               if kind in COLOUR_TYPES and domain == "POINT" and not name.startswith(".")]
    preferred = [name for name in PREFERRED_COLOUR_NAMES if name in colours]
    return (preferred or colours or [None])[0]


def blender_mesh_arrays(vertices: np.ndarray, faces: np.ndarray) -> dict[str, np.ndarray]:
    """Flat arrays for ``foreach_set``: vertex ``co``, loop ``vertex_index``, polygon ``loop_start``."""
    f = np.ascontiguousarray(faces, dtype=np.int32)
    return {
        "co": np.ascontiguousarray(vertices, dtype=np.float32).reshape(-1),
        "vertex_index": f.reshape(-1),
        "loop_start": np.arange(0, f.size, 3, dtype=np.int32),
    }
