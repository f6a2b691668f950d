"""PLY meshes written with NumPy alone, in the layout Open3D writes.

Binary little-endian: float64 vertices and area-weighted unit vertex normals, 8-bit RGB per
vertex when colours are given (0..1, clipped, rounded half away from zero), and triangles as
``list uchar uint vertex_indices``.
"""

from __future__ import annotations

import os

import numpy as np

from ..geometry.normals import vertex_normals


def write_ply_mesh(
    path: str | os.PathLike, vertices: np.ndarray, faces: np.ndarray, colours: np.ndarray | None
) -> None:
    """A binary PLY mesh: vertices, vertex normals, vertex colours when given, triangles."""
    v = np.asarray(vertices, dtype=np.float64).reshape(-1, 3)
    f = np.asarray(faces, dtype=np.int64).reshape(-1, 3)
    fields = [("xyz", "<f8", (3,)), ("normal", "<f8", (3,))] + ([] if colours is None else [("rgb", "u1", (3,))])
    records = np.zeros(len(v), dtype=np.dtype(fields))
    records["xyz"] = v
    records["normal"] = vertex_normals(v, f)
    if colours is not None:
        records["rgb"] = colour_bytes(colours)
    triangles = np.zeros(len(f), dtype=np.dtype([("count", "u1"), ("corners", "<u4", (3,))]))
    triangles["count"] = 3
    triangles["corners"] = f
    header = ["ply", "format binary_little_endian 1.0", "comment Created by siren-recon", f"element vertex {len(v)}"]
    header += [f"property double {name}" for name in ("x", "y", "z", "nx", "ny", "nz")]
    if colours is not None:
        header += [f"property uchar {name}" for name in ("red", "green", "blue")]
    header += [f"element face {len(f)}", "property list uchar uint vertex_indices", "end_header"]
    with open(path, "wb") as out:
        out.write(("\n".join(header) + "\n").encode("ascii"))
        out.write(records.tobytes())
        out.write(triangles.tobytes())


def colour_bytes(colours: np.ndarray) -> np.ndarray:
    """Colours in 0..1 (clipped) as 0..255, rounded half away from zero."""
    scaled = np.clip(np.asarray(colours, dtype=np.float64), 0.0, 1.0) * 255.0
    low = np.floor(scaled)
    return np.where(scaled - low >= 0.5, low + 1.0, low).astype(np.uint8)
